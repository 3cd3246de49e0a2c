"""Partial responses for the Drive stand-in, as https://developers.google.com/drive/api/guides/fields-parameter
describes them: only the fields asked for in `fields` are returned (each resource has a default set), nested
selections with `a/b` and `a(b,c)`, and a field the resource does not have is 400 invalidParameter. The field
names are the Drive v3 reference's (https://developers.google.com/drive/api/reference/rest/v3).
"""

from __future__ import annotations

import re
from typing import Any

from standins.drive_model import DriveError

# The resources' field names (Drive v3 reference), for validating `fields`; nested resources by name.
_USER = {"kind", "displayName", "photoLink", "me", "permissionId", "emailAddress"}
_PERMISSION = {
    "kind", "id", "type", "emailAddress", "domain", "role", "view", "allowFileDiscovery", "displayName",
    "photoLink", "expirationTime", "permissionDetails", "teamDrivePermissionDetails", "deleted", "pendingOwner",
    "inheritedPermissionsDisabled",
}  # fmt: skip
_FILE = {
    "kind", "driveId", "fileExtension", "copyRequiresWriterPermission", "md5Checksum", "contentHints",
    "writersCanShare", "viewedByMe", "mimeType", "exportLinks", "parents", "thumbnailLink", "iconLink", "shared",
    "lastModifyingUser", "owners", "headRevisionId", "sharingUser", "webViewLink", "webContentLink", "size",
    "viewersCanCopyContent", "permissions", "hasThumbnail", "spaces", "folderColorRgb", "id", "name",
    "description", "starred", "trashed", "explicitlyTrashed", "createdTime", "modifiedTime", "modifiedByMeTime",
    "viewedByMeTime", "sharedWithMeTime", "quotaBytesUsed", "version", "originalFilename", "ownedByMe",
    "fullFileExtension", "properties", "appProperties", "isAppAuthorized", "teamDriveId", "capabilities",
    "hasAugmentedPermissions", "trashingUser", "thumbnailVersion", "trashedTime", "modifiedByMe", "permissionIds",
    "imageMediaMetadata", "videoMediaMetadata", "shortcutDetails", "contentRestrictions", "resourceKey",
    "linkShareMetadata", "labelInfo", "sha1Checksum", "sha256Checksum", "inheritedPermissionsDisabled",
    "downloadRestrictions",
}  # fmt: skip
_CHANGE = {"kind", "removed", "file", "fileId", "time", "driveId", "changeType", "teamDriveId", "teamDrive", "drive"}
SCHEMAS: dict[str, dict[str, str | None]] = {
    "user": dict.fromkeys(_USER),
    "permission": dict.fromkeys(_PERMISSION),
    "file": {**dict.fromkeys(_FILE), "lastModifyingUser": "user", "owners": "user", "permissions": "permission"},
    "change": {**dict.fromkeys(_CHANGE), "file": "file"},
    "changeList": {"kind": None, "nextPageToken": None, "newStartPageToken": None, "changes": "change"},
    "fileList": {"kind": None, "nextPageToken": None, "incompleteSearch": None, "files": "file"},
    "startPageToken": {"kind": None, "startPageToken": None},
}
DEFAULT_FIELDS = {
    "file": "kind,id,name,mimeType",
    "fileList": "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)",
    "changeList": "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,"
    "file(kind,id,name,mimeType))",
    "startPageToken": "kind,startPageToken",
}
_NAME = re.compile(r"[A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*")
Selection = dict[str, "Selection | None"]


def select_fields(body: dict[str, Any], schema: str, fields: str | None) -> dict[str, Any]:
    """Keep only the fields asked for; a field the resource does not have is 400 invalidParameter."""
    text = DEFAULT_FIELDS[schema] if fields is None else fields.replace(" ", "")
    if text in ("", "*"):
        return body if text == "*" else {}
    selection, end = _parse_selection(text, 0)
    if end != len(text):
        raise DriveError(400, "invalidParameter", f"Invalid field selection {text}", location="fields")
    _validate(selection, schema)
    picked = _apply(body, selection)
    return picked if isinstance(picked, dict) else {}


def _parse_selection(text: str, position: int) -> tuple[Selection, int]:
    selection: Selection = {}
    while True:
        match = _NAME.match(text, position)
        if match is None:
            raise DriveError(400, "invalidParameter", f"Invalid field selection {text}", location="fields")
        *outer, last = match.group(0).split("/")
        position = match.end()
        inner: Selection | None = None
        if text.startswith("(", position):
            inner, position = _parse_selection(text, position + 1)
            if not text.startswith(")", position):
                raise DriveError(400, "invalidParameter", f"Invalid field selection {text}", location="fields")
            position += 1
        node = selection
        for name in outer:
            child = node.setdefault(name, {})
            if child is None:  # already selected whole
                break
            node = child
        else:
            node[last] = inner
        if not text.startswith(",", position):
            return selection, position
        position += 1


def _validate(selection: Selection, schema: str) -> None:
    fields = SCHEMAS[schema]
    for name, inner in selection.items():
        if name == "*":
            continue
        if name not in fields:
            raise DriveError(400, "invalidParameter", f"Invalid field selection {name}", location="fields")
        nested = fields[name]
        if inner is not None and nested is not None:
            _validate(inner, nested)


def _apply(value: Any, selection: Selection | None) -> Any:
    if selection is None or "*" in selection:
        return value
    if isinstance(value, list):
        return [_apply(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    return {name: _apply(value[name], inner) for name, inner in selection.items() if name in value}

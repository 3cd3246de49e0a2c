"""Google Drive API v3 resources as the provider contract's items, and what Drive's error bodies say.

Field names follow the Drive v3 reference: the File resource (https://developers.google.com/drive/api/reference/
rest/v3/files), the Change resource (https://developers.google.com/drive/api/reference/rest/v3/changes) and the
export formats of Docs Editors files (https://developers.google.com/drive/api/guides/ref-export-formats).
Pure: no I/O, so the mapping is unit-tested on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from ragstream_connectors.providers.base import ItemChange, ProviderError

PROVIDER = "gdrive"
FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
GOOGLE_APPS = "application/vnd.google-apps."
# Docs Editors files have no binary content (files.get alt=media answers 403 fileNotDownloadable): they are
# exported to a format ingest reads. Markdown keeps a document's headings as "#" lines for the chunker; a
# spreadsheet exports its first sheet only; exports are limited to 10 MB (403 exportSizeLimitExceeded).
EXPORT_FORMATS: Mapping[str, str] = {
    "application/vnd.google-apps.document": "text/markdown",
    "application/vnd.google-apps.spreadsheet": "text/csv",
    "application/vnd.google-apps.presentation": "text/plain",
}
# Drive answers only the fields asked for (partial responses); without `fields` a file is just id/name/mimeType.
# `permissions` is returned only to users who may share the file and never for shared drive items.
FILE_FIELDS = (
    "id,name,mimeType,md5Checksum,version,modifiedTime,lastModifyingUser(displayName,emailAddress),"
    "webViewLink,parents,trashed,size,driveId,permissions(type,role,emailAddress,domain)"
)
LIST_FIELDS = f"nextPageToken,files({FILE_FIELDS})"
CHANGE_FIELDS = f"nextPageToken,newStartPageToken,changes(changeType,removed,fileId,time,file({FILE_FIELDS}))"
FOLDER_FIELDS = "id,name,parents"
# 403s that mean "slow down" (handle-errors guide: retry with exponential backoff); other 403s are refusals.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_REASON = re.compile(r'"reason"\s*:\s*"([A-Za-z_.]+)"')


def item_from_change(change: Mapping[str, Any], *, path: str, api_url: str) -> ItemChange | None:
    """A Change as an item: `removed` (deleted for good, or access lost) and trashed files are deletions.
    Changes to a shared drive itself (changeType "drive") name no file: None."""
    if change.get("changeType", "file") != "file":
        return None
    file_id = str(change.get("fileId") or (change.get("file") or {}).get("id", ""))
    if not file_id:
        return None
    if change.get("removed") or not change.get("file"):
        return ItemChange(item_id=file_id, deleted=True, source_uri=source_uri(api_url, file_id))
    return item_from_file(change["file"], path=path, api_url=api_url)


def item_from_file(file: Mapping[str, Any], *, path: str, api_url: str) -> ItemChange:
    file_id = str(file["id"])
    mime_type = str(file.get("mimeType", ""))
    export_mime = EXPORT_FORMATS.get(mime_type, "")
    size = file.get("size")
    user = file.get("lastModifyingUser") or {}
    return ItemChange(
        item_id=file_id,
        deleted=bool(file.get("trashed")),
        name=str(file.get("name", "")),
        path=path,
        author=str(user.get("displayName") or user.get("emailAddress") or ""),
        modified_at=_parse_time(file.get("modifiedTime")),
        web_url=str(file.get("webViewLink", "")),
        version_tag=version_tag(file),
        content_type=export_mime or mime_type,
        size_bytes=int(size) if size is not None and not export_mime else None,
        permissions=principals(file.get("permissions") or []),
        source_uri=source_uri(api_url, file_id),
        is_file=is_downloadable(mime_type),
        extra={"export_mime": export_mime, "mime_type": mime_type} if export_mime else {"mime_type": mime_type},
    )


def is_downloadable(mime_type: str) -> bool:
    """Binary files and the Docs Editors files we export; folders, shortcuts, forms, drawings... are tracked
    (so their deletion is noticed) but never downloaded."""
    return not mime_type.startswith(GOOGLE_APPS) or mime_type in EXPORT_FORMATS


def version_tag(file: Mapping[str, Any]) -> str:
    """The content's MD5 where Drive has one (a rename or move keeps it: no new download); Docs Editors files
    have none, so their `version` (raised by every edit) marks a change."""
    if file.get("md5Checksum"):
        return f"md5:{file['md5Checksum']}"
    if file.get("version"):
        return f"v:{file['version']}"
    return f"t:{file.get('modifiedTime', '')}"


def principals(permissions: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Permission resources as principals: `user:<email>`, `group:<email>`, `domain:<domain>` and `link:anyone`
    (anyone with the link, or public)."""
    found: list[str] = []
    for permission in permissions:
        kind = str(permission.get("type", ""))
        if kind in ("user", "group") and permission.get("emailAddress"):
            found.append(f"{kind}:{str(permission['emailAddress']).lower()}")
        elif kind == "domain" and permission.get("domain"):
            found.append(f"domain:{str(permission['domain']).lower()}")
        elif kind == "anyone":
            found.append("link:anyone")
    return tuple(sorted(set(found)))


def source_uri(api_url: str, file_id: str) -> str:
    return f"{api_url.rstrip('/')}/files/{quote(file_id, safe='')}"


def error_reasons(body: str) -> set[str]:
    """The `error.errors[].reason`s of a Drive error body (https://developers.google.com/drive/api/guides/handle-errors)."""
    try:
        errors = json.loads(body).get("error", {}).get("errors", [])
        return {str(error.get("reason", "")) for error in errors if isinstance(error, dict)}
    except (ValueError, AttributeError):
        return set(_REASON.findall(body))


def is_rate_limited(response: httpx.Response) -> bool:
    """Drive's other throttling signal: 403 with reason rateLimitExceeded or userRateLimitExceeded."""
    return response.status_code == 403 and bool(error_reasons(response.text) & RATE_LIMIT_REASONS)


def is_invalid_page_token(error: ProviderError) -> bool:
    """Drive refuses a page token it no longer accepts with 400 `invalid` at location `pageToken`."""
    return error.status == 400 and "pageToken" in (error.body or str(error))


def enumeration_cursor(start_page_token: str, files_page_token: str) -> str:
    """Mid-enumeration position: the files.list page to continue with and the change token saved before it
    began (changes made during the enumeration are replayed from there). JSON, so never a bare change token."""
    return json.dumps({"start": start_page_token, "files_page": files_page_token}, separators=(",", ":"))


def parse_enumeration_cursor(cursor: str) -> tuple[str, str] | None:
    if not cursor.startswith("{"):
        return None
    try:
        body = json.loads(cursor)
        return str(body["start"]), str(body["files_page"])
    except (ValueError, KeyError, TypeError):
        return None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None

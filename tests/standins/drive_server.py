"""Stand-in for the Google Drive API v3 and Google's OAuth 2.0 token endpoint: the real wire protocol over a
scriptable drive, with push notification channels that really POST to the address they are given.

    with DriveStandin(client_id="cid", client_secret="secret", refresh_token="rt") as drive:
        endpoints = ProviderEndpoints(drive_api_url=drive.api_url, google_token_url=drive.token_url)
        file_id = drive.create_file("report.txt", b"Quarterly numbers")
        drive.rename(file_id, "report-2024.txt")
        drive.throttle(2, status=403, reason="userRateLimitExceeded")
        drive.wait_for_deliveries(2)          # the channel's `sync` message, then a `change`

What it follows (paths, parameters, JSON field names, headers and status codes as documented):
- Push notifications, https://developers.google.com/drive/api/guides/push: `POST /drive/v3/changes/watch`
  takes a channel {id, type "web_hook", address, token, expiration (ms)} and answers an `api#channel` with
  `resourceId`, `resourceUri` and the granted `expiration` (at most one week for changes; an expiration in the
  past is refused "Invalid ttl value"). A `sync` message follows at once, then a `change` message for each
  change, POSTed with an empty body and X-Goog-Channel-ID, X-Goog-Channel-Token, X-Goog-Channel-Expiration,
  X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State and X-Goog-Message-Number (1 for `sync`, then
  increasing). 200/201/202/204/102 are success; 500/502/503/504 are retried with exponential backoff; anything
  else is a failed message. `POST /drive/v3/channels/stop` {id, resourceId} answers 204, or 404 when unknown.
- Changes, https://developers.google.com/drive/api/guides/manage-changes and .../reference/rest/v3/changes/
  list, .../changes/getStartPageToken: `GET /drive/v3/changes/startPageToken`, `GET /drive/v3/changes` with
  `pageToken` (required), `pageSize` (1-1000, default 100), `includeRemoved`, `driveId`, `supportsAllDrives`,
  `includeItemsFromAllDrives`; pages carry `nextPageToken` until the last, which carries `newStartPageToken`.
  Each file appears once, in its current state: `removed: true` without `file` once deleted for good, a
  trashed file with `file.trashed: true`. A page token Drive does not accept is 400 `invalid` at `pageToken`.
- Files, .../reference/rest/v3/files/list, /get, /export and https://developers.google.com/drive/api/guides/
  ref-export-formats: `files.list` (`q`, `corpora` user|drive|allDrives, `driveId`, `pageSize`, `pageToken`),
  `files.get` (metadata, or the bytes with `alt=media`; Docs Editors files answer 403 fileNotDownloadable),
  `files.export` (Docs Editors files only, 403 fileNotExportable otherwise; 400 for a format the type cannot
  be exported to; 403 exportSizeLimitExceeded past 10 MB). Items in shared drives are found only with
  `supportsAllDrives=true`, and their `permissions` are never populated.
- Partial responses, https://developers.google.com/drive/api/guides/fields-parameter: only the fields asked
  for in `fields` are returned (a file defaults to kind,id,name,mimeType); an unknown field is 400.
- Errors, https://developers.google.com/drive/api/guides/handle-errors: {"error": {"code", "message",
  "errors": [{"domain", "reason", "message", ...}]}}; throttling is 429 `rateLimitExceeded` or 403
  `rateLimitExceeded`/`userRateLimitExceeded`; a bad access token is 401 `authError`.
- OAuth 2.0, https://developers.google.com/identity/protocols/oauth2/web-server#offline: `POST /token` with
  grant_type=refresh_token, client_id, client_secret, refresh_token (form-encoded) answers access_token,
  expires_in, scope, token_type; 401 invalid_client, 400 invalid_grant.

On purpose unlike the real service: notification addresses may be plain http on loopback (Drive requires
HTTPS; `allow_http_addresses=False` restores the refusal), one change log serves every drive (page tokens are
opaque either way), and Docs Editors files export only to the text formats (others answer 501).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import itertools
import json
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from standins.server import StandinServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOCS_EDITORS = {
    "document": "application/vnd.google-apps.document",
    "spreadsheet": "application/vnd.google-apps.spreadsheet",
    "presentation": "application/vnd.google-apps.presentation",
}
# ref-export-formats: what each Docs Editors type exports to (the text ones are rendered here).
EXPORTS = {
    DOCS_EDITORS["document"]: {
        "text/plain", "text/markdown", "text/html", "application/pdf", "application/rtf", "application/zip",
        "application/epub+zip", "application/vnd.oasis.opendocument.text",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    },
    DOCS_EDITORS["spreadsheet"]: {
        "text/csv", "text/tab-separated-values", "application/pdf", "application/zip",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    },
    DOCS_EDITORS["presentation"]: {
        "text/plain", "application/pdf", "application/vnd.oasis.opendocument.presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    },
}  # fmt: skip
EXPORT_LIMIT_BYTES = 10 * 1024 * 1024
TOKEN_EPOCH = 10**9
CHANNEL_MAX_LIFETIME = timedelta(weeks=1)  # push guide: the changes resource's maximum
CHANNEL_DEFAULT_LIFETIME = timedelta(hours=1)
RETRIED = frozenset({500, 502, 503, 504})
PUSH_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
SCOPE = "https://www.googleapis.com/auth/drive.readonly"
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


class DriveError(Exception):
    """A Drive error response (handle-errors guide shape)."""

    def __init__(
        self, status: int, reason: str, message: str, *, domain: str = "global", location: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.domain, self.location = status, reason, message, domain, location

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        detail: dict[str, Any] = {"message": self.message, "domain": self.domain, "reason": self.reason}
        if self.location:
            detail |= {"location": self.location, "locationType": "parameter"}
        body = {"error": {"code": self.status, "message": self.message, "errors": [detail]}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def invalid(location: str, message: str = "Invalid Value") -> DriveError:
    return DriveError(400, "invalid", message, location=location)


@dataclass
class Person:
    display_name: str
    email: str

    def resource(self, me: bool) -> dict[str, Any]:
        return {"kind": "drive#user", "displayName": self.display_name, "emailAddress": self.email, "me": me}


@dataclass
class StoredFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None
    modified_by: Person
    created: datetime
    modified: datetime
    content: bytes | Path | None = None  # binary files (a Path streams from disk)
    text: str = ""  # Docs Editors files: markdown-ish source (a spreadsheet: CSV)
    md5: str | None = None
    size: int | None = None
    version: int = 1
    trashed: bool = False
    explicitly_trashed: bool = False
    is_root: bool = False
    readers: list[str] = field(default_factory=list)
    shortcut_target: str | None = None


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration: datetime
    drive_id: str | None
    all_drives: bool
    page_token: int
    message_number: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One notification message as sent: its headers and what the receiver answered (None: unreachable)."""

    channel_id: str
    message_number: int
    state: str
    headers: dict[str, str]
    status: int | None
    attempts: int
    dropped: bool = False


@dataclass(frozen=True)
class _Throttle:
    status: int
    reason: str
    retry_after: str | None


class DriveStandin:
    def __init__(
        self,
        *,
        client_id: str = "standin-client.apps.googleusercontent.com",
        client_secret: str = "standin-client-secret",
        refresh_token: str = "standin-refresh-token",
        user: Person | None = None,
        host: str = "127.0.0.1",
        allow_http_addresses: bool = True,
        delivery_backoff_s: float = 0.05,
    ) -> None:
        self.host = host
        self.port = 0
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.user = user or Person("Standin Owner", "owner@example.com")
        self.allow_http_addresses = allow_http_addresses
        self.requests: list[RecordedRequest] = []  # appended by the server thread
        self.deliveries: list[Delivery] = []  # appended by the delivery thread
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._files: dict[str, StoredFile] = {}
        self._shared_drives: dict[str, str] = {}  # id -> name
        self._log: list[tuple[str, datetime, str | None]] = []  # (file id, time, drive id); token = index + 1
        self._token_epoch = 0  # page tokens are epoch * TOKEN_EPOCH + position; a new epoch refuses the old
        self._list_tokens: dict[str, tuple[int, str]] = {}
        self._access_tokens: dict[str, float] = {}
        self._channels: dict[str, Channel] = {}
        self._throttles: list[_Throttle] = []
        self._drop_notifications = 0
        self._postman = _Postman(self.deliveries, delivery_backoff_s)
        self._server: StandinServer | None = None
        now = _now()
        self.root_id = self._new_id("0A")
        self._files[self.root_id] = StoredFile(
            self.root_id, "My Drive", FOLDER, [], None, self.user, now, now, is_root=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/drive/v3"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> DriveStandin:
        self._postman.start()
        self._server = StandinServer(self._app(), name="drive-standin", host=self.host).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
        self._postman.stop()

    def __enter__(self) -> DriveStandin:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- control: content ----------------------------------------------------------------------
    def create_shared_drive(self, name: str) -> str:
        with self._lock:
            drive_id = self._new_id("0A")
            self._shared_drives[drive_id] = name
            now = _now()
            self._files[drive_id] = StoredFile(drive_id, name, FOLDER, [], drive_id, self.user, now, now, is_root=True)
            return drive_id

    def create_folder(self, name: str, parent: str | None = None) -> str:
        return self._create(name, FOLDER, parent)

    def create_file(
        self,
        name: str,
        content: bytes | Path,
        *,
        mime_type: str = "text/plain",
        parent: str | None = None,
        modified_by: Person | None = None,
        readers: tuple[str, ...] = (),
    ) -> str:
        """A binary (non-Docs) file; a Path is served by streaming it from disk (large files)."""
        return self._create(name, mime_type, parent, content=content, modified_by=modified_by, readers=readers)

    def create_google_doc(self, name: str, text: str, *, kind: str = "document", parent: str | None = None) -> str:
        """A Docs Editors file: `document` (markdown-ish text), `spreadsheet` (CSV) or `presentation` (text)."""
        return self._create(name, DOCS_EDITORS[kind], parent, text=text)

    def create_shortcut(self, name: str, target_id: str, parent: str | None = None) -> str:
        file_id = self._create(name, SHORTCUT, parent)
        with self._lock:
            self._files[file_id].shortcut_target = target_id
        return file_id

    def edit(self, file_id: str, content: bytes | Path | str, *, modified_by: Person | None = None) -> None:
        """New content (a new revision): str for Docs Editors files, bytes or a Path for binary files."""
        with self._lock:
            stored = self._files[file_id]
            if isinstance(content, str):
                stored.text = content
            else:
                self._set_content(stored, content)
            stored.modified, stored.modified_by = _now(), modified_by or self.user
            self._changed(stored)

    def rename(self, file_id: str, name: str) -> None:
        with self._lock:
            stored = self._files[file_id]
            stored.name, stored.modified = name, _now()
            self._changed(stored)

    def move(self, file_id: str, parent: str) -> None:
        with self._lock:
            stored = self._files[file_id]
            stored.parents = [parent]
            stored.drive_id = self._files[parent].drive_id
            self._changed(stored)

    def trash(self, file_id: str) -> None:
        """Moves to the trash; a folder's contents go with it (trashed, not explicitly)."""
        with self._lock:
            for stored in self._subtree(file_id):
                if stored.id == file_id or not stored.trashed:
                    stored.trashed = True
                    stored.explicitly_trashed = stored.explicitly_trashed or stored.id == file_id
                    self._changed(stored)

    def untrash(self, file_id: str) -> None:
        with self._lock:
            for stored in self._subtree(file_id):
                if stored.id == file_id or not stored.explicitly_trashed:
                    stored.trashed = stored.explicitly_trashed = False
                    self._changed(stored)

    def delete(self, file_id: str) -> None:
        """Deletes for good (files.delete, or emptying the trash): the file and its descendants are removed."""
        with self._lock:
            for stored in self._subtree(file_id):
                del self._files[stored.id]
                self._record_change(stored.id, stored.drive_id)

    def file(self, file_id: str) -> dict[str, Any]:
        """The file's full resource as Drive would return it with fields=*."""
        with self._lock:
            return self._resource(self._files[file_id])

    # --- control: faults -----------------------------------------------------------------------
    def throttle(
        self, count: int = 1, *, status: int = 429, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        """Refuse the next `count` API calls: 429 rateLimitExceeded, or 403 with `reason` (rateLimitExceeded or
        userRateLimitExceeded); `retry_after` adds a Retry-After header (seconds)."""
        reason = reason or ("rateLimitExceeded" if status == 429 else "userRateLimitExceeded")
        header = None if retry_after is None else f"{retry_after:g}"
        with self._lock:
            self._throttles.extend(_Throttle(status, reason, header) for _ in range(count))

    def invalidate_page_tokens(self) -> None:
        """Every page token handed out so far (changes and files.list) is refused from now on."""
        with self._lock:
            self._token_epoch += 1
            self._list_tokens.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    def drop_notifications(self, count: int) -> None:
        """Lose the next `count` notification messages (recorded as dropped, never sent)."""
        with self._lock:
            self._drop_notifications += count

    def resend(self, delivery: Delivery) -> None:
        """Deliver a message again, same headers and message number (Drive may deliver a message twice)."""
        message = _Message(
            self._channels[delivery.channel_id].address,
            delivery.headers,
            delivery.channel_id,
            delivery.message_number,
            delivery.state,
            dropped=False,
        )
        self._postman.send(message)

    def expire_channel(self, channel_id: str) -> None:
        with self._lock:
            self._channels[channel_id].expiration = _now() - timedelta(seconds=1)

    # --- observation ---------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        with self._lock:
            return list(self._channels.values())

    def requests_to(self, path: str, method: str = "GET") -> list[RecordedRequest]:
        """Recorded requests whose path ends with `path` (e.g. "/changes", "/files", "/channels/stop")."""
        return [r for r in list(self.requests) if r.method == method and r.path.endswith(path)]

    def wait_for_deliveries(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        """Wait until at least `count` messages were delivered or dropped and none is in flight."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.deliveries) >= count and self._postman.idle():
                return list(self.deliveries)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.deliveries)} of {count} notification messages after {timeout_s}s")

    async def delivered(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        """wait_for_deliveries for async tests: the event loop keeps running (a receiver may live on it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.deliveries) >= count and self._postman.idle():
                return list(self.deliveries)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.deliveries)} of {count} notification messages after {timeout_s}s")

    # --- state ---------------------------------------------------------------------------------
    def _new_id(self, prefix: str = "1") -> str:
        return f"{prefix}{secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y')}{next(self._ids)}"

    def _create(
        self,
        name: str,
        mime_type: str,
        parent: str | None,
        *,
        content: bytes | Path | None = None,
        text: str = "",
        modified_by: Person | None = None,
        readers: tuple[str, ...] = (),
    ) -> str:
        with self._lock:
            parent_id = parent or self.root_id
            now = _now()
            stored = StoredFile(
                self._new_id(), name, mime_type, [parent_id], self._files[parent_id].drive_id,
                modified_by or self.user, now, now, text=text, readers=list(readers),
            )  # fmt: skip
            if content is not None:
                self._set_content(stored, content)
            self._files[stored.id] = stored
            self._record_change(stored.id, stored.drive_id)
            return stored.id

    @staticmethod
    def _set_content(stored: StoredFile, content: bytes | Path) -> None:
        digest, size = hashlib.md5(usedforsecurity=False), 0
        for piece in _pieces(content):
            digest.update(piece)
            size += len(piece)
        stored.content, stored.md5, stored.size = content, digest.hexdigest(), size

    def _changed(self, stored: StoredFile) -> None:
        stored.version += 1
        self._record_change(stored.id, stored.drive_id)

    def _subtree(self, file_id: str) -> list[StoredFile]:
        found, pending = [], [file_id]
        while pending:
            current = pending.pop()
            found.append(self._files[current])
            pending.extend(f.id for f in self._files.values() if current in f.parents)
        return found

    def _record_change(self, file_id: str, drive_id: str | None) -> None:
        self._log.append((file_id, _now(), drive_id))
        seq = len(self._log)
        for channel in self._channels.values():
            if channel.page_token <= seq and _in_scope(drive_id, channel.drive_id, channel.all_drives):
                self._notify(channel, "change")

    def _notify(self, channel: Channel, state: str) -> None:
        if channel.stopped or channel.expiration <= _now():
            return
        channel.message_number += 1
        headers = {
            "Content-Type": "application/json; utf-8",
            "User-Agent": PUSH_USER_AGENT,
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(channel.message_number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        dropped = self._drop_notifications > 0
        self._drop_notifications -= int(dropped)
        self._postman.send(_Message(channel.address, headers, channel.id, channel.message_number, state, dropped))

    def _resource(self, stored: StoredFile) -> dict[str, Any]:
        """The full File resource (Drive v3 reference field names)."""
        resource: dict[str, Any] = {
            "kind": "drive#file",
            "id": stored.id,
            "name": stored.name,
            "mimeType": stored.mime_type,
            "trashed": stored.trashed,
            "explicitlyTrashed": stored.explicitly_trashed,
            "version": str(stored.version),
            "createdTime": _rfc3339(stored.created),
            "modifiedTime": _rfc3339(stored.modified),
            "lastModifyingUser": stored.modified_by.resource(stored.modified_by.email == self.user.email),
            "webViewLink": _web_view_link(stored),
            "spaces": ["drive"],
        }
        if stored.parents:
            resource["parents"] = list(stored.parents)
        if stored.drive_id:
            resource["driveId"] = stored.drive_id
        else:  # never populated for shared drive items
            resource["permissions"] = self._permissions(stored)
        if stored.md5 is not None:
            resource |= {"md5Checksum": stored.md5, "size": str(stored.size), "headRevisionId": f"r{stored.version}"}
        if stored.shortcut_target:
            target = self._files.get(stored.shortcut_target)
            resource["shortcutDetails"] = {
                "targetId": stored.shortcut_target,
                "targetMimeType": target.mime_type if target else "",
            }
        return resource

    def _permissions(self, stored: StoredFile) -> list[dict[str, Any]]:
        owner = {"kind": "drive#permission", "id": "p0", "type": "user", "role": "owner"}
        found = [owner | {"emailAddress": self.user.email, "displayName": self.user.display_name}]
        for number, email in enumerate(stored.readers, start=1):
            found.append({"kind": "drive#permission", "id": f"p{number}", "type": "user", "role": "reader"})
            found[-1]["emailAddress"] = email
        return found

    def _visible(self, file_id: str, params: dict[str, str]) -> StoredFile:
        stored = self._files.get(self.root_id if file_id == "root" else file_id)
        if stored is None or (stored.drive_id and params.get("supportsAllDrives") != "true"):
            raise DriveError(404, "notFound", f"File not found: {file_id}.", location="fileId")
        return stored

    # --- HTTP ----------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        api = self._api
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/drive/v3/changes/startPageToken", api(self._start_page_token), methods=["GET"]),
                Route("/drive/v3/changes/watch", api(self._watch), methods=["POST"]),
                Route("/drive/v3/changes", api(self._changes), methods=["GET"]),
                Route("/drive/v3/channels/stop", api(self._stop), methods=["POST"]),
                Route("/drive/v3/files", api(self._list_files), methods=["GET"]),
                Route("/drive/v3/files/{file_id}/export", api(self._export), methods=["GET"]),
                Route("/drive/v3/files/{file_id}", api(self._get_file), methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        params = dict(request.query_params)
        self.requests.append(RecordedRequest(request.method, request.url.path, params, dict(request.headers), body))
        return body

    def _api(self, handler: Callable[[Request, bytes], Response]) -> Callable[[Request], Any]:
        """Record, throttle, authenticate, then answer; Drive errors become their JSON error bodies."""

        async def endpoint(request: Request) -> Response:
            body = await self._record(request)
            with self._lock:
                throttled = self._throttles.pop(0) if self._throttles else None
                authorized = self._authorized(request.headers.get("authorization", ""))
            if throttled is not None:
                message = (
                    "Rate Limit Exceeded" if throttled.reason == "rateLimitExceeded" else "User Rate Limit Exceeded"
                )
                headers = {"Retry-After": throttled.retry_after} if throttled.retry_after else None
                error = DriveError(throttled.status, throttled.reason, message, domain="usageLimits")
                return error.response(headers)
            if not authorized:
                return _unauthenticated()
            try:
                with self._lock:
                    return handler(request, body)
            except DriveError as error:
                return error.response()

        return endpoint

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self._access_tokens.get(token, 0.0) > time.monotonic()

    async def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await self._record(request)).decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400)
        if form.get("refresh_token") != self.refresh_token:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
            )
        token = f"ya29.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._access_tokens[token] = time.monotonic() + 3599
        return JSONResponse({"access_token": token, "expires_in": 3599, "scope": SCOPE, "token_type": "Bearer"})

    def _start_page_token(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        self._drive_scope(params)
        body = {"kind": "drive#startPageToken", "startPageToken": self._page_token_for(len(self._log) + 1)}
        return JSONResponse(_select(body, "startPageToken", params.get("fields")))

    def _changes(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self._drive_scope(params)
        position = self._change_token(params.get("pageToken"))
        page_size = _page_size(params, default=100)
        include_removed = params.get("includeRemoved", "true") != "false"
        last_seen = {file_id: seq for seq, (file_id, _, _) in enumerate(self._log, start=1)}
        changes: list[dict[str, Any]] = []
        while position <= len(self._log) and len(changes) < page_size:
            file_id, when, entry_drive = self._log[position - 1]
            # Each file once, where it last changed, in its current state.
            if last_seen[file_id] == position and _in_scope(entry_drive, drive_id, all_drives):
                change = self._change(file_id, when)
                if include_removed or not change["removed"]:
                    changes.append(change)
            position += 1
        body: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
        body["nextPageToken" if position <= len(self._log) else "newStartPageToken"] = self._page_token_for(position)
        return JSONResponse(_select(body, "changeList", params.get("fields")))

    def _change(self, file_id: str, when: datetime) -> dict[str, Any]:
        change = {"kind": "drive#change", "changeType": "file", "time": _rfc3339(when), "fileId": file_id}
        stored = self._files.get(file_id)
        if stored is None:
            return change | {"removed": True}
        return change | {"removed": False, "file": self._resource(stored)}

    def _watch(self, request: Request, body: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self._drive_scope(params)
        if not params.get("pageToken"):
            raise DriveError(400, "required", "Required parameter: pageToken", location="pageToken")
        position = self._change_token(params["pageToken"])
        channel = _json_body(body)
        channel_id, address = str(channel.get("id") or ""), str(channel.get("address") or "")
        if not re.fullmatch(r"[A-Za-z0-9\-_+/=]{1,64}", channel_id):
            raise DriveError(400, "invalid", "Invalid channel id", location="id")
        if channel.get("type") not in ("web_hook", "webhook") or not address:
            raise DriveError(400, "invalid", "Invalid channel type or address")
        if not address.startswith("https://") and not self.allow_http_addresses:
            raise DriveError(
                400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}", domain="push"
            )
        if channel_id in self._channels:
            raise DriveError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique", domain="push")
        created = Channel(
            channel_id, self._resource_id(drive_id), f"{self.api_url}/changes?alt=json&pageToken={params['pageToken']}",
            address, channel.get("token"), self._expiration(channel.get("expiration")), drive_id, all_drives, position,
        )  # fmt: skip
        self._channels[channel_id] = created
        self._notify(created, "sync")  # Drive opens every channel with a `sync` message
        answer = {"kind": "api#channel", "id": created.id, "resourceId": created.resource_id}
        answer |= {"resourceUri": created.resource_uri, "expiration": str(int(created.expiration.timestamp() * 1000))}
        if created.token is not None:
            answer["token"] = created.token
        return JSONResponse(answer)

    def _expiration(self, requested: Any) -> datetime:
        now = _now()
        if requested in (None, ""):
            return now + CHANNEL_DEFAULT_LIFETIME
        try:
            wanted = datetime.fromtimestamp(int(requested) / 1000, UTC)
        except (TypeError, ValueError) as exc:
            raise invalid("expiration") from exc
        if wanted <= now:
            raise DriveError(400, "invalid", f"Invalid ttl value for channel {int((wanted - now).total_seconds())}")
        return min(wanted, now + CHANNEL_MAX_LIFETIME)

    def _resource_id(self, drive_id: str | None) -> str:
        """Opaque, stable per watched resource (the user's change feed, or one shared drive's)."""
        return hashlib.sha1(f"{self.user.email}/{drive_id}".encode(), usedforsecurity=False).hexdigest()[:27]

    def _stop(self, _: Request, body: bytes) -> Response:
        stop = _json_body(body)
        channel = self._channels.get(str(stop.get("id", "")))
        if channel is None or channel.stopped or channel.resource_id != stop.get("resourceId"):
            raise DriveError(404, "notFound", f"Channel '{stop.get('id')}' not found for project 'standin'")
        channel.stopped = True
        return Response(status_code=204)

    def _list_files(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self._corpus(params)
        matches = _query(params.get("q", ""))
        page_size = _page_size(params, default=100)
        key = json.dumps([params.get(k) for k in ("q", "corpora", "driveId", "includeItemsFromAllDrives")])
        offset = 0
        if params.get("pageToken"):
            offset, token_key = self._list_tokens.get(params["pageToken"], (-1, ""))
            if offset < 0 or token_key != key:
                raise invalid("pageToken")
        found = [
            f
            for f in self._files.values()
            if not f.is_root and _in_scope(f.drive_id, drive_id, all_drives) and matches(f)
        ]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
        body["files"] = [self._resource(f) for f in found[offset : offset + page_size]]
        if offset + page_size < len(found):
            token = secrets.token_urlsafe(24)
            self._list_tokens[token] = (offset + page_size, key)
            body["nextPageToken"] = token
        return JSONResponse(_select(body, "fileList", params.get("fields")))

    def _get_file(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        stored = self._visible(request.path_params["file_id"], params)
        if params.get("alt") != "media":
            return JSONResponse(_select(self._resource(stored), "file", params.get("fields")))
        if stored.content is None:
            message = "Only files with binary content can be downloaded. Use Export with Docs Editors files."
            raise DriveError(403, "fileNotDownloadable", message, location="alt")
        headers = {"Content-Length": str(stored.size), "ETag": f'"{stored.md5}"'}
        return StreamingResponse(_pieces(stored.content), media_type=stored.mime_type, headers=headers)

    def _export(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        stored = self._visible(request.path_params["file_id"], params)
        wanted = params.get("mimeType", "")
        if stored.mime_type not in EXPORTS:
            raise DriveError(403, "fileNotExportable", "Export only supports Docs Editors files.")
        if wanted not in EXPORTS[stored.mime_type]:
            raise DriveError(400, "badRequest", "The requested conversion is not supported.", location="convertTo")
        rendered = _render(stored, wanted)
        if len(rendered) > EXPORT_LIMIT_BYTES:
            raise DriveError(403, "exportSizeLimitExceeded", "This file is too large to be exported.")
        return Response(rendered, media_type=wanted)

    def _drive_scope(self, params: dict[str, str]) -> tuple[str | None, bool]:
        """Changes scope: one shared drive (`driveId`, needs supportsAllDrives), else My Drive plus every shared
        drive with includeItemsFromAllDrives."""
        all_drives = params.get("includeItemsFromAllDrives") == "true"
        if all_drives and params.get("supportsAllDrives") != "true":
            raise invalid("includeItemsFromAllDrives", "includeItemsFromAllDrives requires supportsAllDrives.")
        drive_id = params.get("driveId") or None
        if drive_id is not None:
            if params.get("supportsAllDrives") != "true":
                raise invalid("driveId", "driveId requires supportsAllDrives.")
            if drive_id not in self._shared_drives:
                raise DriveError(404, "notFound", f"Shared drive not found: {drive_id}", location="driveId")
        return drive_id, all_drives

    def _corpus(self, params: dict[str, str]) -> tuple[str | None, bool]:
        drive_id, all_drives = self._drive_scope(params)
        corpora = params.get("corpora", "user")
        if (corpora == "drive") != (drive_id is not None):
            raise invalid("corpora", "The driveId parameter must be specified if and only if corpora is drive.")
        if corpora in ("drive", "allDrives") and not all_drives:
            raise invalid("includeItemsFromAllDrives", f"corpora={corpora} requires includeItemsFromAllDrives.")
        if corpora not in ("user", "drive", "allDrives", "domain"):
            raise invalid("corpora")
        return drive_id, all_drives

    def _page_token_for(self, position: int) -> str:
        return str(self._token_epoch * TOKEN_EPOCH + position)

    def _change_token(self, token: str | None) -> int:
        """The log position a change page token names; a malformed or refused one is 400 invalid pageToken."""
        epoch, position = divmod(int(token), TOKEN_EPOCH) if token and token.isdigit() else (-1, 0)
        if epoch != self._token_epoch or not 1 <= position <= len(self._log) + 1:
            raise invalid("pageToken")
        return position


class _Message:
    def __init__(
        self, address: str, headers: dict[str, str], channel_id: str, number: int, state: str, dropped: bool
    ) -> None:
        self.address, self.headers, self.channel_id = address, headers, channel_id
        self.number, self.state, self.dropped = number, state, dropped


class _Postman:
    """Sends notification messages in order from a background thread, as Drive does after answering the
    call that caused them; 500/502/503/504 (and an unreachable address) are retried with exponential backoff."""

    def __init__(self, deliveries: list[Delivery], backoff_s: float, attempts: int = 5) -> None:
        self._deliveries = deliveries
        self._backoff_s = backoff_s
        self._attempts = attempts
        self._queue: queue.Queue[_Message | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="drive-standin-push", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def send(self, message: _Message) -> None:
        self._queue.put(message)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while (message := self._queue.get()) is not None:
                try:
                    self._deliver(client, message)
                finally:
                    self._queue.task_done()
            self._queue.task_done()

    def _deliver(self, client: httpx.Client, message: _Message) -> None:
        status: int | None = None
        attempt = 0
        while not message.dropped and attempt < self._attempts:
            attempt += 1
            try:
                status = client.post(message.address, headers=message.headers, content=b"").status_code
            except httpx.HTTPError:
                status = None
            if status is not None and status not in RETRIED:
                break
            time.sleep(self._backoff_s * 2 ** (attempt - 1))
        delivery = Delivery(
            message.channel_id, message.number, message.state, message.headers, status, attempt, message.dropped
        )
        self._deliveries.append(delivery)


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _in_scope(item_drive: str | None, drive_id: str | None, all_drives: bool) -> bool:
    if drive_id is not None:
        return item_drive == drive_id
    return item_drive is None or all_drives


def _web_view_link(stored: StoredFile) -> str:
    if stored.mime_type == FOLDER:
        return f"https://drive.google.com/drive/folders/{stored.id}"
    for kind, mime_type in DOCS_EDITORS.items():
        if stored.mime_type == mime_type:
            path = {"document": "document", "spreadsheet": "spreadsheets", "presentation": "presentation"}[kind]
            return f"https://docs.google.com/{path}/d/{stored.id}/edit?usp=drivesdk"
    return f"https://drive.google.com/file/d/{stored.id}/view?usp=drivesdk"


def _pieces(content: bytes | Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield from (content[i : i + size] for i in range(0, len(content), size))
        return
    with content.open("rb") as handle:
        while piece := handle.read(size):
            yield piece


def _render(stored: StoredFile, mime_type: str) -> bytes:
    text = stored.text
    if mime_type in ("text/markdown", "text/csv"):
        return text.encode()
    if mime_type == "text/plain":
        return re.sub(r"(?m)^#+\s*", "", text).encode()
    if mime_type == "text/tab-separated-values":
        out = io.StringIO()
        csv.writer(out, delimiter="\t", lineterminator="\n").writerows(csv.reader(io.StringIO(text)))
        return out.getvalue().encode()
    if mime_type == "text/html":
        lines = [
            f"<h1>{line.lstrip('#').strip()}</h1>" if line.startswith("#") else f"<p>{line}</p>"
            for line in text.splitlines()
            if line.strip()
        ]
        return f"<html><body>{''.join(lines)}</body></html>".encode()
    raise DriveError(501, "notImplemented", f"The stand-in does not render {mime_type}.")


def _page_size(params: dict[str, str], *, default: int) -> int:
    raw = params.get("pageSize", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise invalid("pageSize", f"Invalid value '{raw}'. Values must be within the range: [1, 1000]")
    return int(raw)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError as exc:
        raise DriveError(400, "parseError", "Parse Error") from exc
    if not isinstance(parsed, dict):
        raise DriveError(400, "parseError", "Parse Error")
    return parsed


_CLAUSE = re.compile(
    r"""\s*(?:(?P<trashed>trashed\s*=\s*(?P<tv>true|false))"""
    r"""|'(?P<parent>[^']+)'\s+in\s+parents"""
    r"""|(?P<field>mimeType|name)\s*(?P<op>!=|=)\s*'(?P<value>[^']*)')\s*""",
    re.IGNORECASE,
)


def _query(q: str) -> Callable[[StoredFile], bool]:
    """The `q` search terms used against this stand-in: trashed, parents, mimeType and name, joined by `and`
    (search-files guide); anything else is refused as Drive refuses a query it cannot parse."""
    clauses: list[re.Match[str]] = []
    for clause in filter(None, re.split(r"\s+and\s+", q.strip(), flags=re.IGNORECASE)):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise invalid("q")
        clauses.append(match)

    def holds(stored: StoredFile, match: re.Match[str]) -> bool:
        if match["trashed"]:
            return stored.trashed == (match["tv"].lower() == "true")
        if match["parent"]:
            return match["parent"] in stored.parents
        value = stored.mime_type if match["field"] == "mimeType" else stored.name
        return (value == match["value"]) == (match["op"] == "=")

    return lambda stored: all(holds(stored, match) for match in clauses)


def _unauthenticated() -> JSONResponse:
    message = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential."
    )
    detail = {"message": "Invalid Credentials", "domain": "global", "reason": "authError"}
    detail |= {"location": "Authorization", "locationType": "header"}
    body = {"error": {"code": 401, "message": message, "errors": [detail], "status": "UNAUTHENTICATED"}}
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
    return JSONResponse(body, status_code=401, headers=headers)


# --- partial responses (the `fields` parameter) -----------------------------------------------------
_NAME = re.compile(r"[A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*")
Selection = dict[str, "Selection | None"]


def _select(body: dict[str, Any], schema: str, fields: str | None) -> dict[str, Any]:
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

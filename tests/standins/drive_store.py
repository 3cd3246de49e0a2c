"""The drive behind the Drive stand-in (drive_server.py): its files, the change log that page tokens index, the
push channels watching it, and the OAuth access tokens it issued. Changing a file appends to the change log and
notifies the channels watching it, as the Drive guides describe (https://developers.google.com/drive/api/guides/
manage-changes, https://developers.google.com/drive/api/guides/push). drive_routes.py serves this state over HTTP.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from standins.drive_model import (
    DOCS_EDITORS,
    FOLDER,
    SHORTCUT,
    TOKEN_EPOCH,
    Channel,
    Delivery,
    DriveError,
    Person,
    RecordedRequest,
    StoredFile,
    Throttle,
    in_scope,
    invalid,
    pieces,
    rfc3339,
    utc_now,
    web_view_link,
)
from standins.drive_push import Message, Postman, notification_headers


class DriveStore:
    """The drive's state; every attribute is guarded by `lock` (the server and the test thread share it)."""

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
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.files: dict[str, StoredFile] = {}
        self.shared_drives: dict[str, str] = {}  # id -> name
        self.change_log: list[tuple[str, datetime, str | None]] = []  # (file id, time, drive id); token = index + 1
        self.token_epoch = 0  # page tokens are epoch * TOKEN_EPOCH + position; a new epoch refuses the old
        self.list_tokens: dict[str, tuple[int, str]] = {}
        self.access_tokens: dict[str, float] = {}
        self.issued_access_tokens: list[str] = []  # all of them, expired too (see known_secrets)
        self.channels_by_id: dict[str, Channel] = {}
        self.throttles: list[Throttle] = []
        self.channel_lifetimes: list[timedelta] = []  # the longest the next watch channels are granted
        self.notifications_to_drop = 0
        self.postman = Postman(self.deliveries, delivery_backoff_s)
        now = utc_now()
        self.root_id = self._new_id("0A")
        self.files[self.root_id] = StoredFile(
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

    # --- control: content ----------------------------------------------------------------------
    def create_shared_drive(self, name: str) -> str:
        with self.lock:
            drive_id = self._new_id("0A")
            self.shared_drives[drive_id] = name
            now = utc_now()
            self.files[drive_id] = StoredFile(drive_id, name, FOLDER, [], drive_id, self.user, now, now, is_root=True)
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
        with self.lock:
            self.files[file_id].shortcut_target = target_id
        return file_id

    def edit(self, file_id: str, content: bytes | Path | str, *, modified_by: Person | None = None) -> None:
        """New content (a new revision): str for Docs Editors files, bytes or a Path for binary files."""
        with self.lock:
            stored = self.files[file_id]
            if isinstance(content, str):
                stored.text = content
            else:
                self._set_content(stored, content)
            stored.modified, stored.modified_by = utc_now(), modified_by or self.user
            self._changed(stored)

    def rename(self, file_id: str, name: str) -> None:
        with self.lock:
            stored = self.files[file_id]
            stored.name, stored.modified = name, utc_now()
            self._changed(stored)

    def move(self, file_id: str, parent: str) -> None:
        with self.lock:
            stored = self.files[file_id]
            stored.parents = [parent]
            stored.drive_id = self.files[parent].drive_id
            self._changed(stored)

    def trash(self, file_id: str) -> None:
        """Moves to the trash; a folder's contents go with it (trashed, not explicitly)."""
        with self.lock:
            for stored in self._subtree(file_id):
                if stored.id == file_id or not stored.trashed:
                    stored.trashed = True
                    stored.explicitly_trashed = stored.explicitly_trashed or stored.id == file_id
                    self._changed(stored)

    def untrash(self, file_id: str) -> None:
        with self.lock:
            for stored in self._subtree(file_id):
                if stored.id == file_id or not stored.explicitly_trashed:
                    stored.trashed = stored.explicitly_trashed = False
                    self._changed(stored)

    def delete(self, file_id: str) -> None:
        """Deletes for good (files.delete, or emptying the trash): the file and its descendants are removed."""
        with self.lock:
            for stored in self._subtree(file_id):
                del self.files[stored.id]
                self._record_change(stored.id, stored.drive_id)

    def file(self, file_id: str) -> dict[str, Any]:
        """The file's full resource as Drive would return it with fields=*."""
        with self.lock:
            return self.file_resource(self.files[file_id])

    # --- changes and resources ---------------------------------------------------------------------------------
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
        with self.lock:
            parent_id = parent or self.root_id
            now = utc_now()
            stored = StoredFile(
                self._new_id(), name, mime_type, [parent_id], self.files[parent_id].drive_id,
                modified_by or self.user, now, now, text=text, readers=list(readers),
            )  # fmt: skip
            if content is not None:
                self._set_content(stored, content)
            self.files[stored.id] = stored
            self._record_change(stored.id, stored.drive_id)
            return stored.id

    @staticmethod
    def _set_content(stored: StoredFile, content: bytes | Path) -> None:
        digest, size = hashlib.md5(usedforsecurity=False), 0
        for piece in pieces(content):
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
            found.append(self.files[current])
            pending.extend(f.id for f in self.files.values() if current in f.parents)
        return found

    def _record_change(self, file_id: str, drive_id: str | None) -> None:
        self.change_log.append((file_id, utc_now(), drive_id))
        seq = len(self.change_log)
        for channel in self.channels_by_id.values():
            if channel.page_token <= seq and in_scope(drive_id, channel.drive_id, channel.all_drives):
                self.notify(channel, "change")

    def notify(self, channel: Channel, state: str) -> None:
        if channel.stopped or channel.expiration <= utc_now():
            return
        channel.message_number += 1
        headers = notification_headers(channel, state)
        dropped = self.notifications_to_drop > 0
        self.notifications_to_drop -= int(dropped)
        self.postman.send(Message(channel.address, headers, channel.id, channel.message_number, state, dropped))

    def file_resource(self, stored: StoredFile) -> dict[str, Any]:
        """The full File resource (Drive v3 reference field names)."""
        resource: dict[str, Any] = {
            "kind": "drive#file",
            "id": stored.id,
            "name": stored.name,
            "mimeType": stored.mime_type,
            "trashed": stored.trashed,
            "explicitlyTrashed": stored.explicitly_trashed,
            "version": str(stored.version),
            "createdTime": rfc3339(stored.created),
            "modifiedTime": rfc3339(stored.modified),
            "lastModifyingUser": stored.modified_by.resource(stored.modified_by.email == self.user.email),
            "webViewLink": web_view_link(stored),
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
            target = self.files.get(stored.shortcut_target)
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

    def visible(self, file_id: str, params: dict[str, str]) -> StoredFile:
        stored = self.files.get(self.root_id if file_id == "root" else file_id)
        if stored is None or (stored.drive_id and params.get("supportsAllDrives") != "true"):
            raise DriveError(404, "notFound", f"File not found: {file_id}.", location="fileId")
        return stored

    def drive_scope(self, params: dict[str, str]) -> tuple[str | None, bool]:
        """Changes scope: one shared drive (`driveId`, needs supportsAllDrives), else My Drive plus every shared
        drive with includeItemsFromAllDrives."""
        all_drives = params.get("includeItemsFromAllDrives") == "true"
        if all_drives and params.get("supportsAllDrives") != "true":
            raise invalid("includeItemsFromAllDrives", "includeItemsFromAllDrives requires supportsAllDrives.")
        drive_id = params.get("driveId") or None
        if drive_id is not None:
            if params.get("supportsAllDrives") != "true":
                raise invalid("driveId", "driveId requires supportsAllDrives.")
            if drive_id not in self.shared_drives:
                raise DriveError(404, "notFound", f"Shared drive not found: {drive_id}", location="driveId")
        return drive_id, all_drives

    def corpus(self, params: dict[str, str]) -> tuple[str | None, bool]:
        drive_id, all_drives = self.drive_scope(params)
        corpora = params.get("corpora", "user")
        if (corpora == "drive") != (drive_id is not None):
            raise invalid("corpora", "The driveId parameter must be specified if and only if corpora is drive.")
        if corpora in ("drive", "allDrives") and not all_drives:
            raise invalid("includeItemsFromAllDrives", f"corpora={corpora} requires includeItemsFromAllDrives.")
        if corpora not in ("user", "drive", "allDrives", "domain"):
            raise invalid("corpora")
        return drive_id, all_drives

    def page_token_for(self, position: int) -> str:
        return str(self.token_epoch * TOKEN_EPOCH + position)

    def change_position(self, token: str | None) -> int:
        """The log position a change page token names; a malformed or refused one is 400 invalid pageToken."""
        epoch, position = divmod(int(token), TOKEN_EPOCH) if token and token.isdigit() else (-1, 0)
        if epoch != self.token_epoch or not 1 <= position <= len(self.change_log) + 1:
            raise invalid("pageToken")
        return position

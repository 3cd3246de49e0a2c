"""Box's wire format, turned into the provider contract: file JSON to ItemChange, the webhook body, the cursor.

File fields follow https://developer.box.com/reference/resources/file/ (requested with `fields=`, which returns
the mini representation plus the fields named). A file inside a trashed folder, in the trash or purged is no
longer readable (`GET /files/{id}` answers 404 `trashed` or `not_found`), so "gone" is decided by the API's
answer, never by the trigger that announced it.

The cursor is JSON so it can say which of two things it is: a position in the user event stream
(https://developer.box.com/guides/events/user-events/for-user/, `stream_type=changes`), or a folder walk that
is part-way through a full enumeration (folders still to list, and the marker inside the first). Both carry
when their stream position was taken: Box keeps user events only "between two weeks and two months" and
documents no error for a position older than that, so a cursor older than the retention floor is treated as
expired rather than trusted to have seen every change.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ragstream_connectors.providers.base import CursorExpired, ItemChange, ProviderError

# What a sync needs of a file, in one call (https://developer.box.com/reference/get-files-id/).
FILE_FIELDS = ",".join(
    (
        "id",
        "type",
        "name",
        "sha1",
        "file_version",
        "size",
        "path_collection",
        "modified_at",
        "modified_by",
        "owned_by",
        "item_status",
        "shared_link",
    )
)
FOLDER_FIELDS = "id,type,name,path_collection,item_status"
# Webhook triggers that name a file to look up (https://developer.box.com/guides/webhooks/triggers/;
# FILE.PREVIOUSLY_DELETED is accepted too, though the v2 trigger list does not name it).
FILE_TRIGGERS = frozenset(
    {
        "FILE.UPLOADED",
        "FILE.PREVIOUSLY_DELETED",
        "FILE.RESTORED",
        "FILE.TRASHED",
        "FILE.DELETED",
        "FILE.RENAMED",
        "FILE.MOVED",
        "FILE.COPIED",
    }
)
FOLDER_TRIGGERS = frozenset(
    {"FOLDER.CREATED", "FOLDER.RENAMED", "FOLDER.MOVED", "FOLDER.TRASHED", "FOLDER.RESTORED", "FOLDER.DELETED"}
)
# What a webhook the connector creates subscribes to.
WEBHOOK_TRIGGERS = (
    "FILE.UPLOADED",
    "FILE.TRASHED",
    "FILE.DELETED",
    "FILE.RESTORED",
    "FILE.RENAMED",
    "FILE.MOVED",
    *sorted(FOLDER_TRIGGERS),
)
# User events that change which files sit under a folder, or where (https://developer.box.com/guides/events/
# user-events/for-user/#event-types).
FOLDER_EVENTS = frozenset(
    {"ITEM_CREATE", "ITEM_UPLOAD", "ITEM_MOVE", "ITEM_COPY", "ITEM_RENAME", "ITEM_TRASH", "ITEM_UNDELETE_VIA_TRASH"}
)
ROOT_FOLDER_ID = "0"
WEB_URL = "https://app.box.com/file/{id}"


def ancestor_ids(item: Mapping[str, Any]) -> list[str]:
    entries = (item.get("path_collection") or {}).get("entries") or []
    return [str(entry.get("id")) for entry in entries]


def in_scope(item: Mapping[str, Any], folder_id: str) -> bool:
    """Whether the item lies in the synced folder's tree (the folder itself included)."""
    if folder_id == ROOT_FOLDER_ID:
        return True
    is_the_folder = item.get("type") == "folder" and str(item.get("id")) == folder_id
    return is_the_folder or folder_id in ancestor_ids(item)


def item_path(item: Mapping[str, Any]) -> str:
    """`/Folder/Sub/name`, from the root's children down (the root "All Files" is not part of the path)."""
    entries = (item.get("path_collection") or {}).get("entries") or []
    names = [str(entry.get("name", "")) for entry in entries if str(entry.get("id")) != ROOT_FOLDER_ID]
    return "/" + "/".join([*names, str(item.get("name", ""))])


def deleted_item(file_id: str, api_url: str) -> ItemChange:
    return ItemChange(item_id=file_id, deleted=True, source_uri=f"{api_url}/files/{file_id}")


def item_from_file(file: Mapping[str, Any], *, api_url: str, folder_id: str) -> ItemChange:
    """A file's current state: an upsert, or a delete when it is not active or has left the synced tree."""
    file_id = str(file["id"])
    if file.get("item_status", "active") != "active" or not in_scope(file, folder_id):
        return deleted_item(file_id, api_url)
    name = str(file.get("name", ""))
    version = file.get("file_version") or {}
    version_id = str(version.get("id") or "")
    shared_link = file.get("shared_link") or {}
    size = file.get("size")
    return ItemChange(
        item_id=file_id,
        name=name,
        path=item_path(file),
        author=_user_name(file.get("modified_by")),
        modified_at=_parse_time(file.get("modified_at")),
        web_url=str(shared_link.get("url") or WEB_URL.format(id=file_id)),
        version_tag=version_id or str(file.get("sha1") or ""),
        content_type=mimetypes.guess_type(name)[0] or "",
        size_bytes=int(size) if size is not None else None,
        permissions=_principals(file),
        source_uri=f"{api_url}/files/{file_id}",
        extra={"file_version": version_id} if version_id else {},
    )


def webhook_event(payload: bytes) -> dict[str, Any]:
    """A verified webhook body (https://developer.box.com/guides/webhooks/handle/payload/); a body that is not
    one is a permanent error: retrying cannot fix it."""
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise ProviderError(f"Box webhook body is not JSON: {exc}", transient=False) from exc
    if not isinstance(event, dict) or event.get("type") != "webhook_event":
        raise ProviderError("Box webhook body is not a webhook_event", transient=False)
    return event


def _user_name(user: Any) -> str:
    if not isinstance(user, Mapping):
        return ""
    return str(user.get("login") or user.get("name") or "")


def _principals(file: Mapping[str, Any]) -> tuple[str, ...]:
    """The owner and, when there is a shared link, who it opens the file to (`open`, `company`, `collaborators`).
    Collaborators are not listed: that is one more call per file (GET /files/{id}/collaborations)."""
    principals = []
    owner = _user_name(file.get("owned_by"))
    if owner:
        principals.append(f"user:{owner}")
    access = (file.get("shared_link") or {}).get("effective_access") or (file.get("shared_link") or {}).get("access")
    if access:
        principals.append(f"shared_link:{access}")
    return tuple(principals)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class EventsCursor:
    """A position in the user event stream, and when Box handed it out."""

    stream_position: str
    taken_at: datetime


@dataclass(frozen=True)
class WalkCursor:
    """A full enumeration part-way through: folders still to list (the first one from `marker`), and the event
    stream position taken before the walk began, where the sync continues once the walk is done."""

    start: EventsCursor
    pending: tuple[str, ...]
    marker: str | None = None


def encode_cursor(cursor: EventsCursor | WalkCursor) -> str:
    if isinstance(cursor, EventsCursor):
        return json.dumps({"v": 1, "stream_position": cursor.stream_position, "taken_at": cursor.taken_at.isoformat()})
    start = cursor.start
    walk = {"pending": list(cursor.pending), "marker": cursor.marker}
    return json.dumps(
        {"v": 1, "stream_position": start.stream_position, "taken_at": start.taken_at.isoformat(), "walk": walk}
    )


def decode_cursor(text: str, *, now: datetime, retention: timedelta) -> EventsCursor | WalkCursor:
    """The saved cursor, or CursorExpired when it is unreadable or older than Box's event retention."""
    try:
        data = json.loads(text)
        start = EventsCursor(str(data["stream_position"]), datetime.fromisoformat(data["taken_at"]))
        walk = data.get("walk")
        pending = tuple(str(folder) for folder in walk["pending"]) if walk is not None else ()
        marker = walk.get("marker") if walk is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CursorExpired(f"unreadable Box cursor: {exc!r}") from exc
    if now - start.taken_at > retention:
        raise CursorExpired(f"Box stream position from {start.taken_at.isoformat()} is past the event retention")
    if walk is None:
        return start
    return WalkCursor(start, pending, str(marker) if marker else None)

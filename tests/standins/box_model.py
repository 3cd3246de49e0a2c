"""The Box content model behind the stand-in (box_server.py): folders, files with versions, the trash, and the
user event stream, rendered as Box's JSON.

Representations follow the Box API reference: file https://developer.box.com/reference/resources/file/, folder
https://developer.box.com/reference/resources/folder/, event https://developer.box.com/reference/resources/event/,
user (mini) https://developer.box.com/reference/resources/user--mini/. With `fields=` a resource carries its
mini representation plus the fields asked for (https://developer.box.com/guides/api-calls/
request-extra-fields/). An item in the trash, or inside a trashed folder, is answered 404 `trashed`; a
purged one 404 `not_found` (https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/).
Trashed items show the trash as their path, as the trashed-file resource does.

Events use the `changes` stream's types (https://developer.box.com/guides/events/user-events/for-user/):
ITEM_UPLOAD for a new file or version, ITEM_CREATE for a folder, ITEM_RENAME, ITEM_MOVE, ITEM_TRASH,
ITEM_UNDELETE_VIA_TRASH. The user event list documents no event of its own for a permanent delete, so purging a
live file records ITEM_TRASH (the documented "marked as deleted") and purging one already trashed records none.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROOT_ID = "0"
TRASH_PATH = {
    "total_count": 1,
    "entries": [{"type": "folder", "id": "1", "sequence_id": None, "etag": None, "name": "Trash"}],
}
STREAM_BASE = 1_152_922_976_252_290_000  # stream positions look like Box's (large integers)
PIECE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BoxUser:
    id: str = "226067247"
    name: str = "John Q. Developer"
    login: str = "johnq@dev.name"

    def mini(self) -> dict[str, Any]:
        return {"type": "user", "id": self.id, "name": self.name, "login": self.login}


@dataclass
class Content:
    """File bytes: given, or `size` bytes generated from `seed` piece by piece (large files never in memory)."""

    size: int
    data: bytes | None = None
    seed: int = 0
    _sha1: str = ""

    @classmethod
    def of(cls, data: bytes) -> Content:
        return cls(len(data), data)

    @classmethod
    def synthetic(cls, size: int, seed: int = 7) -> Content:
        return cls(size, None, seed)

    def pieces(self) -> Iterator[bytes]:
        if self.data is not None:
            yield from (self.data[i : i + PIECE_BYTES] for i in range(0, len(self.data), PIECE_BYTES))
            return
        block = hashlib.sha256(str(self.seed).encode()).digest() * (PIECE_BYTES // 32)
        for offset in range(0, self.size, PIECE_BYTES):
            yield block[: min(PIECE_BYTES, self.size - offset)]

    @property
    def sha1(self) -> str:
        if not self._sha1:
            digest = hashlib.sha1(usedforsecurity=False)
            for piece in self.pieces():
                digest.update(piece)
            self._sha1 = digest.hexdigest()
        return self._sha1


@dataclass(frozen=True)
class Version:
    id: str
    content: Content
    modified_at: datetime
    modified_by: BoxUser


@dataclass
class Item:
    id: str
    type: str  # "file" | "folder"
    name: str
    parent_id: str | None
    created_at: datetime
    modified_at: datetime
    modified_by: BoxUser
    status: str = "active"  # this item's own status: active | trashed | deleted
    sequence: int = 0
    trashed_at: datetime | None = None
    versions: list[Version] = field(default_factory=list)
    shared_access: str | None = None


class BoxTree:
    """Thread-safe: the test thread mutates it while the server thread renders it."""

    def __init__(self, owner: BoxUser) -> None:
        self.lock = threading.RLock()
        self.owner = owner
        now = datetime.now(UTC)
        self.items: dict[str, Item] = {ROOT_ID: Item(ROOT_ID, "folder", "All Files", None, now, now, owner)}
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(73_835_521_473)
        self._version_ids = itertools.count(78_096_737_033)

    # --- queries ---------------------------------------------------------------------------
    def get(self, item_id: str, kind: str) -> Item | None:
        item = self.items.get(item_id)
        return item if item is not None and item.type == kind else None

    def status(self, item: Item) -> str:
        """The item's effective status: trashed when it or any folder above it is in the trash."""
        if item.status != "active":
            return item.status
        parent = self.items.get(item.parent_id) if item.parent_id else None
        return self.status(parent) if parent is not None else "active"

    def ancestors(self, item: Item) -> list[Item]:
        chain: list[Item] = []
        parent_id = item.parent_id
        while parent_id is not None:
            parent = self.items[parent_id]
            chain.insert(0, parent)
            parent_id = parent.parent_id
        return chain

    def children(self, folder_id: str) -> list[Item]:
        """A folder's active children, folders first then by name, as Box lists them by default."""
        found = [item for item in self.items.values() if item.parent_id == folder_id and item.status == "active"]
        return sorted(found, key=lambda item: (item.type != "folder", item.name.lower(), item.id))

    # --- mutations (each records its user event) -------------------------------------------
    def new_item(self, kind: str, name: str, parent_id: str, by: BoxUser, content: Content | None = None) -> Item:
        now = datetime.now(UTC)
        item = Item(str(next(self._ids)), kind, name, parent_id, now, now, by)
        if content is not None:
            item.versions.append(Version(str(next(self._version_ids)), content, now, by))
        self.items[item.id] = item
        self.record("ITEM_UPLOAD" if kind == "file" else "ITEM_CREATE", item, by)
        return item

    def new_version(self, item: Item, content: Content, by: BoxUser) -> None:
        now = datetime.now(UTC)
        item.versions.append(Version(str(next(self._version_ids)), content, now, by))
        self.touch(item, by)
        self.record("ITEM_UPLOAD", item, by)

    def touch(self, item: Item, by: BoxUser) -> None:
        item.sequence += 1
        item.modified_at = datetime.now(UTC)
        item.modified_by = by

    def record(self, event_type: str, item: Item, by: BoxUser) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.events.append(
            {
                "type": "event",
                "event_id": uuid.uuid4().hex,
                "event_type": event_type,
                "created_at": now,
                "recorded_at": now,
                "created_by": by.mini(),
                "session_id": None,
                "source": self.render(item),
                "additional_details": None,
            }
        )

    # --- rendering ---------------------------------------------------------------------------
    def path_collection(self, item: Item) -> dict[str, Any]:
        if self.status(item) == "trashed":
            return TRASH_PATH
        entries = [self.mini(folder) for folder in self.ancestors(item)]
        return {"total_count": len(entries), "entries": entries}

    def mini(self, item: Item) -> dict[str, Any]:
        root = item.id == ROOT_ID
        tag = None if root else str(item.sequence)
        base: dict[str, Any] = {"type": item.type, "id": item.id, "sequence_id": tag, "etag": tag, "name": item.name}
        if item.type == "file":
            current = item.versions[-1]
            base["sha1"] = current.content.sha1
            base["file_version"] = {"type": "file_version", "id": current.id, "sha1": current.content.sha1}
        return base

    def render(self, item: Item, fields: list[str] | None = None) -> dict[str, Any]:
        """The standard representation, or with `fields` the mini one plus the fields named."""
        full = self._full(item)
        if not fields:
            return full
        return {**self.mini(item), **{name: full[name] for name in fields if name in full}}

    def _full(self, item: Item) -> dict[str, Any]:
        status = self.status(item)
        parent = self.items.get(item.parent_id) if item.parent_id else None
        size = item.versions[-1].content.size if item.type == "file" else self._folder_size(item)
        return {
            **self.mini(item),
            "description": "",
            "size": size,
            "path_collection": self.path_collection(item),
            "created_at": item.created_at.isoformat(timespec="seconds"),
            "modified_at": item.modified_at.isoformat(timespec="seconds"),
            "trashed_at": item.trashed_at.isoformat(timespec="seconds") if item.trashed_at else None,
            "purged_at": None,
            "content_created_at": item.created_at.isoformat(timespec="seconds"),
            "content_modified_at": item.modified_at.isoformat(timespec="seconds"),
            "created_by": self.owner.mini(),
            "modified_by": item.modified_by.mini(),
            "owned_by": self.owner.mini(),
            "shared_link": self._shared_link(item),
            "parent": self.mini(parent) if parent is not None else None,  # in the trash: where it was
            "item_status": status,
        }

    def _folder_size(self, folder: Item) -> int:
        return sum(
            child.versions[-1].content.size if child.type == "file" else self._folder_size(child)
            for child in self.children(folder.id)
        )

    def _shared_link(self, item: Item) -> dict[str, Any] | None:
        if item.shared_access is None:
            return None
        token = hashlib.sha256(item.id.encode()).hexdigest()[:32]
        return {
            "url": f"https://app.box.com/s/{token}",
            "download_url": None,
            "vanity_url": None,
            "access": item.shared_access,
            "effective_access": item.shared_access,
            "is_password_enabled": False,
            "permissions": {"can_download": True, "can_preview": True, "can_edit": False},
        }

    # --- the event stream ----------------------------------------------------------------------
    def events_from(self, position: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Events from `position` (None: the oldest kept; "now": none), and the position after them."""
        with self.lock:
            end = STREAM_BASE + len(self.events)
            if position == "now":
                return [], end
            start = max(0, int(position) - STREAM_BASE) if position else 0
            chunk = self.events[start : start + limit]
            return chunk, STREAM_BASE + start + len(chunk)

"""The drive behind the Microsoft Graph stand-in (graph_server.py): one SharePoint document library, its change
sequence for delta, and how its items look on the wire.

Wire shapes follow https://learn.microsoft.com/graph/api/resources/driveitem, .../resources/itemreference
(`path` is percent-encoded, `/drives/{id}/root:/A/B`), .../api/driveitem-list-permissions (`grantedToV2`,
`link`, `inheritedFrom`) and .../api/driveitem-delta "Remarks": like SharePoint and OneDrive for Business, delta
items carry no `parentReference.path` and no `cTag`, deleted ones no `name` either; the feed shows each item's
latest state, so an item that changes while pages are being read shows up again on a later page. Files carry
`file.hashes.quickXorHash` (https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import numpy as np

PIECE = 1024 * 1024
Kind = Literal["root", "folder", "file"]


class QuickXorHash:
    """OneDrive's quickXorHash: byte k is XORed into a 160-bit register at bit (11 * k) mod 160, circularly; the
    length is XORed into the last 8 bytes. Bytes k and k + 160 land on the same bits, so each piece is folded
    into 160 columns with numpy first."""

    def __init__(self) -> None:
        self._columns = np.zeros(160, dtype=np.uint8)
        self._length = 0

    def update(self, data: bytes) -> None:
        start = self._length % 160
        padded = np.zeros(start + len(data) + (-(start + len(data)) % 160), dtype=np.uint8)
        padded[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._columns ^= np.bitwise_xor.reduce(padded.reshape(-1, 160), axis=0)
        self._length += len(data)

    def digest(self) -> str:
        register, mask = 0, (1 << 160) - 1
        for column, value in enumerate(self._columns.tolist()):
            shifted = value << ((11 * column) % 160)
            register ^= (shifted & mask) | (shifted >> 160)
        raw = bytearray(register.to_bytes(20, "little"))
        for index, byte in enumerate(self._length.to_bytes(8, "little")):
            raw[12 + index] ^= byte
        return base64.b64encode(bytes(raw)).decode()


@dataclass(frozen=True)
class Content:
    """File bytes: given, or `size` bytes of generated text (streamed in pieces, never held whole)."""

    data: bytes | None
    size: int
    seed: str = ""
    sha256: str = ""
    quick_xor: str = ""

    @classmethod
    def of(cls, data: bytes | str | None, size: int | None, seed: str) -> Content:
        raw = data.encode() if isinstance(data, str) else data
        draft = cls(raw, len(raw) if raw is not None else int(size or 0), seed)
        sha, qxh = hashlib.sha256(), QuickXorHash()
        for piece in draft.pieces():
            sha.update(piece)
            qxh.update(piece)
        return cls(draft.data, draft.size, seed, sha.hexdigest(), qxh.digest())

    def pieces(self) -> Iterator[bytes]:
        if self.data is not None:
            for offset in range(0, len(self.data), PIECE):
                yield self.data[offset : offset + PIECE]
            return
        line = f"Generated report {self.seed}: revenue, churn and headcount by region, line after line.\n"
        block = (line * (PIECE // len(line) + 1)).encode()[:PIECE]
        for offset in range(0, self.size, PIECE):
            yield block[: min(PIECE, self.size - offset)]


@dataclass(frozen=True)
class Person:
    display_name: str = "Adele Vance"
    email: str = "adele@contoso.example"
    id: str = "a1e3c0de-0000-4000-8000-00000000ad01"

    def identity(self) -> dict[str, Any]:
        return {"user": {"email": self.email, "id": self.id, "displayName": self.display_name}}


@dataclass
class DriveItem:
    id: str
    name: str
    kind: Kind
    parent_id: str | None
    author: Person
    modifier: Person
    created: datetime
    modified: datetime
    content: Content | None = None
    mime_type: str = ""
    guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    etag_version: int = 1
    ctag_version: int = 1
    deleted: bool = False
    changed_seq: int = 0
    grants: list[dict[str, Any]] = field(default_factory=list)


class Drive:
    """Items by id, each stamped with the change sequence number of its latest change (delta reads by it).
    Thread-safe: tests change it from their thread while the server reads it from its own."""

    def __init__(self, drive_id: str, site_url: str) -> None:
        self.drive_id, self.site_url = drive_id, site_url
        self.lock = threading.RLock()
        self.items: dict[str, DriveItem] = {}
        self.seq = 0
        self.epoch = 0  # bumped to expire every delta token issued so far
        now = datetime.now(UTC)
        root = DriveItem(new_item_id(), "root", "root", None, Person(), Person(), now, now)
        self.root_id = root.id
        self._add(root)

    # --- changes ---------------------------------------------------------------------------------------
    def create(
        self, name: str, kind: Kind, parent_id: str | None, author: Person | None, content: Content | None, mime: str
    ) -> str:
        with self.lock:
            parent = self.live(parent_id or self.root_id)
            now, who = datetime.now(UTC), author or Person()
            return self._add(DriveItem(new_item_id(), name, kind, parent.id, who, who, now, now, content, mime))

    def edit(self, item_id: str, content: bytes | str | None, size: int | None, editor: Person | None) -> None:
        with self.lock:
            item = self.live(item_id)
            item.content = Content.of(content, size, f"{item.name}#{item.ctag_version + 1}")
            item.ctag_version += 1
            self._modified(item, editor)

    def rename(self, item_id: str, name: str) -> None:
        with self.lock:
            item = self.live(item_id)
            item.name = name
            self._modified(item, None)

    def move(self, item_id: str, parent_id: str) -> None:
        with self.lock:
            item = self.live(item_id)
            item.parent_id = self.live(parent_id).id
            self._modified(item, None)

    def delete(self, item_id: str) -> None:
        with self.lock:
            for item in [self.live(item_id), *self.descendants(item_id)]:
                if not item.deleted:
                    item.deleted = True
                    self._bump(item)

    def restore(self, item_id: str) -> None:
        with self.lock:
            item = self.items[item_id]
            for node in [*self.ancestors(item), item, *self.descendants(item_id)]:
                if node.deleted:
                    node.deleted = False
                    node.etag_version += 1
                    self._bump(node)

    def grant(self, item_id: str, permission: dict[str, Any]) -> None:
        with self.lock:
            item = self.live(item_id)
            item.grants.append({"id": uuid.uuid4().hex[:16], **permission})
            self._bump(item)

    def _add(self, item: DriveItem) -> str:
        self.items[item.id] = item
        self._bump(item)
        return item.id

    def _modified(self, item: DriveItem, editor: Person | None) -> None:
        item.etag_version += 1
        item.modified, item.modifier = datetime.now(UTC), editor or item.modifier
        self._bump(item)

    def _bump(self, item: DriveItem) -> None:
        self.seq += 1
        item.changed_seq = self.seq

    # --- reading ---------------------------------------------------------------------------------------
    def live(self, item_id: str) -> DriveItem:
        item = self.items.get(item_id)
        if item is None or item.deleted:
            raise KeyError(f"no live item {item_id}")
        return item

    def ancestors(self, item: DriveItem) -> list[DriveItem]:
        chain: list[DriveItem] = []
        while item.parent_id is not None:
            item = self.items[item.parent_id]
            chain.insert(0, item)
        return chain

    def descendants(self, item_id: str) -> list[DriveItem]:
        children = [item for item in self.items.values() if item.parent_id == item_id]
        return [node for child in children for node in (child, *self.descendants(child.id))]

    def path(self, item: DriveItem) -> str:
        return "".join(f"/{node.name}" for node in [*self.ancestors(item), item] if node.kind != "root")

    def delta_page(self, state: dict[str, Any], top: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page from `state` (`p`: the last sequence number read; `full`: a first enumeration begun at
        `start`, which skips items deleted before it) and the state of the next page, None when this is the last
        (the caller then hands out a delta token for the current sequence)."""
        with self.lock:
            fresh = [item for item in self.items.values() if item.changed_seq > state["p"]]
            pending = sorted((item for item in fresh if not self._gone_before(item, state)), key=_changed_seq)
            page = [self.render(item, delta=True) for item in pending[:top]]
            if len(pending) <= top:
                return page, None
            return page, {**state, "p": pending[top - 1].changed_seq}

    @staticmethod
    def _gone_before(item: DriveItem, state: dict[str, Any]) -> bool:
        return bool(state.get("full")) and item.deleted and item.changed_seq <= int(state.get("start", 0))

    def render(self, item: DriveItem, *, delta: bool) -> dict[str, Any]:
        reference: dict[str, Any] = {"driveType": "documentLibrary", "driveId": self.drive_id}
        if item.parent_id is not None:
            reference["id"] = item.parent_id
            if not delta:
                reference["path"] = f"/drives/{self.drive_id}/root:{quote(self.path(self.items[item.parent_id]))}"
        facet = "file" if item.kind == "file" else "folder"
        if item.deleted:
            return {"id": item.id, "parentReference": reference, "deleted": {"state": "deleted"}, facet: {}}
        body: dict[str, Any] = {
            "id": item.id,
            "name": item.name,
            "eTag": f'"{{{item.guid}}},{item.etag_version}"',
            "createdDateTime": iso(item.created),
            "lastModifiedDateTime": iso(item.modified),
            "webUrl": f"{self.site_url}/Shared%20Documents{quote(self.path(item))}",
            "createdBy": item.author.identity(),
            "lastModifiedBy": item.modifier.identity(),
            "parentReference": reference,
            "size": item.content.size if item.content else 0,
        }
        if not delta:
            body["cTag"] = f'"c:{{{item.guid}}},{item.ctag_version}"'
        if item.content is not None:
            body["file"] = {"mimeType": item.mime_type, "hashes": {"quickXorHash": item.content.quick_xor}}
        else:
            children = [child for child in self.items.values() if child.parent_id == item.id and not child.deleted]
            body["folder"] = {"childCount": len(children)}
        if item.kind == "root":
            body["root"] = {}
        return body

    def permissions(self, item: DriveItem) -> list[dict[str, Any]]:
        """The site's owner and member groups, then sharing grants of the item's folders (marked inherited)
        and of the item itself."""
        site = self.site_url.rsplit("/", 1)[-1]
        found: list[dict[str, Any]] = []
        for number, group, role in (("3", "Owners", "owner"), ("5", "Members", "write")):
            site_group = {"displayName": f"{site} {group}", "id": number}
            found.append({"id": f"g{number}", "roles": [role], "grantedToV2": {"siteGroup": site_group}})
        for node in [*self.ancestors(item), item]:
            for grant in node.grants:
                inherited = {"inheritedFrom": {"driveId": self.drive_id, "id": node.id}} if node is not item else {}
                found.append({**grant, **inherited})
        return found


def _changed_seq(item: DriveItem) -> int:
    return item.changed_seq


def delta_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def read_delta_token(raw: str) -> dict[str, Any] | None:
    try:
        state = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return None
    return state if isinstance(state, dict) and {"e", "p"} <= state.keys() else None


def new_item_id() -> str:
    # SharePoint driveItem ids: "01" and 32 base32 characters.
    return "01" + base64.b32encode(secrets.token_bytes(20)).decode()[:32]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

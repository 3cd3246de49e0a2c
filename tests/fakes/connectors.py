"""In-memory doubles of the connectors worker's ports: a state store, a drive with a change log, blobs.

Shared by tests/unit/test_connectors_sync.py and test_connectors_handlers.py."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rag.v1 import usage_pb2
from ragstream_connectors.ports import ConnectorRecord, DueConnector, ItemRecord, PageWrite, SyncState
from ragstream_connectors.providers.base import (
    ChangePage,
    CursorExpired,
    Downloaded,
    ItemChange,
    NotificationPlan,
    Subscription,
)
from ragstream_connectors.sync import ConnectorSync, SyncOptions

from fakes import RecordingSink

TENANT, CONNECTOR = "t1", "con_0123456789abcdef"
DOWNLOAD_DIR = Path(tempfile.gettempdir())


class Killed(Exception):
    """The worker died here."""


@dataclass
class MemoryStore:
    """`ConnectorStore` and `ScheduleStore` in memory; its clock ticks a second per write, like `now()` of
    successive transactions."""

    connectors: dict[str, ConnectorRecord] = field(default_factory=dict)
    states: dict[str, SyncState] = field(default_factory=dict)
    rows: dict[tuple[str, str], ItemRecord] = field(default_factory=dict)
    seen_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], bool] = field(default_factory=dict)
    cursors: list[str] = field(default_factory=list)
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    claims_lost: set[str] = field(default_factory=set)
    poll_delays: list[float] = field(default_factory=list)

    def add(self, provider: str = "sharepoint", *, status: str = "active", connector_id: str = CONNECTOR) -> None:
        self.connectors[connector_id] = ConnectorRecord(
            connector_id,
            TENANT,
            provider,
            "docs",
            status,
            {"drive_id": "d"},
            b"sealed",  # type: ignore[arg-type]
        )
        self.states[connector_id] = SyncState(next_poll_at=self.now)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def row(self, item_id: str, connector_id: str = CONNECTOR) -> ItemRecord:
        return self.rows[(connector_id, item_id)]

    def state(self, connector_id: str = CONNECTOR) -> SyncState:
        return self.states[connector_id]

    async def find(self, tenant_id: str, connector_id: str) -> ConnectorRecord | None:
        found = self.connectors.get(connector_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def mark_removed(self, tenant_id: str, connector_id: str) -> None:
        self.connectors[connector_id] = replace(self.connectors[connector_id], status="removed")

    async def sync_state(self, tenant_id: str, connector_id: str) -> SyncState:
        return self.states[connector_id]

    async def start_full_sync(self, tenant_id: str, connector_id: str) -> datetime:
        started = self.tick()
        self.states[connector_id] = replace(self.states[connector_id], cursor=None, full_sync_started_at=started)
        return started

    async def items(self, tenant_id: str, connector_id: str, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        return {i: self.rows[(connector_id, i)] for i in item_ids if (connector_id, i) in self.rows}

    async def save_page(self, tenant_id: str, connector_id: str, page: PageWrite) -> None:
        now = self.tick()
        for item in page.items:
            self.rows[(connector_id, item.item_id)] = item
            self.seen_at[(connector_id, item.item_id)] = now
        for item_id in page.seen:
            if (connector_id, item_id) in self.rows:
                self.seen_at[(connector_id, item_id)] = now
        state = self.states[connector_id]
        self.states[connector_id] = replace(
            state,
            cursor=page.cursor if page.cursor is not None else state.cursor,
            items_synced=state.items_synced + page.listed,
            last_sync_at=now,
            error_count=state.error_count + (page.error is not None),
            last_error=page.error or state.last_error,
        )
        if page.cursor is not None:
            self.cursors.append(page.cursor)
        self.deliveries.update({(connector_id, d): True for d in page.deliveries})

    async def unseen_live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]:
        started = self.states[connector_id].full_sync_started_at
        if started is None:
            return []
        return [
            row
            for (owner, item_id), row in sorted(self.rows.items())
            if owner == connector_id and not row.deleted and self.seen_at[(owner, item_id)] < started
        ][:limit]

    async def live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]:
        return [r for (owner, _), r in sorted(self.rows.items()) if owner == connector_id and not r.deleted][:limit]

    async def finish_sync(self, tenant_id: str, connector_id: str, poll_interval_s: float) -> None:
        now = self.tick()
        self.states[connector_id] = replace(
            self.states[connector_id],
            full_sync_started_at=None,
            last_sync_at=now,
            next_poll_at=now + timedelta(seconds=poll_interval_s),
        )

    async def record_error(self, tenant_id: str, connector_id: str, message: str) -> None:
        state = self.states[connector_id]
        self.states[connector_id] = replace(state, error_count=state.error_count + 1, last_error=message)

    async def poll_soon(self, tenant_id: str, connector_id: str, delay_s: float) -> None:
        self.poll_delays.append(delay_s)

    async def save_subscription(self, tenant_id: str, connector_id: str, subscription: Subscription | None) -> None:
        self.states[connector_id] = replace(self.states[connector_id], subscription=subscription)

    async def processed_deliveries(self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]) -> set[str]:
        return {d for d in delivery_ids if self.deliveries.get((connector_id, d))}

    async def mark_processed(self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]) -> None:
        self.deliveries.update({(connector_id, d): True for d in delivery_ids})

    async def due_connectors(self, renew_within_s: float, limit: int) -> list[DueConnector]:
        renew_by = self.now + timedelta(seconds=renew_within_s)
        due = []
        for connector_id, state in self.states.items():
            record = self.connectors[connector_id]
            expires = state.subscription.expires_at if state.subscription else None
            assert state.next_poll_at is not None
            if record.status == "active" and (state.next_poll_at <= self.now or (expires and expires <= renew_by)):
                due.append(DueConnector(TENANT, connector_id, record.provider, state.next_poll_at, expires))
        return due[:limit]

    async def claim(self, due: DueConnector, poll_interval_s: float, keep_deliveries_s: float) -> bool:
        if due.connector_id in self.claims_lost or self.states[due.connector_id].next_poll_at != due.next_poll_at:
            return False
        next_poll = self.now + timedelta(seconds=poll_interval_s)
        self.states[due.connector_id] = replace(self.states[due.connector_id], next_poll_at=next_poll)
        return True


def file(item_id: str, content: str = "", *, tag: str = "", name: str = "", **fields: Any) -> ItemChange:
    """A file as a provider lists it; its content rides in `extra` (read by `Drive.download`)."""
    return ItemChange(
        item_id=item_id,
        name=name or f"{item_id}.txt",
        version_tag=tag,
        content_type="text/plain",
        extra={"content": content or f"text of {item_id}"},
        **fields,
    )


@dataclass
class Drive:
    """A document management system with a change log: a cursor is a position in the log (`"<n>"`) or, during
    an enumeration, `"full:<offset>:<n>"`. `page_size` changes per page; `kill_after_pages` ends the listing
    with Killed after that many pages (the worker died between two pages)."""

    files: dict[str, ItemChange] = field(default_factory=dict)
    log: list[ItemChange] = field(default_factory=list)
    page_size: int = 2
    expired_before: int = 0
    kill_after_pages: int | None = None
    plans: list[NotificationPlan | Exception] = field(default_factory=list)
    download_error: Exception | None = None
    changes_error: Exception | None = None
    subscribe_error: Exception | None = None
    unsubscribe_error: Exception | None = None
    subscription: Subscription | None = None
    listings: list[str | None] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    subscribed: list[Subscription | None] = field(default_factory=list)
    unsubscribed: list[Subscription] = field(default_factory=list)
    planned: list[bytes] = field(default_factory=list)
    closed: int = 0

    def put(self, *changes: ItemChange, logged: bool = True) -> None:
        for change in changes:
            self.files[change.item_id] = change
            if logged:
                self.log.append(change)

    def remove(self, item_id: str, *, logged: bool = True) -> None:
        del self.files[item_id]
        if logged:
            self.log.append(ItemChange(item_id=item_id, deleted=True))

    async def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        self.listings.append(cursor)
        if self.changes_error is not None:
            raise self.changes_error
        if cursor is None or cursor.startswith("full:"):
            # An enumeration in item id order; its page cursor names the last item listed, like a server-side
            # snapshot's next link, and its final cursor is the log position when it began.
            _, after, start = cursor.split(":") if cursor else ("", "", str(len(self.log)))
            listing = [self.files[k] for k in sorted(self.files) if k > after]
            position, next_cursor = int(start), lambda chunk: f"full:{chunk[-1].item_id}:{start}"
        else:
            if int(cursor) < self.expired_before:
                raise CursorExpired(f"cursor {cursor} is gone")
            listing, position = self.log[int(cursor) :], len(self.log)
            next_cursor = lambda chunk: str(position - len(listing) + listing.index(chunk[-1]) + 1)  # noqa: E731
        for pages, offset in enumerate(range(0, max(len(listing), 1), self.page_size)):
            if self.kill_after_pages is not None and pages >= self.kill_after_pages:
                self.kill_after_pages = None
                raise Killed
            chunk = listing[offset : offset + self.page_size]
            final = offset + self.page_size >= len(listing)
            yield ChangePage(chunk, str(position) if final else next_cursor(chunk), final)

    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        self.planned.append(payload)
        plan = self.plans.pop(0) if self.plans else NotificationPlan(sync=True)
        if isinstance(plan, Exception):
            raise plan
        return plan

    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        self.downloads.append(item.item_id)
        if self.download_error is not None:
            raise self.download_error
        content = item.inline_content if item.inline_content is not None else item.extra["content"].encode()
        with tempfile.NamedTemporaryFile(dir=directory, delete=False) as handle:
            handle.write(content)
        return Downloaded(Path(handle.name), len(content), hashlib.sha256(content).hexdigest(), "text/plain")

    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        self.subscribed.append(existing)
        if self.subscribe_error is not None:
            raise self.subscribe_error
        return self.subscription

    async def unsubscribe(self, existing: Subscription) -> None:
        if self.unsubscribe_error is not None:
            raise self.unsubscribe_error
        self.unsubscribed.append(existing)

    async def aclose(self) -> None:
        self.closed += 1


@dataclass
class MemoryBlobs:
    stored: dict[tuple[str, str], bytes] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)

    async def put_file(
        self, tenant_id: str, key: str, path: Path, content_type: str, *, sha256: str | None = None
    ) -> str:
        self.stored[(tenant_id, key)] = path.read_bytes()  # noqa: ASYNC240  # a small test file
        self.paths.append(path)
        return f"blob://{key}"


@dataclass
class World:
    store: MemoryStore
    drive: Drive
    blobs: MemoryBlobs
    sink: RecordingSink
    options: SyncOptions

    def engine(self, connector_id: str = CONNECTOR) -> ConnectorSync:
        record = self.store.connectors[connector_id]
        return ConnectorSync(
            record, self.drive, store=self.store, blobs=self.blobs, sink=self.sink, options=self.options
        )

    def documents(self) -> list[Any]:
        """The document events published, in order (without the pages' usage records)."""
        return [m for m in self.sink.messages() if not isinstance(m, usage_pb2.UsageRecorded)]

    def events(self) -> list[tuple[str, str, int]]:
        """(kind, document id, version) of every document event published, in order."""
        return [(type(m).__name__, m.document_id, m.version) for m in self.documents()]


def make_world(provider: str = "sharepoint", **options: Any) -> World:
    store = MemoryStore()
    store.add(provider)
    return World(store, Drive(), MemoryBlobs(), RecordingSink(), SyncOptions(DOWNLOAD_DIR, **options))


def doc(item_id: str) -> str:
    return f"{CONNECTOR}:{item_id}"

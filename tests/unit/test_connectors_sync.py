"""The connectors sync engine over in-memory ports: versions, deletes, cursors saved page by page, full
enumerations that delete what they no longer list, expired cursors, crash and resume, and per-item limits.

The doubles here (an in-memory state store and a drive with a change log) are shared with
test_connectors_handlers.py."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordingSink, metric
from rag.v1 import documents_pb2
from ragstream_connectors.items import document_id_for, event_metadata, metadata_from
from ragstream_connectors.ports import ConnectorRecord, DueConnector, ItemRecord, PageWrite, SyncState
from ragstream_connectors.providers.base import (
    ChangePage,
    CursorExpired,
    Downloaded,
    ItemChange,
    NotificationPlan,
    ProviderError,
    Subscription,
)
from ragstream_connectors.sync import ConnectorSync, SyncOptions

pytestmark = pytest.mark.unit
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

    def add(self, provider: str = "sharepoint", *, status: str = "active", connector_id: str = CONNECTOR) -> None:
        self.connectors[connector_id] = ConnectorRecord(
            connector_id, TENANT, provider, "docs", status, {"drive_id": "d"}, b"sealed"  # type: ignore[arg-type]
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
    plans: list[NotificationPlan] = field(default_factory=list)
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
            offset, position = (0, len(self.log)) if cursor is None else map(int, cursor.split(":")[1:])
            listing, page_cursor = [self.files[k] for k in sorted(self.files)], lambda end: f"full:{end}:{position}"
        else:
            offset = int(cursor)
            if offset < self.expired_before:
                raise CursorExpired(f"cursor {cursor} is gone")
            listing, position, page_cursor = self.log, len(self.log), str
        pages = 0
        while True:
            if self.kill_after_pages is not None and pages >= self.kill_after_pages:
                self.kill_after_pages = None
                raise Killed
            end = min(offset + self.page_size, len(listing))
            final = end >= len(listing)
            yield ChangePage(list(listing[offset:end]), str(position) if final else page_cursor(end), final)
            pages, offset = pages + 1, end
            if final:
                return

    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        self.planned.append(payload)
        return self.plans.pop(0) if self.plans else NotificationPlan(sync=True)

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

    async def put_file(self, tenant_id: str, key: str, path: Path, content_type: str) -> str:
        self.stored[(tenant_id, key)] = path.read_bytes()
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

    def events(self) -> list[tuple[str, str, int]]:
        """(kind, document id, version) of everything published, in order."""
        return [(type(m).__name__, m.document_id, m.version) for m in self.sink.messages()]


def make_world(provider: str = "sharepoint", **options: Any) -> World:
    store = MemoryStore()
    store.add(provider)
    return World(store, Drive(), MemoryBlobs(), RecordingSink(), SyncOptions(DOWNLOAD_DIR, **options))


def doc(item_id: str) -> str:
    return f"{CONNECTOR}:{item_id}"


@pytest.fixture
def world() -> World:
    return make_world()


async def test_a_first_sync_enumerates_everything_saving_each_page(world: World) -> None:
    world.drive.put(file("a"), file("b"), file("c"), logged=False)
    assert await world.engine().sync() == 3
    assert world.events() == [("DocumentReceived", doc(i), 1) for i in "abc"]
    # One save per page: the last one is the delta position, the enumeration is over, the next poll is set.
    assert world.store.cursors == ["full:2:0", "0"]
    state = world.store.state()
    assert state.cursor == "0" and state.full_sync_started_at is None and state.items_synced == 3
    assert state.next_poll_at == state.last_sync_at + timedelta(seconds=900)  # type: ignore[operator]
    received = world.sink.messages()[0]
    assert received.title == "a.txt" and received.source.uri == f"blob://{doc('a')}/{received.source.sha256}"
    assert world.blobs.stored[(TENANT, f"{doc('a')}/{received.source.sha256}")] == b"text of a"
    assert received.source.content_type == "text/plain" and received.source.size_bytes == len(b"text of a")
    # Downloads are temporary files, gone once stored.
    assert world.blobs.paths and not any(path.exists() for path in world.blobs.paths)


async def test_metadata_says_where_the_item_came_from_and_who_may_read_it() -> None:
    modified = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    item = file(
        "a",
        path="/Shared/a.txt",
        author="ada@example.com",
        modified_at=modified,
        web_url="https://contoso/a",
        source_uri="https://graph/items/a",
        permissions=("group:finance", "user:ada"),
    )
    item = replace(item, extra={**item.extra, **metadata_from({"team": "x", "provider": "forged"})})
    metadata = event_metadata(CONNECTOR, "sharepoint", item)
    assert metadata == {
        "connector_id": CONNECTOR,
        "provider": "sharepoint",
        "item_id": "a",
        "source_uri": "https://graph/items/a",
        "path": "/Shared/a.txt",
        "author": "ada@example.com",
        "modified_at": "2026-03-01T12:00:00+00:00",
        "web_url": "https://contoso/a",
        "permissions": json.dumps(["group:finance", "user:ada"]),
        "team": "x",
    }


@pytest.mark.parametrize(
    ("item_id", "expected"),
    [
        ("01ABC.def_9:x-y", f"{CONNECTOR}:01ABC.def_9:x-y"),
        ("a b/c", f"{CONNECTOR}:h-{hashlib.sha256(b'a b/c').hexdigest()[:40]}"),
        ("x" * 200, f"{CONNECTOR}:h-{hashlib.sha256(b'x' * 200).hexdigest()[:40]}"),
    ],
)
def test_document_ids(item_id: str, expected: str) -> None:
    assert document_id_for(CONNECTOR, item_id) == expected
    assert len(expected) <= 128


async def test_deltas_version_updates_delete_and_restore_as_new_versions(world: World) -> None:
    world.drive.put(file("a", "v1", tag="e1"), logged=False)
    await world.engine().sync()
    world.drive.put(file("a", "v2", tag="e2"))
    world.drive.remove("a")
    world.drive.remove("ghost", logged=False) if "ghost" in world.drive.files else None
    world.drive.log.append(ItemChange(item_id="never-seen", deleted=True))
    await world.engine().sync()
    world.drive.put(file("a", "v2", tag="e3"))  # restored from the recycle bin: same content, a new version
    await world.engine().sync()
    assert world.events() == [
        ("DocumentReceived", doc("a"), 1),
        ("DocumentUpdated", doc("a"), 2),
        ("DocumentDeleted", doc("a"), 2),
        ("DocumentUpdated", doc("a"), 3),
    ]
    updated, restored = world.sink.messages()[1], world.sink.messages()[3]
    assert updated.previous_version == 1 and restored.previous_version == 2
    assert world.store.row("a") == replace(world.store.row("a"), version=3, deleted=False)


async def test_the_last_copy_of_a_repeated_item_wins(world: World) -> None:
    world.drive.page_size = 10
    await world.engine().sync()
    world.drive.put(file("a", "first", tag="e1"), file("a", "second", tag="e2"))
    world.drive.put(file("b", tag="e1"))
    world.drive.remove("b")
    await world.engine().sync()
    assert world.events() == [("DocumentReceived", doc("a"), 1)]
    assert world.drive.downloads == ["a"]
    assert world.blobs.stored[(TENANT, f"{doc('a')}/{hashlib.sha256(b'second').hexdigest()}")] == b"second"


async def test_an_unchanged_tag_downloads_nothing_and_a_new_tag_with_the_same_bytes_publishes_nothing(
    world: World,
) -> None:
    world.drive.put(file("a", "same", tag="e1"), logged=False)
    await world.engine().sync()
    world.drive.put(file("a", "same", tag="e1"))
    await world.engine().sync()
    assert world.drive.downloads == ["a"]
    world.drive.put(file("a", "same", tag="e2"))  # touched, not changed
    await world.engine().sync()
    assert world.drive.downloads == ["a", "a"] and world.events() == [("DocumentReceived", doc("a"), 1)]
    assert world.store.row("a").version_tag.startswith("e2#m")
    assert metric("ragstream_connectors_items_total", provider="sharepoint", action="unchanged") >= 2


async def test_rename_and_move_publish_a_new_version(world: World) -> None:
    world.drive.put(file("a", "same", tag="e1", path="/x"), logged=False)
    await world.engine().sync()
    world.drive.put(file("a", "same", tag="e2", path="/x", name="renamed.txt"))
    await world.engine().sync()
    world.drive.put(file("a", "same", tag="e3", path="/y", name="renamed.txt"))
    await world.engine().sync()
    assert world.events() == [
        ("DocumentReceived", doc("a"), 1),
        ("DocumentUpdated", doc("a"), 2),
        ("DocumentUpdated", doc("a"), 3),
    ]
    assert world.sink.messages()[1].title == "renamed.txt" and world.sink.messages()[2].metadata["path"] == "/y"


async def test_a_full_enumeration_deletes_what_it_no_longer_lists(world: World) -> None:
    world.drive.put(file("a"), file("b"), file("c"), logged=False)
    await world.engine().sync()
    world.drive.remove("b", logged=False)  # a delete no notification or delta ever reported
    await world.engine().sync(full=True)
    assert world.events()[3:] == [("DocumentDeleted", doc("b"), 1)]
    assert world.store.row("b").deleted and world.store.state().full_sync_started_at is None
    await world.engine().sync(full=True)  # nothing more to delete
    assert len(world.events()) == 4


async def test_an_expired_cursor_restarts_the_enumeration(world: World) -> None:
    world.drive.put(file("a"), file("b"), logged=False)
    await world.engine().sync()
    world.drive.remove("b", logged=False)
    world.drive.put(file("c"))
    world.drive.expired_before = 5  # 410 Gone for every saved cursor
    restarts = metric("ragstream_connectors_cursor_restarts_total", provider="sharepoint")
    await world.engine().sync()
    assert world.drive.listings[-2:] == ["0", None]
    assert metric("ragstream_connectors_cursor_restarts_total", provider="sharepoint") == restarts + 1
    assert ("DocumentReceived", doc("c"), 1) in world.events() and ("DocumentDeleted", doc("b"), 1) in world.events()
    assert world.store.state().cursor == "1"


async def test_an_enumeration_that_expires_is_a_provider_failure(world: World) -> None:
    world.drive.changes_error = CursorExpired("gone")
    with pytest.raises(ProviderError) as caught:
        await world.engine().sync()
    assert not caught.value.transient


async def test_a_worker_killed_between_pages_resumes_without_losing_or_repeating(world: World) -> None:
    world.drive.put(*(file(f"f{i}") for i in range(5)), logged=False)
    world.drive.kill_after_pages = 2
    with pytest.raises(Killed):
        await world.engine().sync()
    assert world.store.state().cursor == "full:4:0" and world.store.state().full_sync_started_at is not None
    world.drive.remove("f0", logged=False)  # deleted while the worker was down
    await world.engine().sync()  # the next poll or the redelivered event
    assert world.drive.listings == [None, "full:4:0"]
    received = [e for e in world.events() if e[0] == "DocumentReceived"]
    assert sorted(received) == [("DocumentReceived", doc(f"f{i}"), 1) for i in range(5)]
    # The enumeration that began before the crash still ends by deleting what it no longer found.
    assert world.events()[-1] == ("DocumentDeleted", doc("f0"), 1)


async def test_a_page_whose_events_were_not_acknowledged_is_replayed_with_the_same_versions(world: World) -> None:
    world.drive.put(file("a"), logged=False)
    await world.engine().sync()
    world.drive.put(file("a", "v2", tag="e2"))
    world.sink.fail_with = ConnectionError("broker gone")
    with pytest.raises(ConnectionError):
        await world.engine().sync()
    assert world.store.row("a").version == 1 and world.store.state().cursor == "0"
    await world.engine().sync()
    assert world.events() == [("DocumentReceived", doc("a"), 1), ("DocumentUpdated", doc("a"), 2)]


async def test_a_resync_redelivered_resumes_the_enumeration_it_started(world: World) -> None:
    world.drive.put(*(file(f"f{i}") for i in range(4)), logged=False)
    requested = world.store.now
    world.drive.kill_after_pages = 1
    with pytest.raises(Killed):
        await world.engine().sync(full=True, requested_at=requested)
    await world.engine().sync(full=True, requested_at=requested)
    assert world.drive.listings == [None, "full:2:0"]
    # A resync asked for after that enumeration began starts a new one.
    await world.engine().sync(full=True, requested_at=world.store.tick())
    assert world.drive.listings[-1] is None


async def test_too_large_files_are_skipped_without_downloading_and_recorded() -> None:
    world = make_world(max_file_bytes=10)
    world.drive.put(file("big", size_bytes=11), file("small", "tiny"), logged=False)
    await world.engine().sync()
    assert world.events() == [("DocumentReceived", doc("small"), 1)] and world.drive.downloads == ["small"]
    state = world.store.state()
    assert state.error_count == 1 and state.last_error is not None and "big" in state.last_error
    # Discovered only by the download (no size listed): skipped too.
    world.drive.put(file("sneaky", "x" * 11))
    await world.engine().sync()
    assert len(world.events()) == 1 and world.store.state().error_count == 2


async def test_an_unreadable_item_is_skipped_but_a_transient_failure_is_raised(world: World) -> None:
    world.drive.put(file("a"), logged=False)
    world.drive.download_error = ProviderError("403 forbidden", transient=False, status=403)
    await world.engine().sync()
    assert world.events() == [] and "403" in (world.store.state().last_error or "")
    world.drive.put(file("a", tag="e2"))
    world.drive.download_error = ProviderError("still throttled", transient=True, status=429)
    with pytest.raises(ProviderError):
        await world.engine().sync()


async def test_content_urls_are_left_to_the_ingest_worker(world: World) -> None:
    item = ItemChange(item_id="u", name="Page", content_url="https://example.com/page", content_type="text/html")
    await world.engine().apply_items([item])
    received = world.sink.messages()[0]
    assert received.source.uri == "https://example.com/page" and received.source.content_type == "text/html"
    assert world.drive.downloads == [] and world.blobs.stored == {}


async def test_folders_are_never_documents(world: World) -> None:
    world.drive.put(ItemChange(item_id="folder", name="Shared", is_file=False), logged=False)
    await world.engine().sync()
    assert world.events() == [] and world.store.rows == {}


async def test_items_named_by_a_notification_leave_the_cursor_alone(world: World) -> None:
    await world.engine().apply_items([file("a"), ItemChange(item_id="a", deleted=True), file("b")])
    assert world.events() == [("DocumentReceived", doc("b"), 1)]
    assert world.store.cursors == [] and world.store.state().items_synced == 2


async def test_generic_webhooks_list_nothing_so_a_sync_deletes_nothing() -> None:
    world = make_world("webhook")
    await world.engine().apply_items([ItemChange(item_id="a", inline_content=b"hello", name="A")])
    assert await world.engine().sync(full=True) == 0
    assert world.drive.listings == [] and world.events() == [("DocumentReceived", doc("a"), 1)]


async def test_purge_deletes_every_live_item(world: World) -> None:
    world.drive.put(file("a"), file("b"), file("c"), logged=False)
    await world.engine().sync()
    world.drive.remove("c")
    await world.engine().sync()
    assert await world.engine().purge() == 2
    assert world.events()[-2:] == [("DocumentDeleted", doc("a"), 1), ("DocumentDeleted", doc("b"), 1)]
    assert all(row.deleted for row in world.store.rows.values())


def test_document_events_are_what_the_pipeline_expects() -> None:
    # The engine publishes the pipeline's own document events, nothing connector-specific.
    assert documents_pb2.DocumentUpdated.DESCRIPTOR.fields_by_name["previous_version"].number == 8

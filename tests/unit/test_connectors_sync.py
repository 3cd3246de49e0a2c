"""The connectors sync engine over in-memory ports: versions, deletes, cursors saved page by page, full
enumerations that delete what they no longer list, expired cursors, crash and resume, and per-item limits.

The doubles (an in-memory state store and a drive with a change log) are in tests/fakes/connectors.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import RecordingSink, metric
from fakes.connectors import (
    CONNECTOR,
    TENANT,
    Killed,
    World,
    doc,
    file,
    make_world,
)
from ragstream_common.events import Emitted
from ragstream_connectors.items import document_id_for, event_metadata, metadata_from
from ragstream_connectors.providers.base import (
    CursorExpired,
    ItemChange,
    ProviderError,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return make_world()


async def test_a_first_sync_enumerates_everything_saving_each_page(world: World) -> None:
    world.drive.put(file("a"), file("b"), file("c"), logged=False)
    assert await world.engine().sync() == 3
    assert world.events() == [("DocumentReceived", doc(i), 1) for i in "abc"]
    # One save per page: the last one is the delta position, the enumeration is over, the next poll is set.
    assert world.store.cursors == ["full:b:0", "0"]
    state = world.store.state()
    assert state.cursor == "0" and state.full_sync_started_at is None and state.items_synced == 3
    assert state.next_poll_at == state.last_sync_at + timedelta(seconds=900)  # type: ignore[operator]
    received = world.documents()[0]
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
    await world.engine().sync()
    world.drive.remove("a")
    world.drive.log.append(ItemChange(item_id="never-seen", deleted=True))  # unknown: nothing to delete
    await world.engine().sync()
    world.drive.put(file("a", "v2", tag="e3"))  # restored from the recycle bin: same content, a new version
    await world.engine().sync()
    assert world.events() == [
        ("DocumentReceived", doc("a"), 1),
        ("DocumentUpdated", doc("a"), 2),
        ("DocumentDeleted", doc("a"), 2),
        ("DocumentUpdated", doc("a"), 3),
    ]
    updated, restored = world.documents()[1], world.documents()[3]
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
    assert world.documents()[1].title == "renamed.txt" and world.documents()[2].metadata["path"] == "/y"


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
    world.drive.put(file("old"), logged=False)
    await world.engine().sync()
    world.drive.remove("old", logged=False)  # gone without a trace: only an enumeration can tell
    world.drive.put(*(file(f"f{i}") for i in range(5)), logged=False)
    world.drive.kill_after_pages = 2
    with pytest.raises(Killed):
        await world.engine().sync(full=True)
    assert world.store.state().cursor == "full:f3:0" and world.store.state().full_sync_started_at is not None
    await world.engine().sync()  # the next poll, or the redelivered event
    assert world.drive.listings == [None, None, "full:f3:0"]
    received = [e for e in world.events() if e[0] == "DocumentReceived"]
    assert received == [("DocumentReceived", doc(i), 1) for i in ("old", "f0", "f1", "f2", "f3", "f4")]
    # The enumeration begun before the crash still ends by deleting what it no longer found.
    assert world.events()[-1] == ("DocumentDeleted", doc("old"), 1)
    assert world.store.state().full_sync_started_at is None


async def test_a_page_whose_events_were_not_acknowledged_is_replayed_with_the_same_versions(world: World) -> None:
    world.drive.put(file("a"), logged=False)
    await world.engine().sync()
    world.drive.put(file("a", "v2", tag="e2"))
    world.sink.fail_with = ConnectionError("broker gone")
    with pytest.raises(ConnectionError):
        await world.engine().sync()
    # Version 2 was reserved before the publish: the replay publishes that same version for the same content.
    assert world.store.row("a").version == 2 and world.store.row("a").pending
    assert world.store.state().cursor == "0"
    await world.engine().sync()
    assert world.events() == [("DocumentReceived", doc("a"), 1), ("DocumentUpdated", doc("a"), 2)]
    assert not world.store.row("a").pending


class DiesAfterPublishing(RecordingSink):
    """Kafka acknowledges the events, then the worker dies before it confirms them (kill -9 in between)."""

    async def emit(self, events: Sequence[Emitted]) -> None:
        await super().emit(events)
        raise Killed("killed after the publish")


@pytest.mark.parametrize("edited", [False, True])
async def test_a_worker_dying_after_publishing_never_gives_one_version_two_contents(edited: bool) -> None:
    """The events of a page went out, the rows were not confirmed, and the item may change before the replay:
    the same content comes back under the same version, other content under the next one."""
    world = make_world()
    world.sink = DiesAfterPublishing()
    world.drive.put(file("a", "first text"), logged=False)
    with pytest.raises(Killed):
        await world.engine().sync()
    if edited:
        world.drive.put(file("a", "edited while the worker was down", tag="e2"), logged=False)
    world.sink = RecordingSink(emitted=list(world.sink.emitted))
    await world.engine().sync()
    messages = world.documents()
    by_version: dict[int, set[str]] = {}
    for message in messages:
        by_version.setdefault(message.version, set()).add(message.source.sha256)
    assert all(len(contents) == 1 for contents in by_version.values()), by_version
    expected = (
        [("DocumentReceived", doc("a"), 1)] * 2
        if not edited
        else [
            ("DocumentReceived", doc("a"), 1),
            ("DocumentUpdated", doc("a"), 2),
        ]
    )
    assert world.events() == expected
    assert world.store.row("a").version == (2 if edited else 1) and not world.store.row("a").pending


async def test_a_resync_redelivered_resumes_the_enumeration_it_started(world: World) -> None:
    world.drive.put(*(file(f"f{i}") for i in range(4)), logged=False)
    requested = world.store.now
    world.drive.kill_after_pages = 1
    with pytest.raises(Killed):
        await world.engine().sync(full=True, requested_at=requested)
    await world.engine().sync(full=True, requested_at=requested)
    assert world.drive.listings == [None, "full:f1:0"]
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
    received = world.documents()[0]
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

"""The connectors worker killed (kill -9) in the middle of a full enumeration of a SharePoint drive, then restarted.

The drive is the chaos system's Graph stand-in (`system.graph`: 20 items a delta page, PAGE_DELAY_S before each
page), so enumerating a few hundred files takes many pages and several seconds. The worker writes a page's item
rows and the page's cursor in one transaction, after the page's events are acknowledged by Kafka; progress is read
from those rows. Checked after the restart:
- it resumes where it stood: its first delta request carries the nextLink it had saved, nothing saved before the
  kill is downloaded again, and the saved cursor ends at the drive's delta link;
- nothing is lost: every file has its DocumentReceived version 1 and connector_items matches the drive;
- nothing is invented: no version 2 without a change, and a (document, version) published twice (the page in hand
  when the process died is replayed: at-least-once) carries the same content each time; the copies are counted;
- changes made while the worker is down (edits, renames, deletes, new files) all arrive, as versions.
The mid-enumeration kill also runs small (FAST_FILES) under `chaos_fast`, so `make test` and CI exercise it. A
scenario whose fault must hit a narrow window retries with a new connector and fails when it never does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rag.v1 import documents_pb2
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_connectors.items import document_id_for
from standins.graph_drive import read_delta_token
from support.kafka_clients import client_kwargs
from support.tenant_kafka import read_topic

from chaos.system import GRAPH_PAGE_SIZE, TENANT, ChaosSystem, LaggingGraph

pytestmark = pytest.mark.chaos

FILES = 240
PAGE_DELAY_S = 0.3
# Killed once three pages are saved: well inside the enumeration of FILES / GRAPH_PAGE_SIZE pages.
KILL_AT_ROWS = 3 * GRAPH_PAGE_SIZE
# The fast variant (`make test`, CI's chaos-fast): five pages, killed inside the third (about a minute in all).
FAST_FILES, FAST_KILL_AT_ROWS = 5 * GRAPH_PAGE_SIZE, 2 * GRAPH_PAGE_SIZE
SYNC_TIMEOUT_S = 240.0
# A scenario whose fault must land in a narrow window tries again (a new connector) before it fails.
WINDOW_ATTEMPTS = 3
RECEIVED, UPDATED, DELETED = "DocumentReceived", "DocumentUpdated", "DocumentDeleted"


@dataclass(frozen=True)
class Row:
    """A confirmed connector_items row: what the worker last published for an item (Kafka acknowledged it)."""

    version: int
    content_sha256: str
    title: str
    deleted: bool


@dataclass(frozen=True)
class Published:
    """One record of rag.documents.received.v1 for a document: its event type, version and content hash."""

    kind: str
    version: int
    sha256: str


@dataclass
class Kill:
    """What the worker had saved when it was killed, and where the stand-in's request log stood."""

    rows: dict[str, Row]
    cursor: str
    requests_before_restart: int = 0


@pytest.fixture
async def graph(system: ChaosSystem) -> AsyncIterator[LaggingGraph]:
    system.graph.delta_delay_s = PAGE_DELAY_S
    yield system.graph
    system.graph.delta_delay_s = 0.0


@pytest.fixture
async def connectors(system: ChaosSystem, graph: LaggingGraph) -> AsyncIterator[list[str]]:
    """Connectors the scenario creates; removed with their documents afterwards, before its files go."""
    created: list[str] = []
    items_before = set(graph.drive.items)
    yield created
    await system.heal()  # a scenario that failed may have left the worker killed or frozen
    async with system.client() as client:
        for connector in created:
            await client.delete(f"/v1/connectors/{connector}", params={"purge": "true"})
        deadline = time.monotonic() + 120
        while created and time.monotonic() < deadline:
            statuses = [(await client.get(f"/v1/connectors/{c}")).json().get("status") for c in created]
            if all(status == "removed" for status in statuses):
                break
            await asyncio.sleep(0.5)
    for item_id in set(graph.drive.items) - items_before:  # the next scenario's enumeration skips them
        if graph.drive.items[item_id].parent_id == graph.root_id and not graph.drive.items[item_id].deleted:
            graph.delete(item_id)


async def create_sharepoint_connector(system: ChaosSystem, graph: LaggingGraph, created: list[str]) -> str:
    """Through the API, as a tenant does: the gateway seals the secret and publishes RESYNC."""
    body = {
        "type": "sharepoint",
        "name": f"chaos {uuid.uuid4().hex[:6]}",
        "config": {"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id},
        "secrets": {"client_secret": graph.client_secret},
    }
    async with system.client() as client:
        response = await client.post("/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    connector = str(response.json()["connector_id"])
    created.append(connector)
    return connector


def add_files(graph: LaggingGraph, folder: str, count: int, label: str) -> list[str]:
    return [
        graph.create_file(f"{label}-{n:03}.txt", f"{label} report {n}: revenue by region.", parent_id=folder)
        for n in range(count)
    ]


async def item_rows(system: ChaosSystem, connector: str) -> dict[str, Row]:
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            # Confirmed rows only: a pending one was written before its events were acknowledged (sync.py).
            "SELECT item_id, version, content_sha256, title, deleted FROM connector_items"
            " WHERE connector_id = %s AND NOT pending",
            (connector,),
        )
        return {str(r[0]): Row(int(r[1]), str(r[2]), str(r[3]), bool(r[4])) for r in await cursor.fetchall()}


async def sync_state(system: ChaosSystem, connector: str) -> tuple[str | None, datetime | None]:
    """(saved cursor, full_sync_started_at)."""
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT cursor, full_sync_started_at FROM connector_sync_state WHERE connector_id = %s", (connector,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


def delta_token(link: str) -> dict[str, Any]:
    """The stand-in's state behind a delta link or nextLink (a nextLink's carries `full` during an enumeration)."""
    state = read_delta_token(parse_qs(urlsplit(link).query)["token"][0])
    assert state is not None, link
    return state


async def kill_mid_sync(
    system: ChaosSystem, connector: str, files: int, *, settle_s: float, kill_at_rows: int = KILL_AT_ROWS
) -> Kill:
    """kill -9 the worker `settle_s` after the page commit that brings its rows to `kill_at_rows`; fails unless
    the enumeration was still running then. Rows are polled every 20 ms, so settle_s=0 kills during the next
    delta request (PAGE_DELAY_S long), before any event of the next page is published."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as connection:
        saved = 0
        while saved < kill_at_rows:
            assert time.monotonic() < deadline, f"only {saved} items synced:\n{system.log_tail('connectors')}"
            await asyncio.sleep(0.02)
            row = await (
                await connection.execute(
                    "SELECT count(*) FROM connector_items WHERE connector_id = %s AND NOT pending", (connector,)
                )
            ).fetchone()
            saved = int(row[0]) if row else 0
    await asyncio.sleep(settle_s)
    system.kill9("connectors")
    rows = await item_rows(system, connector)
    cursor, running = await sync_state(system, connector)
    assert running is not None and cursor is not None and len(rows) < files, (
        f"the enumeration was over before the kill ({len(rows)} of {files} items)"
    )
    assert delta_token(cursor).get("full"), "the saved cursor should be a nextLink of the enumeration"
    return Kill(rows, cursor)


async def restart(system: ChaosSystem, graph: LaggingGraph, kill: Kill) -> None:
    """Start the worker again once the killed one's last delta request (held PAGE_DELAY_S) has reached the
    stand-in, so the request log after this point is the new process's alone."""
    await asyncio.sleep(PAGE_DELAY_S + 0.5)
    kill.requests_before_restart = len(graph.requests)
    await system.restart("connectors")


async def wait_synced(system: ChaosSystem, graph: LaggingGraph, connector: str) -> str:
    """Until the enumeration is over and the saved cursor is the delta link of the drive as it is now."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    current = {"e": graph.drive.epoch, "p": graph.drive.seq}
    cursor: str | None = None
    while time.monotonic() < deadline:
        cursor, running = await sync_state(system, connector)
        if running is None and cursor is not None and delta_token(cursor) == current:
            return cursor
        await asyncio.sleep(0.5)
    raise AssertionError(f"not synced to {current} (cursor {cursor}):\n{system.log_tail('connectors')}")


def assert_resumed(graph: LaggingGraph, kill: Kill, changed: Iterable[str] = ()) -> None:
    """The new process went on from the saved nextLink and downloaded nothing saved before the kill that did not
    change since."""
    after = graph.requests[kill.requests_before_restart :]
    deltas = [request.query.get("token") for request in after if request.path.endswith("/root/delta")]
    assert deltas and deltas[0] == parse_qs(urlsplit(kill.cursor).query)["token"][0], "did not resume at the cursor"
    assert None not in deltas, "enumerated from the start again"
    downloaded = {request.path.split("/")[-2] for request in after if request.path.endswith("/content")}
    assert not downloaded & (set(kill.rows) - set(changed)), "downloaded again unchanged items saved before the kill"


async def published(system: ChaosSystem, connector: str) -> dict[str, list[Published]]:
    """The connector's records on rag.documents.received.v1, by document id, oldest first per document."""
    prefix = f"{TENANT}/{connector}:"
    found: dict[str, list[Published]] = {}
    for record in await read_topic(system.admin, DOCUMENTS_RECEIVED.name):
        if not record.key.startswith(prefix):
            continue
        message, _ = cloudevents.decode(record.value, record.headers, DOCUMENTS_RECEIVED.event_types)
        assert isinstance(
            message, documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated | documents_pb2.DocumentDeleted
        )
        sha = "" if isinstance(message, documents_pb2.DocumentDeleted) else message.source.sha256
        found.setdefault(message.document_id, []).append(Published(type(message).__name__, message.version, sha))
    return found


def republished_copies(events: dict[str, list[Published]]) -> int:
    """How many records repeat an earlier (document, type, version); fails if a repeat carries other content."""
    copies = 0
    for document, records in events.items():
        contents: dict[tuple[str, int], set[str]] = {}
        for record in records:
            contents.setdefault((record.kind, record.version), set()).add(record.sha256)
        conflicting = {key: shas for key, shas in contents.items() if len(shas) > 1}
        assert not conflicting, f"{document}: one version published with different contents {conflicting}"
        copies += len(records) - len(contents)
    return copies


def versions(events: dict[str, list[Published]], document: str) -> set[tuple[str, int, str]]:
    return {(record.kind, record.version, record.sha256) for record in events.get(document, [])}


def live_rows(graph: LaggingGraph, items: Iterable[str], version: int = 1) -> dict[str, Row]:
    """The rows the drive's current state calls for: `version`, its content, its name, live."""
    return {item: Row(version, graph.sha256(item), graph.drive.items[item].name, False) for item in items}


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("file_count", "kill_at_rows"),
    [
        pytest.param(FAST_FILES, FAST_KILL_AT_ROWS, marks=pytest.mark.chaos_fast, id="fast"),
        pytest.param(FILES, KILL_AT_ROWS, id="full"),
    ],
)
async def test_kill9_mid_enumeration_resumes_from_the_saved_cursor(
    system: ChaosSystem, graph: LaggingGraph, connectors: list[str], file_count: int, kill_at_rows: int
) -> None:
    folder = graph.create_folder(f"kill9-{uuid.uuid4().hex[:6]}")
    files = add_files(graph, folder, file_count, "quarterly")
    started = time.monotonic()
    connector = await create_sharepoint_connector(system, graph, connectors)
    # Killed in the middle of a page: its downloads under way, its blobs perhaps stored, its events perhaps sent.
    kill = await kill_mid_sync(system, connector, file_count, settle_s=PAGE_DELAY_S + 0.1, kill_at_rows=kill_at_rows)
    await restart(system, graph, kill)
    await wait_synced(system, graph, connector)

    assert_resumed(graph, kill)
    assert await item_rows(system, connector) == live_rows(graph, files)
    events = await published(system, connector)
    documents = {document_id_for(connector, item): item for item in files}
    assert set(events) == set(documents)
    for document, item in documents.items():
        assert versions(events, document) == {(RECEIVED, 1, graph.sha256(item))}, document
    copies = republished_copies(events)
    print(
        f"killed with {len(kill.rows)} of {file_count} items saved; {copies} records republished after the restart;"
        f" synced {time.monotonic() - started:.1f} s after the connector was created"
    )


@pytest.mark.timeout(600)
async def test_changes_while_the_worker_is_down_arrive_as_versions(
    system: ChaosSystem, graph: LaggingGraph, connectors: list[str]
) -> None:
    folder = graph.create_folder(f"down-{uuid.uuid4().hex[:6]}")
    files = add_files(graph, folder, FILES, "contract")
    connector = await create_sharepoint_connector(system, graph, connectors)
    # Killed between pages. (Killed between a page's publish and its row write, an item of that page edited
    # while the worker is down would come back as the same version with other content: see the docs fragment.)
    kill = await kill_mid_sync(system, connector, FILES, settle_s=0.0)
    saved = [item for item in files if item in kill.rows]
    pending = [item for item in files if item not in kill.rows]
    edited, renamed, deleted = saved[:8], saved[8:12], saved[12:16]
    edited_pending, deleted_pending = pending[:8], pending[8:12]
    for item in edited + edited_pending:
        graph.edit(item, f"Amended while the worker was down: {item}.")
    for item in renamed:
        graph.rename(item, f"renamed-{graph.drive.items[item].name}")
    for item in deleted + deleted_pending:
        graph.delete(item)
    created = add_files(graph, folder, 4, "new")
    await restart(system, graph, kill)
    await wait_synced(system, graph, connector)

    assert_resumed(graph, kill, changed=edited + renamed)
    live = [item for item in files + created if item not in deleted + deleted_pending]
    expected = live_rows(graph, live) | live_rows(graph, edited + renamed, version=2)
    expected |= {item: Row(1, kill.rows[item].content_sha256, kill.rows[item].title, True) for item in deleted}
    assert await item_rows(system, connector) == expected

    events = await published(system, connector)
    assert set(events) == {document_id_for(connector, item) for item in live + deleted}
    for item in live:
        first = kill.rows[item].content_sha256 if item in kill.rows else graph.sha256(item)
        want = {(RECEIVED, 1, first)}
        if item in edited + renamed:
            want.add((UPDATED, 2, graph.sha256(item)))
        assert versions(events, document_id_for(connector, item)) == want, item
    for item in deleted:
        want = {(RECEIVED, 1, kill.rows[item].content_sha256), (DELETED, 1, "")}
        assert versions(events, document_id_for(connector, item)) == want, item
    copies = republished_copies(events)
    print(f"killed with {len(kill.rows)} of {FILES} items saved; {copies} records republished after the restart")


class TopicWatch:
    """The connector's records on rag.documents.received.v1 as they arrive (no group: from the end, as of start)."""

    def __init__(self, system: ChaosSystem) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(system.admin), enable_auto_commit=False)

    async def __aenter__(self) -> TopicWatch:
        await self._consumer.start()
        partitions = [TopicPartition(DOCUMENTS_RECEIVED.name, p) for p in range(DOCUMENTS_RECEIVED.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve the end offsets now, before anything is published
            await self._consumer.position(partition)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def items(self, connector: str, timeout_ms: int = 200) -> set[str]:
        """Item ids of the records that arrived since the last call (waits up to `timeout_ms` for one)."""
        prefix = f"{TENANT}/{connector}:".encode()
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        keys = [record.key for records in batches.values() for record in records if record.key]
        return {key[len(prefix) :].decode() for key in keys if key.startswith(prefix)}


async def freeze_between_publish_and_save(
    system: ChaosSystem, watch: TopicWatch, connector: str
) -> tuple[Kill, set[str]] | None:
    """SIGSTOP the worker the moment a page's events reach Kafka; if the page's rows are not written yet, kill -9
    it right there (published, not saved), else let it go on and try the next page. The kill and the items
    published but not saved; None when no page was caught in between before the enumeration ended."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while time.monotonic() < deadline:
        arrived = await watch.items(connector)
        if not arrived:
            continue
        system.sigstop("connectors")
        rows = await item_rows(system, connector)
        cursor, running = await sync_state(system, connector)
        unsaved = arrived - set(rows)
        if unsaved and running is not None and cursor is not None:
            system.kill9("connectors")
            return Kill(rows, cursor), unsaved
        system.sigcont("connectors")
        if running is None:
            return None
    return None


async def caught_between_publish_and_save(
    system: ChaosSystem, graph: LaggingGraph, connectors: list[str]
) -> tuple[str, list[str], Kill, set[str]]:
    """A connector over a new folder of FILES files whose worker was killed between a page's publish and its
    save: (connector, files, the kill, the items published but not saved). The window is narrow: an attempt
    that misses it has its folder deleted and its connector removed, and the next starts afresh; after
    WINDOW_ATTEMPTS misses the scenario fails (a skip would hide that it never ran)."""
    for attempt in range(1, WINDOW_ATTEMPTS + 1):
        folder = graph.create_folder(f"window-{uuid.uuid4().hex[:6]}")
        files = add_files(graph, folder, FILES, "memo")
        async with TopicWatch(system) as watch:
            connector = await create_sharepoint_connector(system, graph, connectors)
            caught = await freeze_between_publish_and_save(system, watch, connector)
        if caught is not None:
            return connector, files, *caught
        print(f"attempt {attempt}: the enumeration ended before a page was caught between publish and save")
        graph.delete(folder)  # a later enumeration skips it: the next connector lists only its own files
        async with system.client() as client:
            await client.delete(f"/v1/connectors/{connector}", params={"purge": "true"})
    raise AssertionError(f"the worker was never caught between a page's publish and its save ({WINDOW_ATTEMPTS} tries)")


@pytest.mark.timeout(900)
async def test_kill9_between_a_page_publish_and_its_save_then_an_edit(
    system: ChaosSystem, graph: LaggingGraph, connectors: list[str]
) -> None:
    connector, files, kill, unsaved = await caught_between_publish_and_save(system, graph, connectors)
    item = sorted(unsaved)[0]
    first = graph.sha256(item)
    graph.edit(item, f"Amended after its first version was published, before it was saved: {item}.")
    await restart(system, graph, kill)
    await wait_synced(system, graph, connector)

    events = await published(system, connector)
    assert {document_id_for(connector, f) for f in files} == set(events)
    records = events[document_id_for(connector, item)]
    print(f"{item}: published {records} (first content {first[:12]})")
    republished_copies(events)
    newest = max(records, key=lambda record: record.version)
    assert newest.sha256 == graph.sha256(item), "the edit never arrived as a version of its own"

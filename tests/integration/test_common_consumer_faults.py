"""EventConsumer under faults, against a real broker and a real Postgres: transient failures are waited out
(paused, uncommitted, still in the group), permanent and unclassified ones dead-lettered, poison isolated, a
rebalance during a wait loses nothing; gRPC health follows a Postgres that goes away and comes back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from psycopg_pool import AsyncConnectionPool
from rag.v1 import documents_pb2
from ragstream_common.events import PermanentError
from ragstream_common.grpc_server import GrpcServer, check_health
from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.dlq_depth import dlq_depths
from ragstream_common.kafka.topics import TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.readiness import DependencyProbe, postgres_answers
from ragstream_common.service import serve_while_ready
from ragstream_devstack.postgres import LocalPostgres
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration
Handler = Callable[[Sequence[Envelope[Any]]], Awaitable[None]]


async def _topic_with_events(kafka: KafkaSettings, ids: Sequence[str], partitions: int) -> TopicSpec:
    """A fresh topic (and its DLQ) holding one DocumentDeleted per id, keyed by id."""
    spec = TopicSpec(f"test.faults.{uuid.uuid4().hex[:8]}.v1", partitions=partitions, retention_ms=3_600_000)
    await ensure_topics(kafka, (spec, TopicSpec(spec.dlq, partitions=1, retention_ms=3_600_000)))
    publisher = EventPublisher(kafka, source="test/faults")
    await publisher.start()
    try:
        events = [OutgoingEvent(spec.name, i, documents_pb2.DocumentDeleted(document_id=i)) for i in ids]
        await publisher.publish_many(events)
    finally:
        await publisher.stop()
    return spec


class Running:
    """An EventConsumer running in the background, with its own dead-letter publisher."""

    def __init__(self, kafka: KafkaSettings, options: ConsumerOptions, handler: Handler) -> None:
        self.publisher = EventPublisher(kafka, source="test/faults")
        self.consumer = EventConsumer(kafka, options, handler, self.publisher)
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        await self.publisher.start()
        await self.consumer.start()
        self._task = asyncio.create_task(self.consumer.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)
        await self.consumer.stop()
        await self.publisher.stop()


def _options(topic: str, **overrides: Any) -> ConsumerOptions:
    defaults: dict[str, Any] = {"transient_backoff_cap_s": 1.0, "dlq_depth_interval_s": 0}
    return ConsumerOptions(group_id=f"g-{uuid.uuid4().hex}", topics=(topic,), **{**defaults, **overrides})


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s} s: {what}") from None


async def _committed(kafka: KafkaSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for meta in offsets.values())


async def _dead_letters(kafka: KafkaSettings, spec: TopicSpec, count: int) -> list[tuple[str, dict[str, str]]]:
    """The first `count` records of the topic's DLQ: (document id, headers)."""
    reader = AIOKafkaConsumer(spec.dlq, **client_kwargs(kafka), auto_offset_reset="earliest")
    await reader.start()
    try:
        records = [await asyncio.wait_for(reader.getone(), 20) for _ in range(count)]
    finally:
        await reader.stop()
    letters = []
    for record in records:
        message = documents_pb2.DocumentDeleted.FromString(record.value)
        letters.append((message.document_id, {name: value.decode() for name, value in record.headers}))
    return letters


async def test_a_transient_outage_is_waited_out_without_dlq_commit_or_leaving_the_group(
    kafka_admin: KafkaSettings,
) -> None:
    ids = [f"d{i}" for i in range(30)]
    spec = await _topic_with_events(kafka_admin, ids, partitions=3)
    # A poll interval shorter than the outage: only the keep-alive polls keep the member in its group.
    options = _options(spec.name, max_poll_interval_ms=3000, transient_backoff_base_s=0.1)
    outage_ends = 0.0  # five seconds after the first call (a fresh broker may take a while to form the group)
    handled: list[str] = []
    failures = 0

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        nonlocal failures, outage_ends
        outage_ends = outage_ends or time.monotonic() + 5.0
        if time.monotonic() < outage_ends:
            failures += 1
            raise psycopg.OperationalError("connection to server failed: Connection refused")
        handled.extend(e.message.document_id for e in batch)

    async with Running(kafka_admin, options, handle) as running:
        await _until(lambda: failures >= 3, 60, "the handler failed repeatedly")
        assert running.consumer.transient_failure_s() > 0
        assert await _committed(kafka_admin, options.group_id) == 0, "committed during the outage"
        await _until(lambda: len(handled) >= len(ids), 40, "every event handled after recovery")
        await asyncio.sleep(1.0)  # room for a duplicate to show up, and for the last commit
        assert running.consumer.transient_failure_s() == 0
        assert running.consumer.rebalances == 0, "the member left its group"
    assert Counter(handled) == Counter(ids), "lost or duplicated events"
    assert await _committed(kafka_admin, options.group_id) == len(ids)
    assert await dlq_depths(kafka_admin, [spec.name]) == {spec.dlq: 0}


async def test_permanent_goes_to_the_dlq_at_once_and_unclassified_after_its_attempts(
    kafka_admin: KafkaSettings,
) -> None:
    spec = await _topic_with_events(kafka_admin, ["perm", "ok1", "unc", "ok2"], partitions=1)
    options = _options(spec.name, attempts=3, retry_backoff_s=0.2)
    handled: list[str] = []
    calls: Counter[str] = Counter()

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        batch_ids = [e.message.document_id for e in batch]
        calls.update(batch_ids if len(batch_ids) == 1 else [])
        if "perm" in batch_ids:
            raise PermanentError("document 'perm' breaks the contract")
        if "unc" in batch_ids:
            raise ValueError("a bug that fires on 'unc'")
        handled.extend(batch_ids)

    started = time.monotonic()
    async with Running(kafka_admin, options, handle):
        await _until(lambda: handled == ["ok1", "ok2"], 30, "the good events handled in order")
    assert time.monotonic() - started < 15
    assert calls["perm"] == 1 and calls["unc"] == 3
    letters = dict(await _dead_letters(kafka_admin, spec, 2))
    assert letters["perm"]["dlq_failure_kind"] == "permanent" and letters["perm"]["dlq_attempts"] == "1"
    assert letters["perm"]["dlq_error_class"] == "PermanentError"
    assert letters["perm"]["dlq_original_offset"] == "0"
    assert letters["unc"]["dlq_failure_kind"] == "unclassified" and letters["unc"]["dlq_attempts"] == "3"
    assert letters["unc"]["dlq_error_message"] == "a bug that fires on 'unc'"
    assert letters["unc"]["ce_type"] == "rag.v1.DocumentDeleted"
    depth = await dlq_depths(kafka_admin, [spec.name])
    assert depth == {spec.dlq: 2}


async def test_a_poison_record_does_not_stall_its_partition(kafka_admin: KafkaSettings) -> None:
    ids = [f"g{i}" for i in range(10)] + ["poison"] + [f"g{i}" for i in range(10, 20)]
    spec = await _topic_with_events(kafka_admin, ids, partitions=1)
    options = _options(spec.name, attempts=3, retry_backoff_s=0.5)
    handled: list[str] = []

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        if any(e.message.document_id == "poison" for e in batch):
            raise KeyError("poison")
        handled.extend(e.message.document_id for e in batch)

    started = time.monotonic()
    async with Running(kafka_admin, options, handle):
        await _until(lambda: len(handled) == 20, 20, "the good events around the poison handled")
        stalled_s = time.monotonic() - started
    assert handled == [i for i in ids if i != "poison"]
    assert stalled_s < 8, f"the partition stalled {stalled_s:.1f} s behind one poison record"


async def test_a_rebalance_during_a_transient_wait_loses_nothing(kafka_admin: KafkaSettings) -> None:
    """A is stuck on a transient failure; B joins, takes some of A's paused partitions and re-reads them from the
    last commit; A gets well: every event is handled, all offsets end up committed, nothing is dead-lettered."""
    ids = [f"r{i}" for i in range(24)]
    spec = await _topic_with_events(kafka_admin, ids, partitions=4)
    options = _options(spec.name)
    a_is_down = True
    handled_by_a: list[str] = []
    handled_by_b: list[str] = []

    async def handle_a(batch: Sequence[Envelope[Any]]) -> None:
        if a_is_down:
            raise TimeoutError("dependency timed out")
        handled_by_a.extend(e.message.document_id for e in batch)

    async def handle_b(batch: Sequence[Envelope[Any]]) -> None:
        handled_by_b.extend(e.message.document_id for e in batch)

    async with Running(kafka_admin, options, handle_a) as a:
        await _until(lambda: a.consumer.transient_failure_s() > 0.5, 20, "A waiting out a transient failure")
        async with Running(kafka_admin, options, handle_b):
            await _until(lambda: a.consumer.rebalances > 0, 30, "B took partitions from A")
            await _until(lambda: len(handled_by_b) > 0, 30, "B handled what it took over")
            a_is_down = False
            await _until(lambda: set(handled_by_a) | set(handled_by_b) == set(ids), 40, "every event handled")
            await asyncio.sleep(1.0)  # the last commits
        assert await _committed(kafka_admin, options.group_id) == len(ids)
    assert not set(handled_by_a) & set(handled_by_b), "an event handled by both members"
    assert await dlq_depths(kafka_admin, [spec.name]) == {spec.dlq: 0}


async def _health_becomes(address: str, service: str, wanted: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = await check_health(address, service)
        if status == wanted:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"health of {service} still {status} after {timeout_s} s, expected {wanted}")


async def test_grpc_health_follows_a_postgres_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    postgres = LocalPostgres(tmp_path / "pgdata")
    await asyncio.to_thread(postgres.start)
    try:
        async with AsyncExitStack() as stack:
            pool = AsyncConnectionPool(postgres.database_url, min_size=1, max_size=2, open=False)
            await pool.open(wait=True, timeout=30)
            stack.push_async_callback(pool.close)
            server = GrpcServer("127.0.0.1", 0, ["test.v1.Worker"])
            await server.start()
            stack.push_async_callback(server.stop)
            probe = DependencyProbe({"database": postgres_answers(pool, 1.0)}, interval_s=0.5, timeout_s=1.5)
            await serve_while_ready(stack, server, probe)
            assert await check_health(server.address, "test.v1.Worker") == "SERVING"

            await asyncio.to_thread(postgres.stop)
            await _health_becomes(server.address, "test.v1.Worker", "NOT_SERVING", 15)
            assert await check_health(server.address) == "NOT_SERVING"
            assert (await probe.checks())["database"] is False

            await asyncio.to_thread(postgres.start)
            await _health_becomes(server.address, "test.v1.Worker", "SERVING", 60)
            assert await check_health(server.address) == "SERVING"
    finally:
        await asyncio.to_thread(postgres.stop)


async def test_a_commit_interval_coalesces_commits_and_hands_over_what_was_handled(
    kafka_admin: KafkaSettings,
) -> None:
    """With a long commit interval, one-record batches are not committed one by one; a rebalance commits what
    was handled of the partitions taken away (the new owner does not handle it again); stopping commits the rest."""
    ids = [f"c{i}" for i in range(20)]
    spec = await _topic_with_events(kafka_admin, ids, partitions=2)
    options = _options(spec.name, max_batch=1, commit_interval_ms=600_000)
    released = asyncio.Event()
    handled_by_a: list[str] = []
    handled_by_b: list[str] = []

    async def handle_a(batch: Sequence[Envelope[Any]]) -> None:
        handled_by_a.extend(e.message.document_id for e in batch)
        if len(handled_by_a) == 8:
            await released.wait()  # busy, never idle: only a rebalance or the stop may commit now

    async def handle_b(batch: Sequence[Envelope[Any]]) -> None:
        handled_by_b.extend(e.message.document_id for e in batch)
        await released.wait()  # B's own progress stays out of the committed offsets until released

    async with Running(kafka_admin, options, handle_a) as a:
        await _until(lambda: len(handled_by_a) == 8, 30, "A handled 7 events and is busy with the 8th")
        await asyncio.sleep(0.5)
        assert await _committed(kafka_admin, options.group_id) == 1, "only the first batch commits at once"
        rebalances = a.consumer.rebalances
        async with Running(kafka_admin, options, handle_b):
            await _until(lambda: a.consumer.rebalances > rebalances, 30, "B joined and A's partitions were revoked")
            await _until(lambda: bool(handled_by_b), 30, "B busy with its first event")
            assert await _committed(kafka_admin, options.group_id) == 7, "what A handled was committed at the handover"
            released.set()
            await _until(lambda: set(handled_by_a) | set(handled_by_b) == set(ids), 40, "every event handled")
    assert await _committed(kafka_admin, options.group_id) == len(ids), "stopping committed the rest"
    handled_twice = (Counter(handled_by_a) + Counter(handled_by_b)) - Counter(ids)
    assert set(handled_twice) <= {handled_by_a[7]}, f"handled again after the handover: {handled_twice}"

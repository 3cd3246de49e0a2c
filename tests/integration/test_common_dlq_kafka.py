"""Dead letters against a real broker: a consumer dead-letters poison, the DLQ tools list, inspect and redrive
it once the handler is fixed, and redriving again publishes nothing (the ledger is a real compacted topic)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rag.v1 import documents_pb2
from ragstream_common.dlq import DeadLetterFilter, DeadLetterService, open_dead_letter_service
from ragstream_common.dlq_service import DeadLetterNotFound
from ragstream_common.kafka import (
    Envelope,
    EventPublisher,
    OutgoingEvent,
    PermanentError,
)
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.topics import DLQ_REDRIVES, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from support.consuming import consume_until
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration


class Pipeline:
    """One source topic (one partition: events are handled in the order sent) and its DLQ, and a consumer whose
    handler refuses some documents until fixed."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.spec = TopicSpec(f"test.dlq.{uuid.uuid4().hex[:8]}.v1", partitions=1, retention_ms=3_600_000)
        self.refused: set[str] = set()
        self.handled: list[str] = []

    async def create(self) -> None:
        dlq = TopicSpec(self.spec.dlq, partitions=1, retention_ms=3_600_000)
        await ensure_topics(self.kafka, (self.spec, dlq))

    async def handle(self, batch: Sequence[Envelope[Any]]) -> None:
        for envelope in batch:
            if envelope.message.document_id in self.refused:
                raise PermanentError(f"document {envelope.message.document_id} refused")
        self.handled.extend(e.message.document_id for e in batch)

    async def publish(self, *events: tuple[str, str]) -> None:
        """(tenant, document id) pairs as DocumentReceived events."""
        publisher = EventPublisher(self.kafka, source="test/dlq")
        await publisher.start()
        try:
            await publisher.publish_many(
                [
                    OutgoingEvent(
                        self.spec.name,
                        document_key(tenant, doc),
                        documents_pb2.DocumentReceived(tenant_id=tenant, document_id=doc, version=1),
                    )
                    for tenant, doc in events
                ]
            )
        finally:
            await publisher.stop()

    async def consume_until(self, done: Any, timeout_s: float = 30) -> None:
        group = f"g-{self.spec.name}"
        await consume_until(self.kafka, self.spec.name, group, self.handle, done, timeout_s)

    async def source_end(self) -> int:
        consumer = AIOKafkaConsumer(**client_kwargs(self.kafka))
        await consumer.start()
        try:
            partitions = [TopicPartition(self.spec.name, p) for p in range(self.spec.partitions)]
            return sum((await consumer.end_offsets(partitions)).values())
        finally:
            await consumer.stop()


@pytest.fixture
async def pipeline(kafka_topics: str, kafka_admin: KafkaSettings) -> Pipeline:
    created = Pipeline(kafka_admin)
    await created.create()
    return created


@pytest.fixture
async def service(pipeline: Pipeline) -> AsyncIterator[DeadLetterService]:
    async with AsyncExitStack() as stack:
        yield await open_dead_letter_service(stack, pipeline.kafka, topics=(pipeline.spec.dlq,))


async def _wait_depth(service: DeadLetterService, depth: int) -> None:
    async with asyncio.timeout(20):
        while (await service.depths())[0].depth < depth:
            await asyncio.sleep(0.1)


async def test_list_filter_inspect_and_redrive_once_a_poison_is_fixed(
    pipeline: Pipeline, service: DeadLetterService
) -> None:
    pipeline.refused = {"bad-1", "bad-2"}
    producer = AIOKafkaProducer(**client_kwargs(pipeline.kafka))
    await producer.start()
    await producer.send_and_wait(pipeline.spec.name, b"\x00garbage", key=b"acme/garbage", headers=[("ce_id", b"g")])
    await producer.stop()
    await pipeline.publish(("acme", "bad-1"), ("beta", "bad-2"), ("acme", "good"))
    await pipeline.consume_until(lambda: "good" in pipeline.handled)
    await _wait_depth(service, 3)

    everything = await service.list_page(pipeline.spec.name, DeadLetterFilter())
    assert len(everything.items) == 3 and everything.next_offset is None
    by_reason = {i.letter.reason_class for i in everything.items}
    assert by_reason == {"PermanentError", "InvalidEvent"}
    acme = await service.list_page(pipeline.spec.dlq, DeadLetterFilter(tenant_id="acme"))
    assert [i.letter.key for i in acme.items] == ["acme/bad-1"]
    invalid = await service.list_page(pipeline.spec.dlq, DeadLetterFilter(reason_class="InvalidEvent"))
    [garbage] = invalid.items
    assert garbage.letter.tenant_id is None and garbage.letter.original_topic == pipeline.spec.name
    first_page = await service.list_page(pipeline.spec.dlq, DeadLetterFilter(), limit=1)
    assert first_page.next_offset == 1

    bad_1 = acme.items[0].letter
    inspected, mark = await service.inspect(pipeline.spec.dlq, bad_1.dlq_offset)
    assert mark is None and inspected.payload.encoding == "json" and '"documentId": "bad-1"' in inspected.payload.text
    assert inspected.dead_letter.event_type == "rag.v1.DocumentReceived" and inspected.dead_letter.event_id
    assert inspected.dead_letter.consumer_group == f"g-{pipeline.spec.name}"
    with pytest.raises(DeadLetterNotFound):
        await service.inspect(pipeline.spec.dlq, 99)

    pipeline.refused.clear()  # the fix is deployed
    result = await service.redrive_matching(pipeline.spec.dlq, DeadLetterFilter(reason_class="PermanentError"), "t")
    assert (result.redriven, result.already_redriven) == (2, 0)
    await pipeline.consume_until(lambda: {"bad-1", "bad-2"} <= set(pipeline.handled))
    assert pipeline.handled.count("bad-1") == 1


async def test_redriving_twice_publishes_once_even_from_a_fresh_process(
    pipeline: Pipeline, service: DeadLetterService
) -> None:
    pipeline.refused = {"once"}
    await pipeline.publish(("acme", "once"), ("acme", "after"))
    await pipeline.consume_until(lambda: "after" in pipeline.handled)
    await _wait_depth(service, 1)
    before = await pipeline.source_end()

    first = await service.redrive(pipeline.spec.name, 0, "admin")
    again = await service.redrive(pipeline.spec.dlq, 0, "admin")
    async with AsyncExitStack() as stack:  # another process: its ledger is read back from the topic
        fresh = await open_dead_letter_service(stack, pipeline.kafka, topics=(pipeline.spec.dlq,))
        from_fresh = await fresh.redrive(pipeline.spec.dlq, 0, "cli")
        bulk = await fresh.redrive_matching(pipeline.spec.dlq, DeadLetterFilter(), "cli")
        [listed] = (await fresh.list_page(pipeline.spec.dlq, DeadLetterFilter())).items
    assert (first.status, again.status, from_fresh.status) == ("redriven", "already_redriven", "already_redriven")
    assert (bulk.redriven, bulk.already_redriven) == (0, 1)
    assert listed.redriven is not None and listed.redriven.actor == "admin"
    assert await pipeline.source_end() == before + 1

    consumer = AIOKafkaConsumer(pipeline.spec.name, **client_kwargs(pipeline.kafka), auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        async with asyncio.timeout(10):
            while len(records) < 3:
                batch = await consumer.getmany(timeout_ms=200)
                records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    original, _after, redriven = sorted(records, key=lambda r: r.offset)
    headers = dict(redriven.headers)
    assert headers[h.REDRIVE_OF] == f"{pipeline.spec.dlq}:0".encode()
    assert not any(name.startswith("dlq_") for name in headers)
    assert (redriven.key, redriven.value) == (original.key, original.value)
    assert headers["ce_id"] == dict(original.headers)["ce_id"]

    ledger = AIOKafkaConsumer(DLQ_REDRIVES.name, **client_kwargs(pipeline.kafka), auto_offset_reset="earliest")
    await ledger.start()
    try:
        marks: list[bytes] = []
        async with asyncio.timeout(10):
            while not any(k == f"{pipeline.spec.dlq}:0".encode() for k in marks):
                batch = await ledger.getmany(timeout_ms=200)
                marks += [r.key for rs in batch.values() for r in rs]
    finally:
        await ledger.stop()
    assert marks.count(f"{pipeline.spec.dlq}:0".encode()) == 1

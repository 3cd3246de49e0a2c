"""Consumer lag and records in from a real EventConsumer on the real broker: highwater minus position per
partition, reported after a batch, back to zero once the group has caught up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rag.v1 import queries_pb2
from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.topics import TopicSpec
from ragstream_common.kafka_settings import KafkaSettings

pytestmark = pytest.mark.integration

EVENTS = 5


def lag(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value("ragstream_consumer_lag", {"group": group, "topic": topic, "partition": "0"})


async def test_lag_follows_the_group_through_a_backlog(kafka_admin: KafkaSettings) -> None:
    spec = TopicSpec(f"test.metrics.{uuid.uuid4().hex[:8]}.v1", partitions=1, retention_ms=3_600_000)
    await ensure_topics(kafka_admin, (spec, TopicSpec(spec.dlq, partitions=1, retention_ms=3_600_000)))
    publisher = EventPublisher(kafka_admin, source="test/metrics")
    await publisher.start()
    for n in range(EVENTS):
        message = queries_pb2.QueryRequested(query_id=f"q-{n}", tenant_id="acme", question="why?")
        await publisher.publish(OutgoingEvent(spec.name, "acme", message))

    group = f"g-{uuid.uuid4().hex[:8]}"
    lag_seen: list[float | None] = []

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        lag_seen.append(lag(group, spec.name))

    # One record per batch: the first batch's report (never throttled) finds the other four still behind.
    options = ConsumerOptions(group_id=group, topics=(spec.name,), max_batch=1, dlq_depth_interval_s=0)
    consumer = EventConsumer(kafka_admin, options, handle, publisher)
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(30):
            while len(lag_seen) < EVENTS or lag(group, spec.name) != 0:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await consumer.stop()
        await publisher.stop()

    assert lag_seen[0] is None  # nothing reported before the first batch
    assert lag_seen[1] == EVENTS - 1
    records = {"group": group, "topic": spec.name}
    assert REGISTRY.get_sample_value("ragstream_consumer_records_total", records) == EVENTS

"""Bounded topic labels on every consumer metric: a tenant's own topic (rag.tenant.<id>.*, read by the gateway's
intake consumer by pattern) is counted, retried, dead-lettered, lagged and sized as `rag.tenant.*`, whoever
increments the metric; declared topics keep their names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry import context as otel_context
from prometheus_client import REGISTRY
from ragstream_common.events import Envelope
from ragstream_common.failures import FailureKind
from ragstream_common.kafka.dead_letters import DeadLetters
from ragstream_common.kafka.dlq_depth import by_label
from ragstream_common.kafka.envelopes import handle_traced
from ragstream_common.kafka.metrics import RECORDS, RETRIES, forget_lag, report_lag
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED

pytestmark = pytest.mark.unit

GROUP = "test-topic-labels"
TENANT_TOPIC = "rag.tenant.x.documents.v1"
BOUNDED = "rag.tenant.*"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"group": GROUP, **labels})


def envelope(topic: str, offset: int = 0) -> Envelope[Any]:
    return Envelope(
        message=None,
        key="x",
        event_id=f"e{offset}",
        event_type="rag.v1.DocumentReceived",
        source="ragstream/test",
        time=datetime.now(UTC),
        topic=topic,
        partition=0,
        offset=offset,
        trace_context=otel_context.Context(),
    )


async def test_an_event_of_a_tenant_topic_is_counted_as_rag_tenant_star() -> None:
    async def handler(envelopes: object) -> None:
        pass

    await handle_traced(handler, [envelope(TENANT_TOPIC), envelope(DOCUMENTS_RECEIVED.name)], GROUP)
    RECORDS.labels(GROUP, TENANT_TOPIC).inc(2)
    RETRIES.labels(TENANT_TOPIC, GROUP, str(FailureKind.TRANSIENT)).inc()
    assert sample("ragstream_events_consumed_total", topic=BOUNDED) == 1
    assert sample("ragstream_events_consumed_total", topic=DOCUMENTS_RECEIVED.name) == 1
    assert sample("ragstream_events_consumed_total", topic=TENANT_TOPIC) is None
    assert sample("ragstream_consumer_records_total", topic=BOUNDED) == 2
    assert sample("ragstream_consumer_retries_total", topic=BOUNDED, kind="transient") == 1
    # Keyword labels are bounded too.
    RECORDS.labels(group=GROUP, topic="rag.tenant.y.documents.v1").inc()
    assert sample("ragstream_consumer_records_total", topic=BOUNDED) == 3


class Publisher:
    """The one call DeadLetters makes of an EventPublisher."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None, headers: object) -> None:
        self.sent.append(topic)


async def test_a_dead_letter_of_a_tenant_topic_is_counted_as_rag_tenant_star() -> None:
    publisher = Publisher()
    record = ConsumerRecord(TENANT_TOPIC, 0, 7, 0, 0, b"x", b"v", None, 1, 1, [])
    await DeadLetters(publisher, GROUP).send(record, ValueError("poison"), FailureKind.PERMANENT, 1)  # type: ignore[arg-type]
    assert publisher.sent == [f"{TENANT_TOPIC}.dlq"]  # the record itself still goes to its own tenant's DLQ
    assert sample("ragstream_events_dead_lettered_total", topic=BOUNDED) == 1
    assert sample("ragstream_events_dead_lettered_total", topic=TENANT_TOPIC) is None


class Consumer:
    def __init__(self, highwaters: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> None:
        self._highwaters, self._positions = highwaters, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwaters)

    def highwater(self, tp: TopicPartition) -> int:
        return self._highwaters[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]


def lag(topic: str, partition: int) -> float | None:
    return sample("ragstream_consumer_lag", topic=topic, partition=str(partition))


async def test_tenant_topics_lag_is_summed_per_partition_number() -> None:
    a0 = TopicPartition(TENANT_TOPIC, 0)
    b0, b1 = (TopicPartition("rag.tenant.y.documents.v1", p) for p in (0, 1))
    declared = TopicPartition(DOCUMENTS_RECEIVED.name, 0)
    consumer = Consumer({a0: 10, b0: 25, b1: 4, declared: 9}, {a0: 7, b0: 20, b1: 4, declared: 1})
    assert await report_lag(consumer, GROUP) == 4
    assert lag(BOUNDED, 0) == 8
    assert lag(BOUNDED, 1) == 0
    assert lag(DOCUMENTS_RECEIVED.name, 0) == 8
    assert lag(TENANT_TOPIC, 0) is None
    forget_lag(GROUP, [b1])
    assert lag(BOUNDED, 1) is None


def test_tenant_dlqs_depth_is_summed() -> None:
    depths = {"rag.tenant.x.documents.v1.dlq": 2, "rag.tenant.y.documents.v1.dlq": 3, DOCUMENTS_RECEIVED.dlq: 1}
    assert by_label(depths) == {BOUNDED: 5, DOCUMENTS_RECEIVED.dlq: 1}

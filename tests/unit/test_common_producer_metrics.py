"""`ragstream_producer_records_total{topic}`: a record counts once the brokers acknowledged it, never when its
delivery failed; tenants' own topics share one label."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rag.v1 import documents_pb2
from ragstream_common.events import OutgoingEvent
from ragstream_common.kafka.metrics import count_acknowledged, topic_label
from ragstream_common.kafka.producer import EventPublisher
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, DOCUMENTS_STATUS
from ragstream_common.kafka_settings import KafkaSettings

pytestmark = pytest.mark.unit


def produced(topic: str) -> float:
    return REGISTRY.get_sample_value("ragstream_producer_records_total", {"topic": topic}) or 0.0


class Broker:
    """What EventPublisher uses of AIOKafkaProducer: `send` returns a delivery future; the broker settles it."""

    def __init__(self, refused_topics: frozenset[str] = frozenset()) -> None:
        self._refused = refused_topics

    async def send(self, topic: str, **_: Any) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if topic in self._refused:
            delivery.set_exception(RuntimeError("not acknowledged"))
        else:
            delivery.set_result(None)
        return delivery


def publisher(broker: Broker) -> EventPublisher:
    events = EventPublisher(KafkaSettings(), source="test-producer-metrics")
    events._producer = broker  # type: ignore[assignment]
    return events


def event(topic: str) -> OutgoingEvent:
    return OutgoingEvent(topic, "t1/d1", documents_pb2.DocumentReceived(tenant_id="t1", document_id="d1", version=1))


def test_tenant_topics_share_one_label_and_declared_topics_keep_their_name() -> None:
    assert topic_label("rag.tenant.acme.answers.v1") == "rag.tenant.*"
    assert topic_label("rag.tenant.a.b.documents.v1.dlq") == "rag.tenant.*"
    assert topic_label(DOCUMENTS_RECEIVED.name) == DOCUMENTS_RECEIVED.name
    assert topic_label(DOCUMENTS_RECEIVED.dlq) == DOCUMENTS_RECEIVED.dlq


async def test_only_acknowledged_deliveries_count() -> None:
    before = produced("rag.test.acks.v1")
    loop = asyncio.get_running_loop()
    acknowledged, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    for delivery in (acknowledged, failed, cancelled):
        delivery.add_done_callback(lambda done: count_acknowledged("rag.test.acks.v1", done))
    acknowledged.set_result(None)
    failed.set_exception(RuntimeError("broker refused"))
    cancelled.cancel()
    await asyncio.sleep(0)  # done-callbacks run on the next loop iteration
    assert produced("rag.test.acks.v1") == before + 1
    assert failed.exception() is not None


async def test_the_publisher_counts_each_acknowledged_record_by_topic() -> None:
    labels = (DOCUMENTS_RECEIVED.name, "rag.tenant.*", DOCUMENTS_RECEIVED.dlq, DOCUMENTS_STATUS.name)
    before = [produced(label) for label in labels]
    events = publisher(Broker(refused_topics=frozenset({DOCUMENTS_STATUS.name})))
    tenant_topic = "rag.tenant.acme.answers.v1"
    await events.publish_many([event(DOCUMENTS_RECEIVED.name), event(DOCUMENTS_RECEIVED.name), event(tenant_topic)])
    await events.send_raw(DOCUMENTS_RECEIVED.dlq, b"k", b"v", [])
    with pytest.raises(RuntimeError):
        await events.publish(event(DOCUMENTS_STATUS.name))
    await asyncio.sleep(0)
    added = [produced(label) - count for label, count in zip(labels, before, strict=True)]
    assert added == [2, 1, 1, 0]

"""The routing event sink: message types to topics, partition keys per topic, contract checks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf.message import Message
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, status_pb2
from ragstream_common.events import Emitted, OutgoingEvent
from ragstream_common.kafka.routing import RoutedEventSink, partition_key
from ragstream_common.kafka.tenant_topics import answers_spec
from ragstream_common.kafka.topics import (
    CHUNKS_READY,
    DOCUMENTS_STATUS,
    PIPELINE_TOPICS,
    QUERIES_EMBEDDED,
    QUERIES_REQUESTED,
    TopicSpec,
)

pytestmark = pytest.mark.unit


class ListPublisher:
    def __init__(self) -> None:
        self.sent: list[OutgoingEvent] = []

    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None:
        self.sent.extend(events)


def test_document_topics_key_by_tenant_and_document_and_query_topics_by_query_id() -> None:
    ready = chunks_pb2.ChunksReady(tenant_id="t1", document_id="d9")
    assert partition_key(CHUNKS_READY, ready) == "t1/d9"
    requested = queries_pb2.QueryRequested(query_id="q1", tenant_id="t1")
    assert partition_key(QUERIES_REQUESTED, requested) == "q1"
    assert partition_key(QUERIES_EMBEDDED, queries_pb2.QueryEmbedded(query=requested)) == "q1"
    assert partition_key(answers_spec("t1"), queries_pb2.AnswerProduced(query_id="q2")) == "q2"


def test_every_pipeline_topic_declares_a_partition_key() -> None:
    assert {t.partition_key for t in PIPELINE_TOPICS} >= {"document", "query", "connector"}
    assert all(t.partition_key == "query" for t in PIPELINE_TOPICS if t.name.startswith("rag.queries"))
    assert all(t.partition_key == "connector" for t in PIPELINE_TOPICS if t.name.startswith("rag.connectors"))
    assert all(t.partition_key == "tenant" for t in PIPELINE_TOPICS if t.name.startswith("rag.usage"))
    # Answers have no shared topic any more: only each tenant's own.
    assert not [t for t in PIPELINE_TOPICS if "answers" in t.name]


async def test_the_sink_routes_in_order_and_keeps_trace_contexts() -> None:
    publisher = ListPublisher()
    sink = RoutedEventSink(
        publisher, {chunks_pb2.ChunksReady: CHUNKS_READY, status_pb2.DocumentProcessing: DOCUMENTS_STATUS}
    )
    processing = status_pb2.DocumentProcessing(tenant_id="t1", document_id="d1")
    ready = chunks_pb2.ChunksReady(tenant_id="t1", document_id="d1")
    await sink.emit([Emitted(processing), Emitted(ready)])
    assert [(e.topic, e.key, e.message) for e in publisher.sent] == [
        (DOCUMENTS_STATUS.name, "t1/d1", processing),
        (CHUNKS_READY.name, "t1/d1", ready),
    ]


async def test_an_unrouted_or_undeclared_message_type_is_a_programming_error() -> None:
    publisher = ListPublisher()
    with pytest.raises(TypeError, match="no route"):
        await RoutedEventSink(publisher, {}).emit([Emitted(chunks_pb2.ChunksReady())])
    with pytest.raises(TypeError, match="not declared"):
        await RoutedEventSink(publisher, {documents_pb2.DocumentReceived: CHUNKS_READY}).emit(
            [Emitted(documents_pb2.DocumentReceived())]
        )
    assert publisher.sent == []


async def test_an_empty_emit_publishes_nothing() -> None:
    publisher = ListPublisher()
    await RoutedEventSink(publisher, {}).emit([])
    assert publisher.sent == []


async def test_a_route_may_pick_the_topic_from_the_message() -> None:
    publisher = ListPublisher()

    def by_tenant(message: Message) -> TopicSpec:
        assert isinstance(message, queries_pb2.AnswerProduced)
        return answers_spec(message.tenant_id)

    sink = RoutedEventSink(publisher, {queries_pb2.AnswerProduced: by_tenant})
    first = queries_pb2.AnswerProduced(query_id="q1", tenant_id="a")
    second = queries_pb2.AnswerProduced(query_id="q2", tenant_id="a.b")
    await sink.emit([Emitted(first), Emitted(second)])
    assert [(e.topic, e.key) for e in publisher.sent] == [
        ("rag.tenant.a.answers.v1", "q1"),
        ("rag.tenant.a.b.answers.v1", "q2"),
    ]
    # The picked topic's declared event types still hold.
    wrong = RoutedEventSink(publisher, {queries_pb2.AnswerProduced: lambda _m: CHUNKS_READY})
    with pytest.raises(TypeError, match="not declared"):
        await wrong.emit([Emitted(first)])

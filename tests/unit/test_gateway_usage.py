"""The gateway's usage records (metering): a question or a search per query, a document version with its bytes,
each in the same emit as the event it accompanies, with an id that a retry reproduces."""

from __future__ import annotations

from unittest.mock import AsyncMock

import pytest
from fakes import RecordingSink, envelope
from rag.v1 import documents_pb2, queries_pb2, usage_pb2
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.tenant_topics import tenant_topics
from ragstream_common.kafka.topics import USAGE
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.documents import Caller, DocumentService, Submission
from ragstream_gateway.intake import bridge_intake
from ragstream_gateway.ports import Registration
from ragstream_gateway.query.replies import PendingQueries
from ragstream_gateway.query.service import QueryDispatcher, QueryRequest

pytestmark = pytest.mark.unit


async def _submit(*, search_only: bool) -> RecordingSink:
    sink = RecordingSink()
    request = QueryRequest(
        "t1", "How high is Kilimanjaro?", 5, None, "search" if search_only else "answer", "hybrid", 30.0
    )
    await QueryDispatcher(sink, PendingQueries(), "gw:50050").submit(request)
    return sink


@pytest.mark.parametrize(
    ("search_only", "what", "metric"), [(False, "question", "questions"), (True, "search", "searches")]
)
async def test_a_query_goes_out_with_its_usage_in_one_emit(search_only: bool, what: str, metric: str) -> None:
    sink = await _submit(search_only=search_only)
    assert sink.calls == 1
    query, usage = sink.messages()
    assert isinstance(query, queries_pb2.QueryRequested) and isinstance(usage, usage_pb2.UsageRecorded)
    assert (usage.tenant_id, usage.usage_id, usage.source) == ("t1", f"{query.query_id}:{what}", "gateway")
    assert dict(usage.quantities) == {metric: 1}
    # Dated by the query itself: a redelivery lands in the same minute's window.
    assert usage.occurred_at == query.requested_at


async def test_usage_is_routed_to_the_usage_topic_by_tenant() -> None:
    sink = await _submit(search_only=False)
    record = outgoing(GATEWAY_ROUTES, sink.emitted[1])
    assert (record.topic, record.key) == (USAGE.name, "t1")


def _service() -> tuple[DocumentService, AsyncMock]:
    ports = AsyncMock()
    ports.registry.get.return_value = None
    ports.registry.register.return_value = Registration(2, "received")
    ports.blobs.put.return_value = "blob://d/sha"
    service = DocumentService(
        ports.registry, ports.blobs, ports.sink, ports.audit, inline_text_max_bytes=4, publish_timeout_s=1
    )
    return service, ports


async def test_a_document_version_goes_out_with_its_size_in_one_emit() -> None:
    service, ports = _service()
    content = b"longer than four bytes"
    await service.submit(Submission("t", "d", "T", {}, content, "text/plain"), Caller("key:k"))
    ports.sink.emit.assert_awaited_once()
    event, usage = (emitted.message for emitted in ports.sink.emit.call_args.args[0])
    assert isinstance(event, documents_pb2.DocumentReceived) and isinstance(usage, usage_pb2.UsageRecorded)
    assert (usage.tenant_id, usage.usage_id, usage.source) == ("t", "t/d/2:document", "gateway")
    assert dict(usage.quantities) == {"documents_ingested": 1, "bytes_ingested": len(content)}
    assert usage.occurred_at == event.occurred_at


async def test_a_delete_is_not_usage() -> None:
    service, ports = _service()
    ports.registry.get.return_value = AsyncMock(status="indexed", version=3)
    await service.delete("t", "d", Caller("key:k"))
    [emitted] = ports.sink.emit.call_args.args[0]
    assert isinstance(emitted.message, documents_pb2.DocumentDeleted)


async def test_the_kafka_intake_meters_questions_and_documents_like_the_api() -> None:
    from test_gateway_intake import RecordingIntakeSink

    topics = tenant_topics("acme")
    query = queries_pb2.QueryRequested(query_id="q1", question="Why?", mode=queries_pb2.QUERY_MODE_SEARCH)
    document = documents_pb2.DocumentReceived(
        document_id="d1", version=4, source=documents_pb2.DocumentSource(size_bytes=42)
    )
    deleted = documents_pb2.DocumentDeleted(document_id="d0", version=1)
    batch = [
        envelope(query, "k", topic=topics.queries, offset=0),
        envelope(document, "k", topic=topics.documents, offset=1),
        envelope(deleted, "k", topic=topics.documents, offset=2),
    ]
    sink = RecordingIntakeSink()
    await bridge_intake(batch, sink)
    assert sink.calls == 1 and len(sink.forwarded) == 3
    searched, ingested = (forwarded.message for forwarded in sink.usage)
    assert (searched.tenant_id, searched.usage_id, dict(searched.quantities)) == ("acme", "q1:search", {"searches": 1})
    assert (ingested.usage_id, dict(ingested.quantities)) == (
        "acme/d1/4:document",
        {"documents_ingested": 1, "bytes_ingested": 42},
    )
    # Under ids derived from the records' own: a redelivered record is the same usage event.
    assert [forwarded.event_id for forwarded in sink.usage] == ["id-0:usage", "id-1:usage"]

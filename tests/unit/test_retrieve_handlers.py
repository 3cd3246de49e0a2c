"""Indexer and query handlers over mocked ports; version rules and event validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import AsyncMock

import numpy as np
import pytest
from opentelemetry import context as otel_context
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, status_pb2
from ragstream_common.kafka import Envelope, PermanentError
from ragstream_common.messages import pack_vector
from ragstream_retrieve.indexing import Indexer
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import (
    IndexState,
    SearchHit,
    StoredChunk,
    UpsertOutcome,
)
from ragstream_retrieve.querying import QueryResponder
from ragstream_retrieve.wire import InvalidDocument, InvalidVector, TopKLimits, checked_vector, document_from_event

pytestmark = pytest.mark.unit
DIMS = 8


def _envelope(message: Any, key: str = "t1/d1") -> Envelope[Any]:
    return Envelope(message, key, "id", message.DESCRIPTOR.full_name, "test", None, "topic", 0, 0,
                    otel_context.get_current())


def _vector(seed: int, dims: int = DIMS) -> bytes:
    return pack_vector(np.random.default_rng(seed).standard_normal(dims).astype(np.float32))


def _embedded(version: int = 1, dims: int = DIMS, vector_dims: int = DIMS, ids: tuple[str, ...] = ("c1", "c2")) -> Any:
    event = chunks_pb2.ChunksEmbedded(tenant_id="t1", document_id="d1", version=version, title="Cell Biology",
                                      model="m", model_version="1", dimensions=dims)
    event.metadata["lang"] = "en"
    for position, chunk_id in enumerate(ids):
        chunk = chunks_pb2.Chunk(chunk_id=chunk_id, position=position, text=f"Cells divide\x00 {position}",
                                 content_sha256=f"h{position}", heading="Mitosis")
        event.chunks.append(chunks_pb2.EmbeddedChunk(chunk=chunk, vector=_vector(position, vector_dims)))
    return event


@pytest.mark.parametrize(
    ("state", "version", "expected"),
    [
        (IndexState(0, 0), 1, UpsertOutcome.INDEXED),
        (IndexState(2, 0), 3, UpsertOutcome.INDEXED),
        (IndexState(2, 0), 2, UpsertOutcome.ALREADY_INDEXED),
        (IndexState(3, 0), 2, UpsertOutcome.SUPERSEDED),
        (IndexState(2, 2), 2, UpsertOutcome.DELETED),
        (IndexState(0, 5), 4, UpsertOutcome.DELETED),
        (IndexState(2, 2), 3, UpsertOutcome.INDEXED),
    ],
)
def test_upsert_plan(state: IndexState, version: int, expected: UpsertOutcome) -> None:
    assert state.plan_upsert(version) is expected


def test_delete_spares_a_newer_indexed_version() -> None:
    assert IndexState(2, 0).removes_chunks(2)
    assert IndexState(2, 0).removes_chunks(5)
    assert not IndexState(3, 0).removes_chunks(2)


def test_document_from_event_checks_normalises_and_analyses() -> None:
    document = document_from_event(_embedded(), LexicalAnalyzer(), DIMS)
    assert [c.chunk_id for c in document.chunks] == ["c1", "c2"]
    assert document.metadata == {"lang": "en"}
    first = document.chunks[0]
    assert first.text == "Cells divide 0" and first.heading == "Mitosis"
    assert np.linalg.norm(first.embedding) == pytest.approx(1.0, abs=1e-5)
    # Title and heading are part of the lexical text.
    assert first.term_frequencies == {"cell": 2, "biolog": 1, "mitosi": 1, "divid": 1}
    assert first.lexical_length == 5


@pytest.mark.parametrize(
    "event",
    [_embedded(dims=16, vector_dims=16), _embedded(vector_dims=4), _embedded(ids=("c1", "c1")), _embedded(ids=("",))],
)
def test_document_from_event_rejects_broken_events(event: Any) -> None:
    with pytest.raises(InvalidDocument):
        document_from_event(event, LexicalAnalyzer(), DIMS)


def test_checked_vector_rejects_zero_and_non_finite() -> None:
    with pytest.raises(InvalidVector):
        checked_vector(np.zeros(DIMS), DIMS)
    with pytest.raises(InvalidVector):
        checked_vector(np.full(DIMS, np.nan), DIMS)


def test_top_k_limits() -> None:
    limits = TopKLimits(default=8, maximum=20)
    assert (limits.clamp(0), limits.clamp(5), limits.clamp(500)) == (8, 5, 20)


def _indexer(outcome: UpsertOutcome = UpsertOutcome.INDEXED) -> tuple[Indexer, AsyncMock, AsyncMock]:
    writer, sink = AsyncMock(), AsyncMock()
    writer.upsert_document.return_value = outcome
    return Indexer(writer, sink, LexicalAnalyzer(), DIMS), writer, sink


def _published(sink: AsyncMock) -> list[Any]:
    return [event.message for call in sink.publish_many.await_args_list for event in call.args[0]]


@pytest.mark.parametrize("outcome", [UpsertOutcome.INDEXED, UpsertOutcome.ALREADY_INDEXED])
async def test_indexed_and_redelivered_versions_announce_document_indexed(outcome: UpsertOutcome) -> None:
    indexer, _, sink = _indexer(outcome)
    await indexer.handle_batch([_envelope(_embedded())])
    [status] = _published(sink)
    assert isinstance(status, status_pb2.DocumentIndexed)
    assert (status.version, status.chunk_count, status.model) == (1, 2, "m")
    assert sink.publish_many.await_args.args[0][0].key == "t1/d1"


@pytest.mark.parametrize("outcome", [UpsertOutcome.SUPERSEDED, UpsertOutcome.DELETED])
async def test_stale_versions_publish_nothing(outcome: UpsertOutcome) -> None:
    indexer, _, sink = _indexer(outcome)
    await indexer.handle_batch([_envelope(_embedded())])
    assert _published(sink) == []
    assert indexer.outcomes == {outcome.value: 1}


async def test_wrong_dimensions_fail_the_document_without_writing() -> None:
    indexer, writer, sink = _indexer()
    await indexer.handle_batch([_envelope(_embedded(dims=16, vector_dims=16))])
    [status] = _published(sink)
    assert isinstance(status, status_pb2.DocumentFailed)
    assert status.stage == "index" and "16 dimensions" in status.reason
    writer.upsert_document.assert_not_awaited()


async def test_delete_removes_and_announces() -> None:
    indexer, writer, sink = _indexer()
    await indexer.handle_batch([_envelope(documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d1", version=4))])
    writer.delete_document.assert_awaited_once_with("t1", "d1", 4)
    [status] = _published(sink)
    assert isinstance(status, status_pb2.DocumentRemoved) and status.version == 4


async def test_events_of_one_document_keep_their_order() -> None:
    indexer, writer, sink = _indexer()
    calls: list[str] = []
    writer.upsert_document.side_effect = lambda doc: calls.append(f"upsert{doc.version}") or UpsertOutcome.INDEXED
    writer.delete_document.side_effect = lambda *args: calls.append(f"delete{args[2]}")
    batch = [_envelope(_embedded(1)), _envelope(documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d1",
                                                                              version=1)), _envelope(_embedded(2))]
    await indexer.handle_batch(batch)
    assert calls == ["upsert1", "delete1", "upsert2"]
    assert sink.publish_many.await_count == 1


async def test_events_without_ids_are_permanent_errors() -> None:
    indexer, _, _ = _indexer()
    event = _embedded()
    event.tenant_id = ""
    with pytest.raises(PermanentError):
        await indexer.handle_batch([_envelope(event)])


def _hit(key: int) -> SearchHit:
    chunk = StoredChunk(key, f"c{key}", "d1", 2, "T", "text", 0, {"a": "b"}, "h", np.ones(DIMS, np.float32))
    return SearchHit(chunk, 0.5, 0.4, 3.0)


def _query(mode: int = queries_pb2.QUERY_MODE_ANSWER, reply_to: str = "gw:50050", expired: bool = False) -> Any:
    query = queries_pb2.QueryRequested(query_id="q1", tenant_id="t1", question="cells", top_k=3, mode=mode,
                                       reply_to=reply_to, retrieval=queries_pb2.RETRIEVAL_MODE_HYBRID)
    query.timings_ms["embed"] = 4.0
    query.deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=-1 if expired else 30))
    return queries_pb2.QueryEmbedded(query=query, vector=_vector(1), model="m")


def _responder(hits: list[SearchHit] | Exception) -> tuple[QueryResponder, AsyncMock, AsyncMock, AsyncMock]:
    index, sink, replies = AsyncMock(), AsyncMock(), AsyncMock()
    responder = QueryResponder(index, LexicalAnalyzer(), sink, replies, dimensions=DIMS)
    responder.search = AsyncMock(side_effect=hits) if isinstance(hits, Exception) else AsyncMock(return_value=hits)
    return responder, sink, replies, index


async def test_answer_queries_reply_and_go_on_to_generation() -> None:
    responder, sink, replies, _ = _responder([_hit(1), _hit(2)])
    await responder.handle_batch([_envelope(_query(), key="q1")])
    address, reply = replies.deliver_sources.await_args.args
    assert address == "gw:50050" and reply.query_id == "q1"
    assert [c.chunk_id for c in reply.chunks] == ["c1", "c2"]
    assert set(reply.timings_ms) == {"embed", "retrieve"}
    [event] = sink.publish_many.await_args.args[0]
    assert event.topic == "rag.queries.retrieved.v1" and event.key == "q1"
    assert event.message.query.timings_ms["retrieve"] >= 0 and len(event.message.chunks) == 2


async def test_search_mode_replies_but_publishes_nothing() -> None:
    responder, sink, replies, _ = _responder([_hit(1)])
    await responder.handle_batch([_envelope(_query(queries_pb2.QUERY_MODE_SEARCH))])
    replies.deliver_sources.assert_awaited_once()
    sink.publish_many.assert_not_awaited()


async def test_kafka_only_answer_queries_are_published_without_reply() -> None:
    responder, sink, replies, _ = _responder([_hit(1)])
    await responder.handle_batch([_envelope(_query(reply_to=""))])
    replies.deliver_sources.assert_not_awaited()
    sink.publish_many.assert_awaited_once()


async def test_expired_queries_are_dropped_without_work() -> None:
    responder, sink, replies, _ = _responder([_hit(1)])
    await responder.handle_batch([_envelope(_query(expired=True))])
    responder.search.assert_not_awaited()
    replies.deliver_sources.assert_not_awaited()
    sink.publish_many.assert_not_awaited()
    assert responder.outcomes == {"expired": 1}


async def test_failed_search_is_reported_to_the_gateway_and_not_raised() -> None:
    responder, sink, replies, _ = _responder(RuntimeError("database down"))
    await responder.handle_batch([_envelope(_query())])
    address, failure = replies.deliver_failure.await_args.args
    assert address == "gw:50050" and failure.stage == "retrieve" and "database down" in failure.reason
    sink.publish_many.assert_not_awaited()


async def test_search_builds_the_request_from_the_query() -> None:
    index = AsyncMock()
    index.dense_candidates.return_value = []
    index.lexical_candidates.return_value = []
    responder = QueryResponder(index, LexicalAnalyzer(), AsyncMock(), AsyncMock(), dimensions=DIMS,
                               limits=TopKLimits(8, 5))
    embedded = _query()
    embedded.query.top_k = 50
    embedded.query.filters.document_ids.append("d9")
    embedded.query.filters.metadata["lang"] = "en"
    await responder.search(embedded.query, embedded.vector)
    tenant, vector, filters, depth = index.dense_candidates.await_args.args
    assert tenant == "t1" and vector.shape == (DIMS,) and depth == 100
    assert filters.document_ids == ("d9",) and filters.metadata == {"lang": "en"}
    embedded.query.retrieval = queries_pb2.RETRIEVAL_MODE_LEXICAL
    index.dense_candidates.reset_mock()
    await responder.search(embedded.query, b"")
    index.dense_candidates.assert_not_awaited()
    index.lexical_candidates.assert_awaited()

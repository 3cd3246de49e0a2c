"""Indexer and query handlers over in-memory ports: outputs and their order, version rules, trace contexts,
failure paths and the metrics they move; plus event validation and the version rules themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fakes import RecordingSink, envelope, metric
from fakes.retrieve import ListPublisher, ListSearchIndex, RecordingReplies, VersionedChunkIndex
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, status_pb2
from ragstream_common.events import Emitted, Envelope, PermanentError
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.messages import pack_vector
from ragstream_retrieve.adapters.routes import INDEX_ROUTES, QUERY_ROUTES
from ragstream_retrieve.indexing import Indexer, IndexEvent
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import IndexState, StoredChunk, UpsertOutcome
from ragstream_retrieve.querying import QueryResponder
from ragstream_retrieve.wire import InvalidDocument, InvalidVector, TopKLimits, checked_vector, document_from_event

pytestmark = pytest.mark.unit
DIMS = 8


# A real SDK tracer: its spans have valid ids, so trace continuity can be checked.
TRACER = TracerProvider().get_tracer("test")


def _vector(seed: int, dims: int = DIMS) -> bytes:
    return bytes(pack_vector(np.random.default_rng(seed).standard_normal(dims).astype(np.float32)))


def _embedded(
    version: int = 1,
    dims: int = DIMS,
    vector_dims: int = DIMS,
    ids: tuple[str, ...] = ("c1", "c2"),
    document_id: str = "d1",
) -> Any:
    event = chunks_pb2.ChunksEmbedded(
        tenant_id="t1",
        document_id=document_id,
        version=version,
        title="Cell Biology",
        model="m",
        model_version="1",
        dimensions=dims,
    )
    event.metadata["lang"] = "en"
    for position, chunk_id in enumerate(ids):
        chunk = chunks_pb2.Chunk(
            chunk_id=chunk_id,
            position=position,
            text=f"Cells divide\x00 {position}",
            content_sha256=f"h{position}",
            heading="Mitosis",
        )
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


# --- Indexer -------------------------------------------------------------------------------------------------


def _deleted(version: int, document_id: str = "d1") -> documents_pb2.DocumentDeleted:
    return documents_pb2.DocumentDeleted(tenant_id="t1", document_id=document_id, version=version)


def _indexed_state(**states: IndexState) -> VersionedChunkIndex:
    return VersionedChunkIndex(states={("t1", document): state for document, state in states.items()})


async def _index(*messages: IndexEvent, writer: VersionedChunkIndex | None = None) -> RecordingSink:
    sink = RecordingSink()
    batch = [envelope(m, f"t1/{m.document_id}", offset=i) for i, m in enumerate(messages)]
    await Indexer(writer or VersionedChunkIndex(), sink, LexicalAnalyzer(), DIMS).handle_batch(batch)
    return sink


def _documents(outcome: str) -> float:
    return metric("ragstream_retrieve_documents_total", outcome=outcome)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [(IndexState(), UpsertOutcome.INDEXED), (IndexState(1, 0), UpsertOutcome.ALREADY_INDEXED)],
)
async def test_indexed_and_redelivered_versions_announce_document_indexed(
    state: IndexState, outcome: UpsertOutcome
) -> None:
    writer = _indexed_state(d1=state)
    before = _documents(outcome.value)
    sink = await _index(_embedded(), writer=writer)
    [status] = sink.messages()
    assert isinstance(status, status_pb2.DocumentIndexed)
    assert (status.tenant_id, status.document_id, status.version, status.chunk_count, status.model) == (
        "t1",
        "d1",
        1,
        2,
        "m",
    )
    assert writer.operations == [f"upsert d1 v1 {outcome.value}"]
    assert writer.states[("t1", "d1")].indexed_version == 1
    assert _documents(outcome.value) - before == 1


@pytest.mark.parametrize(
    ("state", "outcome"),
    [(IndexState(3, 0), UpsertOutcome.SUPERSEDED), (IndexState(0, 2), UpsertOutcome.DELETED)],
)
async def test_stale_versions_emit_nothing_and_write_nothing(state: IndexState, outcome: UpsertOutcome) -> None:
    writer = _indexed_state(d1=state)
    before = _documents(outcome.value)
    sink = await _index(_embedded(version=2), writer=writer)
    assert sink.emitted == [] and sink.calls == 1
    assert writer.operations == [f"upsert d1 v2 {outcome.value}"]
    assert writer.states[("t1", "d1")] == state and writer.documents == {}
    assert _documents(outcome.value) - before == 1


async def test_wrong_dimensions_fail_the_document_without_writing() -> None:
    writer = VersionedChunkIndex()
    before = _documents("failed")
    sink = await _index(_embedded(dims=16, vector_dims=16), writer=writer)
    [status] = sink.messages()
    assert isinstance(status, status_pb2.DocumentFailed)
    assert (status.document_id, status.version, status.stage) == ("d1", 1, "index")
    assert "16 dimensions" in status.reason and status.error_class == "InvalidDocument"
    assert writer.operations == []
    assert _documents("failed") - before == 1


async def test_delete_removes_and_announces() -> None:
    writer = VersionedChunkIndex()
    await _index(_embedded(version=3), writer=writer)
    before = _documents("removed")
    sink = await _index(_deleted(4), writer=writer)
    assert writer.operations[-1] == "delete d1 v4"
    assert writer.documents == {} and writer.states[("t1", "d1")] == IndexState(3, 4)
    [status] = sink.messages()
    assert isinstance(status, status_pb2.DocumentRemoved)
    assert (status.tenant_id, status.document_id, status.version) == ("t1", "d1", 4)
    assert _documents("removed") - before == 1


async def test_events_of_one_document_keep_their_order_and_the_batch_emits_once() -> None:
    writer = VersionedChunkIndex()
    sink = await _index(_embedded(1), _deleted(1), _embedded(1, document_id="d2"), _embedded(2), writer=writer)
    assert [op for op in writer.operations if " d1 " in op] == [
        "upsert d1 v1 indexed",
        "delete d1 v1",
        "upsert d1 v2 indexed",
    ]
    assert "upsert d2 v1 indexed" in writer.operations
    statuses = [(type(m).__name__, m.document_id, m.version) for m in sink.messages()]
    assert statuses == [
        ("DocumentIndexed", "d1", 1),
        ("DocumentRemoved", "d1", 1),
        ("DocumentIndexed", "d1", 2),
        ("DocumentIndexed", "d2", 1),
    ]
    assert sink.calls == 1
    assert writer.states[("t1", "d1")] == IndexState(2, 1) and writer.documents[("t1", "d1")].version == 2


@pytest.mark.parametrize("field", ["tenant_id", "document_id"])
async def test_events_without_ids_are_permanent_errors(field: str) -> None:
    for event in (_embedded(), _deleted(1)):
        setattr(event, field, "")
        writer, sink = VersionedChunkIndex(), RecordingSink()
        with pytest.raises(PermanentError):
            await Indexer(writer, sink, LexicalAnalyzer(), DIMS).handle_batch([envelope(event)])
        assert writer.operations == [] and sink.emitted == []


async def test_a_failed_write_propagates_and_the_batch_emits_nothing() -> None:
    writer = VersionedChunkIndex(fail_with=ConnectionError("database down"))
    sink = RecordingSink()
    with pytest.raises(ConnectionError):
        await Indexer(writer, sink, LexicalAnalyzer(), DIMS).handle_batch([envelope(_embedded())])
    assert sink.emitted == []


async def test_a_failed_emit_propagates_so_the_consumer_retries() -> None:
    sink = RecordingSink(fail_with=ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        await Indexer(VersionedChunkIndex(), sink, LexicalAnalyzer(), DIMS).handle_batch([envelope(_embedded())])


async def test_status_events_continue_the_trace_of_their_own_document() -> None:
    incoming: list[Envelope[IndexEvent]] = []
    trace_ids: dict[str, int] = {}
    for document_id in ("d1", "d2"):
        with TRACER.start_as_current_span(f"upload {document_id}") as span:
            incoming.append(envelope(_embedded(document_id=document_id), f"t1/{document_id}"))
        trace_ids[document_id] = span.get_span_context().trace_id
    sink = RecordingSink()
    await Indexer(VersionedChunkIndex(), sink, LexicalAnalyzer(), DIMS).handle_batch(incoming)
    emitted = {m.document_id: _trace_id(e) for m, e in zip(sink.messages(), sink.emitted, strict=True)}
    assert emitted == trace_ids and len(set(trace_ids.values())) == 2


async def test_status_events_route_to_the_status_topic_keyed_by_document() -> None:
    publisher = ListPublisher()
    indexer = Indexer(VersionedChunkIndex(), RoutedEventSink(publisher, INDEX_ROUTES), LexicalAnalyzer(), DIMS)
    await indexer.handle_batch([envelope(_embedded()), envelope(_deleted(1))])
    assert [(e.topic, e.key, type(e.message).__name__) for e in publisher.sent] == [
        ("rag.documents.status.v1", "t1/d1", "DocumentIndexed"),
        ("rag.documents.status.v1", "t1/d1", "DocumentRemoved"),
    ]


def _trace_id(event: Emitted) -> int:
    return trace.get_current_span(event.context).get_span_context().trace_id


# --- QueryResponder ------------------------------------------------------------------------------------------


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _stored(key: int, text: str, embedding: np.ndarray, document_id: str = "d1") -> StoredChunk:
    return StoredChunk(key, f"c{key}", document_id, 2, "T", text, 0, {"lang": "en"}, f"h{key}", embedding)


def _search_index() -> ListSearchIndex:
    """c1 matches the query vector exactly and says "cells" twice, c2 less of both; c3 belongs to another tenant."""
    return ListSearchIndex(
        [
            ("t1", _stored(1, "Cells and more cells", _unit(1))),
            ("t1", _stored(2, "Cells divide", _unit(2))),
            ("t2", _stored(3, "cells cells cells", _unit(1))),
        ]
    )


def _query(
    mode: int = queries_pb2.QUERY_MODE_ANSWER,
    reply_to: str = "gw:50050",
    expired: bool = False,
    query_id: str = "q1",
    tenant_id: str = "t1",
) -> queries_pb2.QueryEmbedded:
    query = queries_pb2.QueryRequested(
        query_id=query_id,
        tenant_id=tenant_id,
        question="cells",
        top_k=3,
        mode=mode,
        reply_to=reply_to,
        retrieval=queries_pb2.RETRIEVAL_MODE_HYBRID,
    )
    query.timings_ms["embed"] = 4.0
    query.deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=-1 if expired else 30))
    return queries_pb2.QueryEmbedded(query=query, vector=_vector(1), model="m")


def _responder(
    index: ListSearchIndex | None = None, sink: Any = None, limits: TopKLimits | None = None
) -> tuple[QueryResponder, RecordingSink, RecordingReplies]:
    sink = sink if sink is not None else RecordingSink()
    replies = RecordingReplies()
    responder = QueryResponder(
        index if index is not None else _search_index(),
        LexicalAnalyzer(),
        sink,
        replies,
        limits=limits or TopKLimits(),
        dimensions=DIMS,
    )
    return responder, sink, replies


def _queries(outcome: str) -> float:
    return metric("ragstream_retrieve_queries_total", outcome=outcome)


async def test_answer_queries_reply_and_go_on_to_generation() -> None:
    responder, sink, replies = _responder()
    before, batches = _queries("answered"), metric("ragstream_retrieve_query_batch_seconds_count")
    await responder.handle_batch([envelope(_query(), key="q1")])
    [delivery] = replies.sources
    reply = delivery.message
    assert delivery.address == "gw:50050" and reply.query_id == "q1"
    assert [c.chunk_id for c in reply.chunks] == ["c1", "c2"]
    assert set(reply.timings_ms) == {"embed", "retrieve"}
    [retrieved] = sink.messages()
    assert isinstance(retrieved, queries_pb2.QueryRetrieved)
    assert retrieved.query.query_id == "q1" and retrieved.query.timings_ms["retrieve"] >= 0
    assert [c.chunk_id for c in retrieved.chunks] == ["c1", "c2"]
    assert _queries("answered") - before == 1
    assert metric("ragstream_retrieve_query_batch_seconds_count") - batches == 1


async def test_query_retrieved_routes_to_the_retrieved_topic_keyed_by_query() -> None:
    publisher = ListPublisher()
    responder, _, _ = _responder(sink=RoutedEventSink(publisher, QUERY_ROUTES))
    await responder.handle_batch([envelope(_query(), key="q1")])
    [event] = publisher.sent
    assert (event.topic, event.key) == ("rag.queries.retrieved.v1", "q1")
    assert isinstance(event.message, queries_pb2.QueryRetrieved) and len(event.message.chunks) == 2


async def test_search_mode_replies_but_emits_nothing() -> None:
    responder, sink, replies = _responder()
    await responder.handle_batch([envelope(_query(queries_pb2.QUERY_MODE_SEARCH))])
    assert len(replies.sources) == 1
    assert sink.calls == 0


async def test_kafka_only_answer_queries_are_emitted_without_reply() -> None:
    responder, sink, replies = _responder()
    await responder.handle_batch([envelope(_query(reply_to=""))])
    assert replies.sources == [] and replies.failures == []
    assert sink.calls == 1 and len(sink.messages(queries_pb2.QueryRetrieved)) == 1


async def test_a_caller_waiting_only_for_the_answer_gets_no_sources() -> None:
    responder, sink, replies = _responder()
    answer_only = _query()
    answer_only.query.answer_only = True
    await responder.handle_batch([envelope(answer_only)])
    assert replies.sources == [] and replies.failures == []
    [retrieved] = sink.messages(queries_pb2.QueryRetrieved)
    assert retrieved.query.answer_only and [c.chunk_id for c in retrieved.chunks] == ["c1", "c2"]


async def test_expired_queries_are_dropped_without_work() -> None:
    index = _search_index()
    responder, sink, replies = _responder(index)
    before = _queries("expired")
    await responder.handle_batch([envelope(_query(expired=True))])
    assert index.dense_calls == [] and index.lexical_calls == []
    assert replies.sources == [] and replies.failures == []
    assert sink.calls == 0
    assert _queries("expired") - before == 1


@pytest.mark.parametrize(
    ("index", "tenant_id", "reason"),
    [
        (ListSearchIndex(fail_with=RuntimeError("database down")), "t1", "database down"),
        (None, "", "tenant_id"),
    ],
)
async def test_failed_search_is_reported_to_the_gateway_and_not_raised(
    index: ListSearchIndex | None, tenant_id: str, reason: str
) -> None:
    responder, sink, replies = _responder(index)
    before = _queries("failed")
    # Built in the test, not at collection: the query's deadline starts now.
    await responder.handle_batch([envelope(_query(tenant_id=tenant_id))])
    [delivery] = replies.failures
    failure = delivery.message
    assert delivery.address == "gw:50050" and failure.query_id == "q1"
    assert failure.stage == "retrieve" and reason in failure.reason
    assert sink.calls == 0 and replies.sources == []
    assert _queries("failed") - before == 1


async def test_a_failed_query_does_not_end_the_others_of_its_batch() -> None:
    responder, sink, replies = _responder()
    await responder.handle_batch([envelope(_query(tenant_id="", query_id="bad")), envelope(_query(query_id="ok"))])
    assert [d.message.query_id for d in replies.failures] == ["bad"]
    assert [d.message.query_id for d in replies.sources] == ["ok"]
    assert [m.query.query_id for m in sink.messages()] == ["ok"]


async def test_a_failed_emit_propagates_so_the_query_is_retried() -> None:
    responder, _, _ = _responder(sink=RecordingSink(fail_with=ConnectionError("broker down")))
    with pytest.raises(ConnectionError):
        await responder.handle_batch([envelope(_query())])


async def test_each_query_of_a_batch_replies_and_emits_in_its_own_trace() -> None:
    incoming: list[Envelope[queries_pb2.QueryEmbedded]] = []
    trace_ids: dict[str, int] = {}
    for query_id in ("q1", "q2"):
        with TRACER.start_as_current_span(f"ask {query_id}") as span:
            incoming.append(envelope(_query(query_id=query_id), key=query_id))
        trace_ids[query_id] = span.get_span_context().trace_id
    responder, sink, replies = _responder()
    await responder.handle_batch(incoming)
    assert {m.query.query_id: _trace_id(e) for m, e in zip(sink.messages(), sink.emitted, strict=True)} == trace_ids
    assert {d.message.query_id: d.trace_id for d in replies.sources} == trace_ids
    assert len(set(trace_ids.values())) == 2


async def test_search_builds_the_request_from_the_query() -> None:
    index = _search_index()
    responder, _, _ = _responder(index, limits=TopKLimits(8, 5))
    embedded = _query()
    embedded.query.top_k = 50
    embedded.query.filters.document_ids.append("d9")
    embedded.query.filters.metadata["lang"] = "en"
    assert await responder.search(embedded.query, embedded.vector) == []  # d9 holds nothing
    [dense] = index.dense_calls
    assert dense.tenant_id == "t1" and dense.vector.shape == (DIMS,) and dense.limit == 100
    assert dense.filters.document_ids == ("d9",) and dense.filters.metadata == {"lang": "en"}
    embedded.query.retrieval = queries_pb2.RETRIEVAL_MODE_LEXICAL
    embedded.query.filters.ClearField("document_ids")
    hits = await responder.search(embedded.query, b"")
    assert len(index.dense_calls) == 1
    assert index.lexical_calls[-1].term_weights == {"cell": 1.0}
    # top_k 50 is capped at the maximum of 5; only the tenant's two chunks exist; lexical order (c1 says it twice).
    assert [h.chunk.chunk_id for h in hits] == ["c1", "c2"]

"""The embed handlers over in-memory ports: one model call per batch, the tenant-scoped cache, the wire form of
vectors, deletes in order, expired queries, trace contexts, failures and metrics."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fakes import RecordingSink, envelope, metric
from fakes.embed import DictEmbeddingCache, HashEncoder
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, usage_pb2
from ragstream_common.events import Envelope, OutgoingEvent, PermanentError
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, QUERIES_EMBEDDED, USAGE
from ragstream_embed.adapters.routes import CHUNK_ROUTES, QUERY_ROUTES
from ragstream_embed.handlers import ChunkEvent, QueryEvent, embed_chunk_batch, embed_query_batch

pytestmark = pytest.mark.unit
MODEL = HashEncoder().model_name
# A recording tracer (not the global no-op one), so that every span has its own id.
TRACER = TracerProvider().get_tracer("test")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ready(*texts: str, tenant_id: str = "t1", document_id: str = "d1", version: int = 1) -> chunks_pb2.ChunksReady:
    ready = chunks_pb2.ChunksReady(
        tenant_id=tenant_id, document_id=document_id, version=version, title="Cells", content_type="text/markdown"
    )
    ready.metadata["team"] = "bio"
    for position, text in enumerate(texts):
        chunk_id = f"{document_id}-{version}-{position}"
        ready.chunks.append(
            chunks_pb2.Chunk(chunk_id=chunk_id, position=position, text=text, content_sha256=_sha(text))
        )
    return ready


def _query(query_id: str, question: str, deadline_in: timedelta | None = None) -> queries_pb2.QueryRequested:
    query = queries_pb2.QueryRequested(query_id=query_id, tenant_id="t1", question=question, top_k=5)
    if deadline_in is not None:
        query.deadline.CopyFrom(Timestamp(seconds=int((datetime.now(UTC) + deadline_in).timestamp())))
    return query


def _chunk_batch(*messages: ChunkEvent) -> list[Envelope[ChunkEvent]]:
    return [envelope(m, offset=i) for i, m in enumerate(messages)]


async def _embed(
    *messages: ChunkEvent, encoder: HashEncoder | None = None, cache: DictEmbeddingCache | None = None
) -> RecordingSink:
    sink = RecordingSink()
    await embed_chunk_batch(_chunk_batch(*messages), encoder or HashEncoder(), cache or DictEmbeddingCache(), sink)
    return sink


def _is_usage(message: object) -> bool:
    return isinstance(message, usage_pb2.UsageRecorded)


def _outputs(sink: RecordingSink) -> list[Any]:
    """What the handlers emitted besides usage records (tests/unit/test_embed_usage.py checks those)."""
    return [m for m in sink.messages() if not _is_usage(m)]


def _span_id(context: otel_context.Context | None) -> int:
    return trace.get_current_span(context).get_span_context().span_id


def _vectors(embedded: chunks_pb2.ChunksEmbedded) -> list[np.ndarray]:
    return [np.frombuffer(c.vector, dtype="<f4") for c in embedded.chunks]


async def test_one_model_call_covers_every_document_of_the_batch_each_content_once() -> None:
    encoder, cache = HashEncoder(), DictEmbeddingCache()
    encoded, reused = (metric("ragstream_embed_chunks_total", outcome=o) for o in ("encoded", "reused"))
    sink = await _embed(
        _ready("Cells divide.", "Mitosis."), _ready("Mitosis.", "ATP.", document_id="d2"), encoder=encoder, cache=cache
    )
    assert encoder.document_calls == [["Cells divide.", "Mitosis.", "ATP."]]
    first, second = _outputs(sink)
    assert isinstance(first, chunks_pb2.ChunksEmbedded) and isinstance(second, chunks_pb2.ChunksEmbedded)
    assert (first.tenant_id, first.document_id, first.version, first.title) == ("t1", "d1", 1, "Cells")
    assert (first.content_type, dict(first.metadata)) == ("text/markdown", {"team": "bio"})
    assert (first.model, first.model_version, first.dimensions) == (MODEL, encoder.model_version, 8)
    assert [c.chunk.chunk_id for c in second.chunks] == ["d2-1-0", "d2-1-1"]
    assert not any(c.reused for e in (first, second) for c in e.chunks)
    assert set(cache.entries) == {("t1", MODEL, _sha(t)) for t in ("Cells divide.", "Mitosis.", "ATP.")}
    assert metric("ragstream_embed_chunks_total", outcome="encoded") - encoded == 3
    assert metric("ragstream_embed_chunks_total", outcome="reused") - reused == 0
    assert sink.calls == 1


async def test_cached_contents_are_not_encoded_and_their_vectors_are_reused() -> None:
    encoder = HashEncoder()
    stored = np.full(8, 1 / np.sqrt(8), dtype=np.float32)
    cache = DictEmbeddingCache({("t1", MODEL, _sha("Mitosis.")): stored})
    reused = metric("ragstream_embed_chunks_total", outcome="reused")
    sink = await _embed(_ready("Mitosis.", "ATP."), encoder=encoder, cache=cache)
    assert encoder.document_calls == [["ATP."]]
    [embedded] = _outputs(sink)
    assert [c.reused for c in embedded.chunks] == [True, False]
    np.testing.assert_array_equal(_vectors(embedded)[0], stored)
    assert metric("ragstream_embed_chunks_total", outcome="reused") - reused == 1

    # The same document again (a retitle, a redelivery): nothing left to encode.
    again = await _embed(_ready("Mitosis.", "ATP.", version=2), encoder=encoder, cache=cache)
    assert encoder.document_calls == [["ATP."]]
    assert all(c.reused for c in again.messages()[0].chunks)
    assert metric("ragstream_embed_chunks_total", outcome="reused") - reused == 3


async def test_the_cache_is_looked_up_and_filled_per_tenant() -> None:
    encoder = HashEncoder()
    cache = DictEmbeddingCache({("t1", MODEL, _sha("Mitosis.")): encoder.vector("Mitosis.")})
    sink = await _embed(_ready("Mitosis."), _ready("Mitosis.", tenant_id="t2"), encoder=encoder, cache=cache)
    # t1's entry is no hit for t2: t2's copy is encoded and stored under t2.
    assert encoder.document_calls == [["Mitosis."]]
    assert cache.lookups == [("t1", MODEL, [_sha("Mitosis.")]), ("t2", MODEL, [_sha("Mitosis.")])]
    assert ("t2", MODEL, _sha("Mitosis.")) in cache.entries
    assert [e.chunks[0].reused for e in _outputs(sink)] == [True, False]


async def test_each_tenant_reuses_only_its_own_cached_vector() -> None:
    own = {tenant: np.eye(8, dtype=np.float32)[i] for i, tenant in enumerate(("t1", "t2"))}
    cache = DictEmbeddingCache({(tenant, MODEL, _sha("Mitosis.")): vector for tenant, vector in own.items()})
    sink = await _embed(_ready("Mitosis.", tenant_id="t2"), _ready("Mitosis."), cache=cache)
    for embedded in _outputs(sink):
        np.testing.assert_array_equal(_vectors(embedded)[0], own[embedded.tenant_id])


async def test_vectors_travel_as_little_endian_float32_unit_vectors() -> None:
    encoder = HashEncoder()
    sink = await _embed(_ready("Cells divide.", "ATP."), encoder=encoder)
    [embedded] = _outputs(sink)
    for chunk in embedded.chunks:
        assert len(chunk.vector) == 4 * encoder.dimensions
        values = np.array(struct.unpack(f"<{encoder.dimensions}f", chunk.vector), dtype=np.float32)
        np.testing.assert_array_equal(values, encoder.vector(chunk.chunk.text))
        assert float(np.linalg.norm(values)) == pytest.approx(1.0, abs=1e-6)


async def test_deletes_are_forwarded_in_batch_order() -> None:
    deleted = documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d1", version=2)
    sink = await _embed(_ready("Cells divide."), deleted, _ready("ATP.", document_id="d2"))
    assert [type(m).__name__ for m in _outputs(sink)] == ["ChunksEmbedded", "DocumentDeleted", "ChunksEmbedded"]
    assert sink.messages(documents_pb2.DocumentDeleted) == [deleted]


async def test_a_batch_of_deletes_does_no_model_or_cache_work() -> None:
    encoder, cache = HashEncoder(), DictEmbeddingCache()
    deleted = documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d1", version=3)
    sink = await _embed(deleted, encoder=encoder, cache=cache)
    assert _outputs(sink) == [deleted]
    assert (encoder.document_calls, cache.lookups) == ([], [])


@pytest.mark.parametrize(
    ("ready", "problem"),
    [
        (_ready("x", tenant_id=""), "tenant_id"),
        (_ready("x", document_id=""), "document_id"),
        (chunks_pb2.ChunksReady(tenant_id="t1", document_id="d1", chunks=[chunks_pb2.Chunk(text="x")]), "sha256"),
    ],
)
async def test_contract_violations_are_permanent_and_do_no_work(ready: chunks_pb2.ChunksReady, problem: str) -> None:
    encoder, sink = HashEncoder(), RecordingSink()
    with pytest.raises(PermanentError, match=problem):
        await embed_chunk_batch(_chunk_batch(ready), encoder, DictEmbeddingCache(), sink)
    assert (encoder.document_calls, sink.calls) == ([], 0)


async def test_outputs_continue_the_trace_of_their_own_input() -> None:
    messages: list[ChunkEvent] = [
        _ready("Cells divide."),
        documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d9"),
    ]
    spans, batch = [], []
    for offset, message in enumerate(messages):
        with TRACER.start_as_current_span(f"upload-{offset}") as span:
            spans.append(span.get_span_context().span_id)
            batch.append(envelope(message, offset=offset))
    sink = RecordingSink()
    await embed_chunk_batch(batch, HashEncoder(), DictEmbeddingCache(), sink)
    assert len(set(spans)) == 2 and 0 not in spans
    assert [_span_id(e.context) for e in sink.emitted if not _is_usage(e.message)] == spans


async def test_a_failed_emit_propagates_and_the_retry_reuses_the_stored_vectors() -> None:
    encoder, cache = HashEncoder(), DictEmbeddingCache()
    sink = RecordingSink(fail_with=ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        await embed_chunk_batch(_chunk_batch(_ready("ATP.")), encoder, cache, sink)
    await embed_chunk_batch(_chunk_batch(_ready("ATP.")), encoder, cache, sink)
    assert encoder.document_calls == [["ATP."]]
    assert _outputs(sink)[0].chunks[0].reused


async def test_one_model_call_is_one_encode_batch_observation() -> None:
    name = "ragstream_embed_encode_batch_texts"
    count, total = metric(f"{name}_count", path="documents"), metric(f"{name}_sum", path="documents")
    await _embed(_ready("Cells divide.", "Mitosis."), _ready("ATP.", document_id="d2"))
    assert metric(f"{name}_count", path="documents") - count == 1
    assert metric(f"{name}_sum", path="documents") - total == 3


def _query_batch(*queries: QueryEvent) -> list[Envelope[QueryEvent]]:
    return [envelope(q, q.query_id, offset=i) for i, q in enumerate(queries)]


async def test_live_queries_are_embedded_in_one_call_and_keep_their_ids() -> None:
    encoder, sink = HashEncoder(), RecordingSink()
    encoded = metric("ragstream_embed_queries_total", outcome="encoded")
    queries = [_query("q1", "What is ATP?", timedelta(minutes=1)), _query("q2", "Why do cells divide?")]
    await embed_query_batch(_query_batch(*queries), encoder, sink)
    assert encoder.query_calls == [["What is ATP?", "Why do cells divide?"]]
    assert encoder.document_calls == []
    embedded = _outputs(sink)
    assert [e.query.query_id for e in embedded] == ["q1", "q2"]
    for out, query in zip(embedded, queries, strict=True):
        assert isinstance(out, queries_pb2.QueryEmbedded) and out.model == MODEL
        assert (out.query.tenant_id, out.query.question, out.query.top_k) == ("t1", query.question, 5)
        assert out.query.deadline == query.deadline
        assert out.query.timings_ms["embed"] >= 0
        np.testing.assert_array_equal(np.frombuffer(out.vector, dtype="<f4"), encoder.vector(query.question))
    assert metric("ragstream_embed_queries_total", outcome="encoded") - encoded == 2


async def test_expired_queries_are_dropped_without_work() -> None:
    encoder, sink = HashEncoder(), RecordingSink()
    expired = metric("ragstream_embed_queries_total", outcome="expired")
    late = timedelta(seconds=-5)
    await embed_query_batch(_query_batch(_query("q1", "late", late), _query("q2", "later", late)), encoder, sink)
    assert (encoder.query_calls, sink.calls) == ([], 0)
    await embed_query_batch(_query_batch(_query("q3", "late", late), _query("q4", "on time")), encoder, sink)
    assert encoder.query_calls == [["on time"]]
    assert [e.query.query_id for e in _outputs(sink)] == ["q4"]
    assert metric("ragstream_embed_queries_total", outcome="expired") - expired == 3


async def test_query_vectors_continue_each_query_trace() -> None:
    spans, batch = [], []
    for query in (_query("q1", "What is ATP?"), _query("q2", "Why do cells divide?")):
        with TRACER.start_as_current_span(query.query_id) as span:
            spans.append(span.get_span_context().span_id)
            batch.append(envelope(query, query.query_id))
    sink = RecordingSink()
    await embed_query_batch(batch, HashEncoder(), sink)
    assert len(set(spans)) == 2 and 0 not in spans
    assert [_span_id(e.context) for e in sink.emitted if not _is_usage(e.message)] == spans


async def test_a_failed_query_emit_propagates_so_the_consumer_retries() -> None:
    sink = RecordingSink(fail_with=ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        await embed_query_batch(_query_batch(_query("q1", "What is ATP?")), HashEncoder(), sink)


async def test_the_routes_send_vectors_and_deletes_by_document_and_query_vectors_by_query_id() -> None:
    published: list[OutgoingEvent] = []

    class ListPublisher:
        async def publish_many(self, events: Sequence[OutgoingEvent]) -> None:
            published.extend(events)

    chunks = RecordingSink()
    deleted = documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d9", version=2)
    await embed_chunk_batch(_chunk_batch(_ready("ATP."), deleted), HashEncoder(), DictEmbeddingCache(), chunks)
    await RoutedEventSink(ListPublisher(), CHUNK_ROUTES).emit(chunks.emitted)
    queries = RecordingSink()
    await embed_query_batch(_query_batch(_query("q7", "What is ATP?")), HashEncoder(), queries)
    await RoutedEventSink(ListPublisher(), QUERY_ROUTES).emit(queries.emitted)
    assert [(e.topic, e.key) for e in published] == [
        (CHUNKS_EMBEDDED.name, "t1/d1"),
        (CHUNKS_EMBEDDED.name, "t1/d9"),
        (USAGE.name, "t1"),
        (QUERIES_EMBEDDED.name, "q7"),
    ]

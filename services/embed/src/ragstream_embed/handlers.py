"""Embed handlers: chunks in, vectors out (ChunksEmbedded); queries in, query vectors out (QueryEmbedded)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import numpy as np
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, usage_pb2
from ragstream_common.events import Emitted, Envelope, EventSink, PermanentError
from ragstream_common.messages import is_expired, now_timestamp, pack_vector
from ragstream_common.usage_records import usage_record

from ragstream_embed.metrics import CHUNKS, ENCODE_BATCH, ENCODE_SECONDS, QUERIES
from ragstream_embed.ports import EmbeddingCache, Encoder

ChunkEvent: TypeAlias = chunks_pb2.ChunksReady | documents_pb2.DocumentDeleted
QueryEvent: TypeAlias = queries_pb2.QueryRequested
# (tenant_id, content_sha256): cached vectors never cross tenants.
ContentKey: TypeAlias = tuple[str, str]
Vectors: TypeAlias = dict[ContentKey, np.ndarray]


async def embed_chunk_batch(
    batch: Sequence[Envelope[ChunkEvent]],
    encoder: Encoder,
    cache: EmbeddingCache,
    sink: EventSink,
    extras: Sequence[Encoder] = (),
) -> None:
    """Encode every chunk of the batch that has no cached vector, in one model call across documents (per model:
    the primary `encoder`, then each of `extras`, the other models an index generation needs); emit the embedded
    documents and the forwarded deletes in batch order, then their usage records, in one go."""
    documents = [e.message for e in batch if isinstance(e.message, chunks_pb2.ChunksReady)]
    for document in documents:
        _validate(document)
    by_model: list[tuple[Encoder, Vectors, Vectors]] = []
    for model_encoder in (encoder, *extras):
        cached = await _cached_vectors(documents, model_encoder.model_name, cache)
        fresh = await _encode_missing(documents, cached, model_encoder, cache)
        CHUNKS.labels("encoded").inc(len(fresh))
        by_model.append((model_encoder, cached, fresh))
    events: list[Emitted] = []
    usage: list[Emitted] = []
    for envelope in batch:
        message = envelope.message
        if isinstance(message, documents_pb2.DocumentDeleted):
            # Forwarded on the document's own key, so the index deletes behind its earlier versions.
            events.append(Emitted(message, envelope.trace_context))
        else:
            events.append(Emitted(_embedded(message, by_model), envelope.trace_context))
            usage.append(Emitted(_embedded_usage(envelope.event_id, message), envelope.trace_context))
    await sink.emit(events + usage)


def _embedded_usage(event_id: str, document: chunks_pb2.ChunksReady) -> usage_pb2.UsageRecorded:
    """The chunks embedded for one ChunksReady event, for metering: counted once per source event."""
    return usage_record(
        document.tenant_id,
        f"{event_id}:chunks",
        "embed",
        occurred_at=document.occurred_at,
        chunks_embedded=len(document.chunks),
    )


def _validate(document: chunks_pb2.ChunksReady) -> None:
    """What embedding relies on: the tenant scopes the cache, the content hash is each chunk's cache key."""
    problems: list[str] = []
    if not document.tenant_id:
        problems.append("tenant_id is required")
    if not document.document_id:
        problems.append("document_id is required")
    if any(not chunk.content_sha256 for chunk in document.chunks):
        problems.append("every chunk needs a content_sha256")
    if problems:
        raise PermanentError("; ".join(problems))


async def _cached_vectors(documents: Sequence[chunks_pb2.ChunksReady], model: str, cache: EmbeddingCache) -> Vectors:
    """One cache lookup per tenant of the batch."""
    hashes_by_tenant: dict[str, set[str]] = {}
    for document in documents:
        hashes_by_tenant.setdefault(document.tenant_id, set()).update(c.content_sha256 for c in document.chunks)
    cached: Vectors = {}
    for tenant_id, hashes in hashes_by_tenant.items():
        found = await cache.lookup(tenant_id, model, sorted(hashes))
        cached.update(((tenant_id, digest), vector) for digest, vector in found.items())
    return cached


async def _encode_missing(
    documents: Sequence[chunks_pb2.ChunksReady], cached: Vectors, encoder: Encoder, cache: EmbeddingCache
) -> Vectors:
    """Encode each distinct uncached content of the batch once, and store the vectors for next time."""
    pending: dict[ContentKey, str] = {}
    for document in documents:
        for chunk in document.chunks:
            key = (document.tenant_id, chunk.content_sha256)
            if key not in cached:
                pending.setdefault(key, chunk.text)
    if not pending:
        return {}
    vectors, _ = await _timed_encode(encoder.encode_documents, list(pending.values()), "documents")
    fresh = dict(zip(pending, vectors, strict=True))
    for tenant_id in dict.fromkeys(tenant for tenant, _ in fresh):
        tenant_vectors = {digest: vector for (tenant, digest), vector in fresh.items() if tenant == tenant_id}
        await cache.store(tenant_id, encoder.model_name, tenant_vectors)
    return fresh


def _embedded(
    document: chunks_pb2.ChunksReady, by_model: Sequence[tuple[Encoder, Vectors, Vectors]]
) -> chunks_pb2.ChunksEmbedded:
    """The document with the primary model's vector per chunk, and the other models' as extra vectors."""
    (encoder, cached, fresh), extras = by_model[0], by_model[1:]
    out = chunks_pb2.ChunksEmbedded(
        tenant_id=document.tenant_id,
        document_id=document.document_id,
        version=document.version,
        title=document.title,
        content_type=document.content_type,
        model=encoder.model_name,
        model_version=encoder.model_version,
        dimensions=encoder.dimensions,
        occurred_at=now_timestamp(),
    )
    out.metadata.update(document.metadata)
    for chunk in document.chunks:
        key = (document.tenant_id, chunk.content_sha256)
        reused = key not in fresh
        vector = cached[key] if reused else fresh[key]
        embedded = chunks_pb2.EmbeddedChunk(chunk=chunk, vector=pack_vector(vector), reused=reused)
        for extra, extra_cached, extra_fresh in extras:
            extra_vector = extra_fresh[key] if key in extra_fresh else extra_cached[key]
            embedded.extra_vectors.append(
                chunks_pb2.ModelVector(
                    model=extra.model_name, vector=pack_vector(extra_vector), dimensions=extra.dimensions
                )
            )
        out.chunks.append(embedded)
    CHUNKS.labels("reused").inc(sum(c.reused for c in out.chunks))
    return out


async def embed_query_batch(
    batch: Sequence[Envelope[QueryEvent]], encoder: Encoder, sink: EventSink, extras: Sequence[Encoder] = ()
) -> None:
    """Embed the batch's live queries in one model call per model (the primary's is `vector`, the others' ride
    along as extra vectors, for the live generation's); expired ones are dropped without work."""
    live = [e for e in batch if not is_expired(e.message)]
    QUERIES.labels("expired").inc(len(batch) - len(live))
    if not live:
        return
    questions = [e.message.question for e in live]
    vectors, seconds = await _timed_encode(encoder.encode_queries, questions, "queries")
    extra_vectors = []
    for extra in extras:
        extra_rows, extra_seconds = await _timed_encode(extra.encode_queries, questions, "queries")
        extra_vectors.append((extra, extra_rows))
        seconds += extra_seconds
    QUERIES.labels("encoded").inc(len(live))
    events: list[Emitted] = []
    for row, (envelope, vector) in enumerate(zip(live, vectors, strict=True)):
        query = queries_pb2.QueryRequested()
        query.CopyFrom(envelope.message)
        query.timings_ms["embed"] = seconds * 1000
        embedded = queries_pb2.QueryEmbedded(query=query, vector=pack_vector(vector), model=encoder.model_name)
        for extra, rows in extra_vectors:
            embedded.extra_vectors.append(
                chunks_pb2.ModelVector(
                    model=extra.model_name, vector=pack_vector(rows[row]), dimensions=extra.dimensions
                )
            )
        events.append(Emitted(embedded, envelope.trace_context))
    await sink.emit(events)


async def _timed_encode(
    encode: Callable[[Sequence[str]], Awaitable[np.ndarray]], texts: list[str], path: str
) -> tuple[np.ndarray, float]:
    """One model call on `path` ("documents" or "queries"): the vectors and the seconds it took."""
    started = time.perf_counter()
    vectors = await encode(texts)
    seconds = time.perf_counter() - started
    ENCODE_BATCH.labels(path).observe(len(texts))
    ENCODE_SECONDS.labels(path).observe(seconds)
    return vectors, seconds

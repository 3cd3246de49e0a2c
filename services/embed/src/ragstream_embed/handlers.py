"""Embed handlers: chunks in, vectors out; queries in, query vectors out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2
from ragstream_common.kafka import Envelope, OutgoingEvent
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, QUERIES_EMBEDDED
from ragstream_common.logs import get_logger
from ragstream_common.messages import document_key, is_expired, now_timestamp, pack_vector

from ragstream_embed.ports import EmbeddingCache, Encoder, EventSink

log = get_logger(__name__)


@dataclass
class EmbedCounters:
    """Observable work done, also exported as Prometheus metrics by the adapters."""

    chunks_encoded: int = 0
    chunks_reused: int = 0
    queries_encoded: int = 0
    queries_expired: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)


async def embed_chunk_batch(
    batch: Sequence[Envelope[Any]], encoder: Encoder, cache: EmbeddingCache, sink: EventSink, counters: EmbedCounters
) -> None:
    """Encode every chunk of the batch that has no cached vector, in one model call across documents."""
    ready = [e for e in batch if isinstance(e.message, chunks_pb2.ChunksReady)]
    cached: dict[tuple[str, str], np.ndarray] = {}
    for envelope in ready:
        doc = envelope.message
        hashes = [c.content_sha256 for c in doc.chunks]
        for digest, vector in (await cache.lookup(doc.tenant_id, encoder.model_name, hashes)).items():
            cached[(doc.tenant_id, digest)] = vector
    pending: dict[tuple[str, str], str] = {}
    for envelope in ready:
        for chunk in envelope.message.chunks:
            key = (envelope.message.tenant_id, chunk.content_sha256)
            if key not in cached:
                pending.setdefault(key, chunk.text)
    fresh: dict[tuple[str, str], np.ndarray] = {}
    if pending:
        vectors = await encoder.encode_documents(list(pending.values()))
        fresh = dict(zip(pending.keys(), vectors, strict=True))
        for tenant_id in {tenant for tenant, _ in fresh}:
            await cache.store(
                tenant_id, encoder.model_name, {h: v for (t, h), v in fresh.items() if t == tenant_id}
            )
    counters.chunks_encoded += len(fresh)
    events = [_embedded_event(e, encoder, cached, fresh, counters) for e in ready]
    events += [_forward_delete(e) for e in batch if isinstance(e.message, documents_pb2.DocumentDeleted)]
    await sink.publish_many(events)


def _embedded_event(
    envelope: Envelope[Any],
    encoder: Encoder,
    cached: dict[tuple[str, str], np.ndarray],
    fresh: dict[tuple[str, str], np.ndarray],
    counters: EmbedCounters,
) -> OutgoingEvent:
    doc: chunks_pb2.ChunksReady = envelope.message
    out = chunks_pb2.ChunksEmbedded(
        tenant_id=doc.tenant_id,
        document_id=doc.document_id,
        version=doc.version,
        title=doc.title,
        content_type=doc.content_type,
        model=encoder.model_name,
        model_version=encoder.model_version,
        dimensions=encoder.dimensions,
        occurred_at=now_timestamp(),
    )
    out.metadata.update(doc.metadata)
    for chunk in doc.chunks:
        key = (doc.tenant_id, chunk.content_sha256)
        reused = key not in fresh
        counters.chunks_reused += int(reused)
        vector = fresh[key] if not reused else cached[key]
        out.chunks.append(chunks_pb2.EmbeddedChunk(chunk=chunk, vector=pack_vector(vector), reused=reused))
    key = document_key(doc.tenant_id, doc.document_id)
    return OutgoingEvent(CHUNKS_EMBEDDED.name, key, out, context=envelope.trace_context)


def _forward_delete(envelope: Envelope[Any]) -> OutgoingEvent:
    """Deletes travel the same keyed path as chunks, so they stay ordered behind earlier versions."""
    deleted: documents_pb2.DocumentDeleted = envelope.message
    key = document_key(deleted.tenant_id, deleted.document_id)
    return OutgoingEvent(CHUNKS_EMBEDDED.name, key, deleted, context=envelope.trace_context)


async def embed_query_batch(
    batch: Sequence[Envelope[queries_pb2.QueryRequested]], encoder: Encoder, sink: EventSink, counters: EmbedCounters
) -> None:
    """Embed live queries in one model call; expired ones are dropped without work."""
    live = [e for e in batch if not is_expired(e.message)]
    counters.queries_expired += len(batch) - len(live)
    if not live:
        return
    started = time.perf_counter()
    vectors = await encoder.encode_queries([e.message.question for e in live])
    elapsed_ms = (time.perf_counter() - started) * 1000
    counters.queries_encoded += len(live)
    events = []
    for envelope, vector in zip(live, vectors, strict=True):
        query = queries_pb2.QueryRequested()
        query.CopyFrom(envelope.message)
        query.timings_ms["embed"] = elapsed_ms
        out = queries_pb2.QueryEmbedded(query=query, vector=pack_vector(vector), model=encoder.model_name)
        events.append(OutgoingEvent(QUERIES_EMBEDDED.name, query.query_id, out, context=envelope.trace_context))
    await sink.publish_many(events)

"""Query handler: QueryEmbedded in; sources to the waiting gateway and QueryRetrieved to the generate worker.

- reply_to set: ReplyService.DeliverSources at that address (the gateway answers search calls and shows sources),
  except in AGENT mode, where the agent sends all its steps' sources itself, and for a caller that reads only
  the answer (`answer_only`: a JSON answer, whose citations carry the chunks).
- mode ANSWER (or unspecified) and AGENT: QueryRetrieved on rag.queries.retrieved.v1 for the generate worker.
- mode SEARCH: nothing is published; the gRPC reply is the whole answer (no reply_to: the query ends here).
Expired queries are dropped without work. A query that fails is reported to the gateway (DeliverFailure) and
not retried: by the time a retry ran, its caller would have given up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace
from rag.v1 import chunks_pb2, queries_pb2, services_pb2
from ragstream_common.events import Emitted, Envelope, EventSink
from ragstream_common.logs import get_logger
from ragstream_common.messages import is_expired, unpack_vector
from ragstream_common.tracing import QUERY_ID_ATTRIBUTE, TENANT_ID_ATTRIBUTE

from ragstream_retrieve.generations_model import query_vector
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.metrics import QUERIES, QUERY_BATCH_SECONDS
from ragstream_retrieve.models import RetrievalMode, SearchHit, SearchRequest, SearchTuning
from ragstream_retrieve.ports import LiveGenerations, ReplyClient, SearchIndex
from ragstream_retrieve.search import hybrid_search
from ragstream_retrieve.wire import RETRIEVAL_MODES, TopKLimits, checked_vector, scored_chunks, search_filters

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.retrieve")
STAGE = "retrieve"


@dataclass
class QueryResponder:
    index: SearchIndex
    analyzer: LexicalAnalyzer
    sink: EventSink
    replies: ReplyClient
    tuning: SearchTuning = field(default_factory=SearchTuning)
    limits: TopKLimits = field(default_factory=TopKLimits)
    dimensions: int = 384
    # The generations (the service's): the query's vector of the live one's model is searched; None: the one
    # vector a query carries, of `dimensions`.
    generations: LiveGenerations | None = None

    async def handle_batch(self, batch: Sequence[Envelope[queries_pb2.QueryEmbedded]]) -> None:
        """Every live query of the batch at once; each replies as soon as its own search is done."""
        with QUERY_BATCH_SECONDS.time():
            await asyncio.gather(*(self.handle(envelope) for envelope in batch))

    async def handle(self, envelope: Envelope[queries_pb2.QueryEmbedded]) -> None:
        # Each query continues its own trace, also inside a batch (gather gives each its own context copy).
        query = envelope.message.query
        attributes = {QUERY_ID_ATTRIBUTE: query.query_id, TENANT_ID_ATTRIBUTE: query.tenant_id}
        with tracer.start_as_current_span("retrieve query", context=envelope.trace_context, attributes=attributes):
            await self._answer(envelope.message)

    async def _answer(self, embedded: queries_pb2.QueryEmbedded) -> None:
        if is_expired(embedded.query):
            QUERIES.labels("expired").inc()
            return
        query = queries_pb2.QueryRequested()
        query.CopyFrom(embedded.query)
        started = time.perf_counter()
        try:
            hits = await self.search(query, embedded.vector, embedded.model, embedded.extra_vectors)
        except Exception as exc:  # any failure ends this one query, never the batch
            QUERIES.labels("failed").inc()
            log.error("query failed", query_id=query.query_id, tenant_id=query.tenant_id, error=repr(exc))
            if query.reply_to:
                failure = services_pb2.QueryFailure(query_id=query.query_id, stage=STAGE, reason=str(exc)[:500])
                await self.replies.deliver_failure(query.reply_to, failure, query.tenant_id)
            return
        query.timings_ms[STAGE] = query.timings_ms.get(STAGE, 0.0) + (time.perf_counter() - started) * 1000
        QUERIES.labels("answered").inc()
        await asyncio.gather(self._reply(query, hits), self._forward(query, hits))

    async def search(
        self,
        query: queries_pb2.QueryRequested,
        packed_vector: bytes,
        model: str = "",
        extra_vectors: Sequence[chunks_pb2.ModelVector] = (),
    ) -> list[SearchHit]:
        if not query.tenant_id:
            raise ValueError("query without tenant_id")
        mode = RETRIEVAL_MODES.get(query.retrieval, RETRIEVAL_MODES[queries_pb2.RETRIEVAL_MODE_UNSPECIFIED])
        vector, vector_model = await self._vector(packed_vector, model, extra_vectors)
        if vector is None and packed_vector and mode is RetrievalMode.HYBRID:
            # No vector of the live generation's model (the embed service does not serve it yet): answer by BM25.
            QUERIES.labels("lexical_fallback").inc()
            mode = RetrievalMode.LEXICAL
        request = SearchRequest(
            tenant_id=query.tenant_id,
            text=query.question,
            top_k=self.limits.clamp(query.top_k),
            mode=mode,
            filters=search_filters(query.filters),
            vector=vector,
            model=vector_model,
        )
        return await hybrid_search(self.index, self.analyzer, request, self.tuning)

    async def _vector(
        self, packed_vector: bytes, model: str, extra_vectors: Sequence[chunks_pb2.ModelVector]
    ) -> tuple[np.ndarray | None, str | None]:
        """The query's vector for the live generation, and its model (None: the index's live one)."""
        if self.generations is None:
            return (checked_vector(unpack_vector(packed_vector), self.dimensions) if packed_vector else None), None
        vectors = {v.model: unpack_vector(v.vector) for v in extra_vectors}
        if packed_vector:
            vectors[model] = unpack_vector(packed_vector)
        chosen = query_vector(model, vectors, await self.generations.current())
        if chosen is None:
            return None, None
        return checked_vector(chosen[1], None), chosen[0]

    async def _reply(self, query: queries_pb2.QueryRequested, hits: list[SearchHit]) -> None:
        # An AGENT query's sources are every step's, sent by the agent once its steps are done.
        if not query.reply_to or query.answer_only or query.mode == queries_pb2.QUERY_MODE_AGENT:
            return
        reply = services_pb2.SourcesReply(query_id=query.query_id, chunks=scored_chunks(hits))
        reply.timings_ms.update(query.timings_ms)
        await self.replies.deliver_sources(query.reply_to, reply, query.tenant_id)

    async def _forward(self, query: queries_pb2.QueryRequested, hits: list[SearchHit]) -> None:
        if query.mode == queries_pb2.QUERY_MODE_SEARCH:
            return
        retrieved = queries_pb2.QueryRetrieved(query=query, chunks=scored_chunks(hits))
        # This query's span (a child of the envelope's trace) becomes the parent of the generate stage.
        await self.sink.emit([Emitted(retrieved, otel_context.get_current())])

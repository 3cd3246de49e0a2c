"""RetrieveService over gRPC: direct search for internal and external clients.

Callers present a token with scope `search` (grpc_auth): the search runs in the token's tenant, and a
`tenant_id` field naming another tenant is refused.
"""

from __future__ import annotations

import grpc
import numpy as np
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import tenant_of_call
from ragstream_common.logs import get_logger
from ragstream_common.messages import StageTimer

from ragstream_retrieve.generations_model import Generation
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import RetrievalMode, SearchRequest, SearchTuning
from ragstream_retrieve.ports import LiveGenerations, QueryEmbedder, SearchIndex
from ragstream_retrieve.search import hybrid_search
from ragstream_retrieve.wire import (
    RETRIEVAL_MODES,
    InvalidVector,
    TopKLimits,
    checked_vector,
    scored_chunks,
    search_filters,
)

log = get_logger(__name__)


SearchContext = grpc.aio.ServicerContext[services_pb2.SearchRequest, services_pb2.SearchResponse]


class RetrieveServicer(services_pb2_grpc.RetrieveServiceServicer):
    def __init__(
        self,
        index: SearchIndex,
        analyzer: LexicalAnalyzer,
        embedder: QueryEmbedder,
        tuning: SearchTuning,
        limits: TopKLimits,
        dimensions: int,
        generations: LiveGenerations | None = None,
    ) -> None:
        self._index = index
        self._analyzer = analyzer
        self._embedder = embedder
        self._tuning = tuning
        self._limits = limits
        self._dimensions = dimensions
        # The live generation's model embeds the query and sizes a given vector (None: `dimensions`, the primary).
        self._generations = generations

    async def Search(self, request: services_pb2.SearchRequest, context: SearchContext) -> services_pb2.SearchResponse:
        tenant_id = await tenant_of_call(request.tenant_id, context)
        if not request.query.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query must not be empty")
        mode = RETRIEVAL_MODES.get(request.retrieval, RetrievalMode.HYBRID)
        timings: dict[str, float] = {}
        vector = None
        live = (await self._generations.current()).live if self._generations is not None else None
        if mode is not RetrievalMode.LEXICAL:
            vector = await self._query_vector(request, timings, context, live)
        search = SearchRequest(
            tenant_id=tenant_id,
            text=request.query,
            top_k=self._limits.clamp(request.top_k),
            mode=mode,
            filters=search_filters(request.filters if request.HasField("filters") else queries_pb2.QueryFilters()),
            vector=vector,
            model=live.model if live is not None else None,
        )
        with StageTimer(timings, "retrieve"):
            hits = await hybrid_search(self._index, self._analyzer, search, self._tuning)
        return services_pb2.SearchResponse(chunks=scored_chunks(hits), timings_ms=timings)

    async def _query_vector(
        self,
        request: services_pb2.SearchRequest,
        timings: dict[str, float],
        context: SearchContext,
        live: Generation | None,
    ) -> np.ndarray:
        given = len(request.query_vector) > 0
        if given:
            values = np.asarray(request.query_vector, dtype=np.float32)
        else:
            try:
                with StageTimer(timings, "embed"):
                    values = await self._embedder.embed_query(request.query, live.model if live else "")
            except grpc.aio.AioRpcError as exc:
                log.warning("embedding the query failed", code=exc.code().name, details=exc.details())
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"embed service: {exc.details()}")
        try:
            return checked_vector(values, live.dimensions if live is not None else self._dimensions)
        except InvalidVector as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT if given else grpc.StatusCode.FAILED_PRECONDITION
            await context.abort(code, f"query_vector: {exc}" if given else f"embed service vector: {exc}")
            raise  # not reached: abort raises

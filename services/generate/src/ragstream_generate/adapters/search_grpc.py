"""The agent's searches over RetrieveService.Search: each call carries a token minted here for the query's
tenant, addressed to retrieve with scope `search` only, so a step can never read another tenant's chunks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import grpc
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import bearer_metadata
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.service_tokens import SCOPE_SEARCH, TokenMinter

from ragstream_generate.agent.ports import SearchScope


def narrowed_filters(
    scope: SearchScope, document_ids: Sequence[str], metadata: Mapping[str, str] | None
) -> queries_pb2.QueryFilters | None:
    """The caller's filters, narrowed by a step's own; None when a step asks for documents outside them."""
    ids = list(document_ids)
    if scope.document_ids:
        ids = [i for i in ids if i in scope.document_ids] if ids else list(scope.document_ids)
        if document_ids and not ids:
            return None
    # The caller's metadata wins over a step's: a planner may narrow the search, never widen it.
    merged = {**(metadata or {}), **scope.metadata}
    return queries_pb2.QueryFilters(document_ids=ids, metadata=merged)


class GrpcSearcher:
    """Implements `Searcher` over RetrieveService.Search."""

    def __init__(
        self,
        address: str,
        tokens: TokenMinter,
        channel_factory: Callable[[str], grpc.aio.Channel] = insecure_channel,
    ) -> None:
        self._address = address
        self._tokens = tokens
        self._new_channel = channel_factory
        self._channel: grpc.aio.Channel | None = None

    async def search(
        self,
        scope: SearchScope,
        query: str,
        top_k: int,
        timeout_s: float,
        *,
        document_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> list[queries_pb2.ScoredChunk]:
        filters = narrowed_filters(scope, document_ids, metadata)
        if filters is None:
            return []
        token = self._tokens.mint(scope.tenant_id, [SCOPE_SEARCH], "retrieve")
        if self._channel is None:
            self._channel = self._new_channel(self._address)
        stub = services_pb2_grpc.RetrieveServiceStub(self._channel)
        request = services_pb2.SearchRequest(query=query, top_k=top_k, filters=filters, retrieval=scope.retrieval)
        response = await stub.Search(request, timeout=max(timeout_s, 0.05), metadata=bearer_metadata(token))
        return list(response.chunks)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

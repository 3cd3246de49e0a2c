"""gRPC client of the embed service (the gateway's ReplyService client is ragstream_common.reply_client)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import numpy as np
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import bearer_metadata, current_caller
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.service_tokens import SCOPE_EMBED, TokenMinter

# The reserved tenant of platform work (migration 0005's `_platform`).
PLATFORM_TENANT = "_platform"


class GrpcQueryEmbedder:
    """Implements `QueryEmbedder` over EmbedService.Embed(is_query=True).

    Used while serving RetrieveService.Search: the onward call carries a token minted here for the tenant of
    the Search caller's verified token (and its subject), addressed to embed with scope `embed` only.
    """

    def __init__(
        self,
        address: str,
        tokens: TokenMinter,
        timeout_s: float = 5.0,
        channel_factory: Callable[[str], grpc.aio.Channel] = insecure_channel,
    ) -> None:
        self._address = address
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._new_channel = channel_factory
        self._channel: grpc.aio.Channel | None = None

    async def embed_query(self, text: str, model: str = "") -> np.ndarray:
        caller = current_caller()
        token = self._tokens.mint(caller.tenant, [SCOPE_EMBED], "embed", subject=caller.subject)
        request = services_pb2.EmbedRequest(texts=[text], is_query=True, model=model)
        response = await self._embed(request, token)
        return np.asarray(response.embeddings[0].values, dtype=np.float32)

    async def _embed(self, request: services_pb2.EmbedRequest, token: str) -> services_pb2.EmbedResponse:
        if self._channel is None:
            self._channel = self._new_channel(self._address)
        stub = services_pb2_grpc.EmbedServiceStub(self._channel)
        response: services_pb2.EmbedResponse = await stub.Embed(
            request, timeout=self._timeout_s, metadata=bearer_metadata(token)
        )
        return response

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class GrpcTextEmbedder(GrpcQueryEmbedder):
    """Implements `TextEmbedder` over EmbedService.Embed (documents path) for re-embedding, which reads no
    tenant's request: its token names the platform tenant, scope `embed` only."""

    async def embed_texts(self, texts: Sequence[str], model: str) -> np.ndarray:
        request = services_pb2.EmbedRequest(texts=list(texts), model=model)
        response = await self._embed(request, self._platform_token())
        return np.asarray([e.values for e in response.embeddings], dtype=np.float32).reshape(len(texts), -1)

    async def primary_model(self) -> tuple[str, int]:
        response = await self._embed(services_pb2.EmbedRequest(texts=["model probe"]), self._platform_token())
        return response.model, response.dimensions

    def _platform_token(self) -> str:
        return self._tokens.mint(PLATFORM_TENANT, [SCOPE_EMBED], "embed", subject="retrieve-reembed")

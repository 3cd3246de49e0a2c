"""gRPC client of the embed service (the gateway's ReplyService client is ragstream_common.reply_client)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import bearer_metadata, current_caller
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.service_tokens import SCOPE_EMBED, TokenMinter


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

    async def embed_query(self, text: str) -> np.ndarray:
        caller = current_caller()
        token = self._tokens.mint(caller.tenant, [SCOPE_EMBED], "embed", subject=caller.subject)
        if self._channel is None:
            self._channel = self._new_channel(self._address)
        stub = services_pb2_grpc.EmbedServiceStub(self._channel)
        request = services_pb2.EmbedRequest(texts=[text], is_query=True)
        response = await stub.Embed(request, timeout=self._timeout_s, metadata=bearer_metadata(token))
        return np.asarray(response.embeddings[0].values, dtype=np.float32)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

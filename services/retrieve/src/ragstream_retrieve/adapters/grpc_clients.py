"""gRPC client of the embed service (the gateway's ReplyService client is ragstream_common.reply_client)."""

from __future__ import annotations

import grpc
import numpy as np
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.grpc_server import insecure_channel


class GrpcQueryEmbedder:
    """Implements `QueryEmbedder` over EmbedService.Embed(is_query=True)."""

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def embed_query(self, text: str) -> np.ndarray:
        if self._channel is None:
            self._channel = insecure_channel(self._address)
        stub = services_pb2_grpc.EmbedServiceStub(self._channel)
        response = await stub.Embed(services_pb2.EmbedRequest(texts=[text], is_query=True), timeout=self._timeout_s)
        return np.asarray(response.embeddings[0].values, dtype=np.float32)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

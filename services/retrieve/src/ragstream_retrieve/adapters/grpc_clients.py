"""gRPC clients: the gateway's ReplyService (address per query) and the embed service."""

from __future__ import annotations

from collections import OrderedDict

import grpc
import numpy as np
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.logs import get_logger

log = get_logger(__name__)


class GrpcReplyClient:
    """Implements `ReplyClient`: one channel per gateway address, the least recently used closed beyond a bound
    (gateway pods come and go with their addresses)."""

    def __init__(self, timeout_s: float = 2.0, max_channels: int = 64) -> None:
        self._timeout_s = timeout_s
        self._max_channels = max_channels
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()

    async def _stub(self, address: str) -> services_pb2_grpc.ReplyServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = insecure_channel(address)
            while len(self._channels) > self._max_channels:
                _, evicted = self._channels.popitem(last=False)
                await evicted.close()
        self._channels.move_to_end(address)
        return services_pb2_grpc.ReplyServiceStub(channel)

    async def deliver_sources(self, address: str, reply: services_pb2.SourcesReply) -> bool:
        try:
            ack = await (await self._stub(address)).DeliverSources(reply, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("DeliverSources failed", address=address, query_id=reply.query_id, code=exc.code().name,
                        details=exc.details())
            return False
        if not ack.accepted:
            log.info("gateway no longer waits for query", address=address, query_id=reply.query_id)
        return bool(ack.accepted)

    async def deliver_failure(self, address: str, failure: services_pb2.QueryFailure) -> bool:
        try:
            ack = await (await self._stub(address)).DeliverFailure(failure, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("DeliverFailure failed", address=address, query_id=failure.query_id, code=exc.code().name)
            return False
        return bool(ack.accepted)

    async def close(self) -> None:
        while self._channels:
            _, channel = self._channels.popitem()
            await channel.close()


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

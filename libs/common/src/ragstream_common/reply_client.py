"""Clients for the gateway's ReplyService, one cached channel per gateway instance address."""

from __future__ import annotations

import grpc
from rag.v1 import services_pb2_grpc

from ragstream_common.grpc_server import insecure_channel


class ReplyClients:
    """Workers answer the gateway instance named in `QueryRequested.reply_to`; channels are reused."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> services_pb2_grpc.ReplyServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = insecure_channel(address)
        return services_pb2_grpc.ReplyServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

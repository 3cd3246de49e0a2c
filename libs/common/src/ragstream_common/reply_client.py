"""The one client of the gateway's ReplyService that workers use to answer the instance waiting for a query.

Each query names its gateway instance (`QueryRequested.reply_to`); gateway pods come and go with their
addresses, so channels are cached per address and the least recently used one is closed beyond a bound.
Every delivery failure is logged and reported as False, never raised: the answer still travels on Kafka.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from rag.v1 import services_pb2, services_pb2_grpc

from ragstream_common.grpc_server import insecure_channel
from ragstream_common.logs import get_logger

log = get_logger(__name__)

# A call that fails before it reaches the wire (a closed or malformed channel) raises these instead of
# AioRpcError; neither may escape a delivery.
_CALL_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, ValueError)


class GrpcReplyClient:
    """ReplyService client with an LRU-bounded channel cache.

    `timeout_s` bounds each unary delivery (DeliverSources / DeliverFailure); `answer_timeout_s` bounds a whole
    StreamAnswer call, which lasts as long as the answer takes to compose. An evicted channel is closed at once,
    cancelling any call still on it, so `max_channels` should exceed the number of live gateway instances.
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        answer_timeout_s: float = 60.0,
        max_channels: int = 64,
        channel_factory: Callable[[str], grpc.aio.Channel] = insecure_channel,
    ) -> None:
        if max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        self._new_channel = channel_factory
        self._timeout_s = timeout_s
        self._answer_timeout_s = answer_timeout_s
        self._max_channels = max_channels
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()

    @property
    def addresses(self) -> list[str]:
        """The addresses with an open channel, least recently used first."""
        return list(self._channels)

    async def _stub(self, address: str) -> services_pb2_grpc.ReplyServiceAsyncStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._new_channel(address)
            while len(self._channels) > self._max_channels:
                evicted_address, evicted = self._channels.popitem(last=False)
                log.debug("closing least recently used reply channel", address=evicted_address)
                await evicted.close()
        self._channels.move_to_end(address)
        return services_pb2_grpc.ReplyServiceStub(channel)

    async def deliver_sources(self, address: str, reply: services_pb2.SourcesReply) -> bool:
        """Hand the retrieved sources to the waiting gateway; False if it could not be reached or stopped waiting."""
        return await self._call(
            "DeliverSources",
            address,
            reply.query_id,
            lambda stub: stub.DeliverSources(reply, timeout=self._timeout_s),
        )

    async def deliver_failure(self, address: str, failure: services_pb2.QueryFailure) -> bool:
        """Tell the waiting gateway its query failed; False if that could not be delivered."""
        return await self._call(
            "DeliverFailure",
            address,
            failure.query_id,
            lambda stub: stub.DeliverFailure(failure, timeout=self._timeout_s),
        )

    async def stream_answer(
        self, address: str, query_id: str, fragments: AsyncIterator[services_pb2.AnswerFragment]
    ) -> bool:
        """Run one client-streaming StreamAnswer call: send `fragments` as they come until the iterable ends,
        then wait for the gateway's acknowledgement. False if the stream failed or the gateway stopped waiting."""
        return await self._call(
            "StreamAnswer",
            address,
            query_id,
            lambda stub: stub.StreamAnswer(fragments, timeout=self._answer_timeout_s),
        )

    async def _call(
        self,
        method: str,
        address: str,
        query_id: str,
        invoke: Callable[[services_pb2_grpc.ReplyServiceAsyncStub], Awaitable[services_pb2.ReplyAck]],
    ) -> bool:
        try:
            ack = await invoke(await self._stub(address))
        except _CALL_ERRORS as exc:
            log.warning(f"{method} failed", address=address, query_id=query_id, error=_describe(exc))
            return False
        except asyncio.CancelledError:
            if _this_task_is_cancelled():
                raise
            # The call, not this task, was cancelled: its channel was evicted or closed under it.
            log.warning(f"{method} cancelled: its channel was closed", address=address, query_id=query_id)
            return False
        if not ack.accepted:
            log.info("gateway no longer waits for the query", method=method, address=address, query_id=query_id)
        return bool(ack.accepted)

    async def close(self) -> None:
        while self._channels:
            _, channel = self._channels.popitem()
            await channel.close()


def _this_task_is_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)

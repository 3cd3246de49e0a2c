"""The one client of the gateway's ReplyService that workers use to answer the instance waiting for a query.

Each query names its gateway instance (`QueryRequested.reply_to`); gateway pods come and go with their
addresses, so channels are cached per address and the least recently used one is closed beyond a bound.
`reply_to` comes from an event: an address outside the configured targets (reply_targets) is dropped, counted
and logged, never dialled. Each call carries a token for the query's tenant (scope `reply`, audience
gateway), so the gateway hands the reply only to a query of that tenant.
Every delivery failure is logged and reported as False, never raised: the answer still travels on Kafka.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from prometheus_client import Counter
from rag.v1 import services_pb2, services_pb2_grpc

from ragstream_common.grpc_auth import Metadata, bearer_metadata
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.logs import get_logger
from ragstream_common.reply_targets import ReplyTargets
from ragstream_common.service_tokens import SCOPE_REPLY, TokenMinter

log = get_logger(__name__)
REFUSED_TARGETS = Counter(
    "ragstream_reply_targets_refused_total", "Replies dropped: reply_to is not an allowed gateway target", ["method"]
)

# A call that fails before it reaches the wire (a closed or malformed channel) raises these instead of
# AioRpcError; neither may escape a delivery.
_CALL_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, ValueError)


class GrpcReplyClient:
    """ReplyService client with an LRU-bounded channel cache.

    `timeout_s` bounds each unary delivery (DeliverSources / DeliverFailure); `answer_timeout_s` bounds a whole
    StreamAnswer call, which lasts as long as the answer takes to compose. An evicted channel is closed at once,
    cancelling any call still on it, so `max_channels` should exceed the number of live gateway instances.
    Only addresses `targets` allows are dialled; `tokens` mints each call's token.
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        answer_timeout_s: float = 60.0,
        max_channels: int = 64,
        channel_factory: Callable[[str], grpc.aio.Channel] = insecure_channel,
        *,
        targets: ReplyTargets,
        tokens: TokenMinter,
    ) -> None:
        if max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        if not targets:
            log.warning("no reply target is allowed (REPLY_ALLOWED_TARGETS): no reply will be delivered")
        self._targets = targets
        self._tokens = tokens
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

    async def deliver_sources(self, address: str, reply: services_pb2.SourcesReply, tenant_id: str) -> bool:
        """Hand the retrieved sources to the waiting gateway; False if it could not be reached or stopped waiting."""
        return await self._call(
            "DeliverSources",
            address,
            reply.query_id,
            tenant_id,
            lambda stub, metadata: stub.DeliverSources(reply, timeout=self._timeout_s, metadata=metadata),
        )

    async def deliver_failure(self, address: str, failure: services_pb2.QueryFailure, tenant_id: str) -> bool:
        """Tell the waiting gateway its query failed; False if that could not be delivered."""
        return await self._call(
            "DeliverFailure",
            address,
            failure.query_id,
            tenant_id,
            lambda stub, metadata: stub.DeliverFailure(failure, timeout=self._timeout_s, metadata=metadata),
        )

    async def stream_answer(
        self, address: str, query_id: str, fragments: AsyncIterator[services_pb2.AnswerFragment], tenant_id: str
    ) -> bool:
        """Run one client-streaming StreamAnswer call: send `fragments` as they come until the iterable ends,
        then wait for the gateway's acknowledgement. False if the stream failed or the gateway stopped waiting."""
        return await self._call(
            "StreamAnswer",
            address,
            query_id,
            tenant_id,
            lambda stub, metadata: stub.StreamAnswer(fragments, timeout=self._answer_timeout_s, metadata=metadata),
        )

    def _admitted(self, method: str, address: str, query_id: str, tenant_id: str) -> Metadata | None:
        """The call's token metadata, or None when the reply must not go out: the address is not an allowed
        gateway target (never dialled), or there is no tenant to mint for."""
        if not self._targets.allows(address):
            REFUSED_TARGETS.labels(method).inc()
            log.warning("reply target not allowed: dropped", method=method, address=address[:128], query_id=query_id)
            return None
        try:
            return bearer_metadata(self._tokens.mint(tenant_id, [SCOPE_REPLY], "gateway"))
        except ValueError as exc:
            log.warning(f"{method} not sent", address=address, query_id=query_id, error=str(exc))
            return None

    async def _call(
        self,
        method: str,
        address: str,
        query_id: str,
        tenant_id: str,
        invoke: Callable[[services_pb2_grpc.ReplyServiceAsyncStub, Metadata], Awaitable[services_pb2.ReplyAck]],
    ) -> bool:
        metadata = self._admitted(method, address, query_id, tenant_id)
        if metadata is None:
            return False
        try:
            ack = await invoke(await self._stub(address), metadata)
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

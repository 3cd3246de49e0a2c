"""Waiting queries and the ReplyService that workers call to answer them.

Each gateway instance serves ReplyService on its own address and names it in `QueryRequested.reply_to`;
retrieve delivers the sources, generate streams the answer. In agent mode generate streams it all on the one
answer stream, in order: each retrieval step, then the sources of every step once, then the answer (retrieve
delivers no sources for those queries). Callers need a token with scope `reply` addressed
to the gateway (grpc_auth), and may deliver only to queries of the token's tenant. Events for a query of that
tenant nobody waits for any more (client gone, deadline passed) are refused with `accepted=false`.

A query id not open for the token's tenant, whether another tenant's or none at all, is refused with the same
PERMISSION_DENIED and detail: a different answer for "exists elsewhere" would let a caller probe other
tenants' query ids. Recently closed queries keep their tenant for a while, so a late worker of the right
tenant still gets `accepted=false` rather than a refusal.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import Counter
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import current_caller
from ragstream_common.logs import get_logger

log = get_logger(__name__)
FOREIGN_REPLIES = Counter(
    "ragstream_gateway_replies_refused_total", "Reply calls refused: the query is not open for the caller's tenant"
)


@dataclass(frozen=True)
class SourcesEvent:
    chunks: list[queries_pb2.ScoredChunk]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    answer: queries_pb2.AnswerProduced


@dataclass(frozen=True)
class FailureEvent:
    stage: str
    reason: str


@dataclass(frozen=True)
class StepEvent:
    """Agent mode: one retrieval step, as it completes (before the sources)."""

    step: queries_pb2.AgentStep


ReplyEvent = SourcesEvent | TokenEvent | DoneEvent | FailureEvent | StepEvent


def fragment_event(fragment: services_pb2.AnswerFragment) -> ReplyEvent:
    """The reply event an answer stream's fragment is; one without an event counts as an (empty) `done`."""
    kind = fragment.WhichOneof("event")
    if kind == "token":
        return TokenEvent(fragment.token)
    if kind == "step":
        return StepEvent(fragment.step)
    if kind == "sources":
        return SourcesEvent(list(fragment.sources.chunks), dict(fragment.sources.timings_ms))
    return DoneEvent(fragment.done)


class PendingQueries:
    """Per-query queues of reply events, registered (with the query's tenant) before the query is published.

    The tenants of the last `remember_closed` closed queries are kept, so that `owner` still knows them."""

    def __init__(self, remember_closed: int = 10_000) -> None:
        self._queues: dict[str, asyncio.Queue[ReplyEvent]] = {}
        self._owners: dict[str, str] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._remember_closed = remember_closed

    def open(self, query_id: str, tenant_id: str = "") -> asyncio.Queue[ReplyEvent]:
        """`tenant_id` empty: no token's tenant owns the query, so no worker can answer it over gRPC."""
        queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()
        self._queues[query_id] = queue
        self._owners[query_id] = tenant_id
        return queue

    def close(self, query_id: str) -> None:
        self._queues.pop(query_id, None)
        owner = self._owners.pop(query_id, None)
        if owner is not None:
            self._closed[query_id] = owner
            while len(self._closed) > self._remember_closed:
                self._closed.popitem(last=False)

    def owner(self, query_id: str) -> str | None:
        """The tenant of an open or recently closed query; None when unknown."""
        return self._owners.get(query_id, self._closed.get(query_id))

    def deliver(self, query_id: str, event: ReplyEvent) -> bool:
        queue = self._queues.get(query_id)
        if queue is None:
            return False
        queue.put_nowait(event)
        return True

    def __len__(self) -> int:
        return len(self._queues)


class ReplyServicer(services_pb2_grpc.ReplyServiceServicer):
    def __init__(self, pending: PendingQueries) -> None:
        self._pending = pending

    async def DeliverSources(
        self,
        request: services_pb2.SourcesReply,
        context: grpc.aio.ServicerContext[services_pb2.SourcesReply, services_pb2.ReplyAck],
    ) -> services_pb2.ReplyAck:
        await self._admit(request.query_id, context)
        event = SourcesEvent(list(request.chunks), dict(request.timings_ms))
        return services_pb2.ReplyAck(accepted=self._pending.deliver(request.query_id, event))

    async def StreamAnswer(
        self,
        request_iterator: AsyncIterator[services_pb2.AnswerFragment],
        context: grpc.aio.ServicerContext[services_pb2.AnswerFragment, services_pb2.ReplyAck],
    ) -> services_pb2.ReplyAck:
        accepted = True
        async for fragment in request_iterator:
            await self._admit(fragment.query_id, context)
            accepted = self._pending.deliver(fragment.query_id, fragment_event(fragment)) and accepted
        return services_pb2.ReplyAck(accepted=accepted)

    async def DeliverFailure(
        self,
        request: services_pb2.QueryFailure,
        context: grpc.aio.ServicerContext[services_pb2.QueryFailure, services_pb2.ReplyAck],
    ) -> services_pb2.ReplyAck:
        await self._admit(request.query_id, context)
        event = FailureEvent(request.stage, request.reason)
        return services_pb2.ReplyAck(accepted=self._pending.deliver(request.query_id, event))

    async def _admit(self, query_id: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Refuse unless the query is (or just was) open for the caller's tenant; unknown and foreign ids get
        one answer."""
        caller = current_caller()
        if self._pending.owner(query_id) != caller.tenant:
            FOREIGN_REPLIES.inc()
            log.warning("reply refused", query_id=query_id[:64], tenant_id=caller.tenant, issuer=caller.issuer)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no such query for the token's tenant")

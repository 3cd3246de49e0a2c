"""Waiting queries and the ReplyService that workers call to answer them.

Each gateway instance serves ReplyService on its own address and names it in `QueryRequested.reply_to`;
retrieve delivers the sources, generate streams the answer. Events for a query nobody waits for any more
(client gone, deadline passed) are refused with `accepted=false`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc


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


ReplyEvent = SourcesEvent | TokenEvent | DoneEvent | FailureEvent


class PendingQueries:
    """Per-query queues of reply events, registered before the query is published."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[ReplyEvent]] = {}

    def open(self, query_id: str) -> asyncio.Queue[ReplyEvent]:
        queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()
        self._queues[query_id] = queue
        return queue

    def close(self, query_id: str) -> None:
        self._queues.pop(query_id, None)

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
        event = SourcesEvent(list(request.chunks), dict(request.timings_ms))
        return services_pb2.ReplyAck(accepted=self._pending.deliver(request.query_id, event))

    async def StreamAnswer(
        self,
        request_iterator: AsyncIterator[services_pb2.AnswerFragment],
        context: grpc.aio.ServicerContext[services_pb2.AnswerFragment, services_pb2.ReplyAck],
    ) -> services_pb2.ReplyAck:
        accepted = True
        async for fragment in request_iterator:
            kind = fragment.WhichOneof("event")
            event: ReplyEvent = TokenEvent(fragment.token) if kind == "token" else DoneEvent(fragment.done)
            accepted = self._pending.deliver(fragment.query_id, event) and accepted
        return services_pb2.ReplyAck(accepted=accepted)

    async def DeliverFailure(
        self,
        request: services_pb2.QueryFailure,
        context: grpc.aio.ServicerContext[services_pb2.QueryFailure, services_pb2.ReplyAck],
    ) -> services_pb2.ReplyAck:
        event = FailureEvent(request.stage, request.reason)
        return services_pb2.ReplyAck(accepted=self._pending.deliver(request.query_id, event))

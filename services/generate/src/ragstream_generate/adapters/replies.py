"""Streams answers to the waiting gateway over ReplyService.StreamAnswer (a client-streaming RPC), through the
shared `GrpcReplyClient` (allowed targets, tenant tokens, channel cache, timeouts, failures logged and never
raised). Every call acts for the tenant of the query it answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rag.v1 import queries_pb2, services_pb2
from ragstream_common.reply_client import GrpcReplyClient

_END = None
STAGE = "generate"


class GrpcAnswerStream:
    def __init__(self, client: GrpcReplyClient, address: str, query_id: str, tenant_id: str) -> None:
        self._query_id = query_id
        self._queue: asyncio.Queue[services_pb2.AnswerFragment | None] = asyncio.Queue()
        # The call runs alongside the backend; the client bounds it with its answer-stream timeout.
        self._call = asyncio.ensure_future(client.stream_answer(address, query_id, self._fragments(), tenant_id))

    async def _fragments(self) -> AsyncIterator[services_pb2.AnswerFragment]:
        """Queued fragments in order. Tokens already waiting together (an extractive answer arrives all at once)
        travel as one message; an LLM's tokens, arriving one by one, still stream one by one."""
        held: list[services_pb2.AnswerFragment | None] = []
        while True:
            fragment = held.pop() if held else await self._queue.get()
            if fragment is _END:
                return
            if fragment.WhichOneof("event") == "token":
                pieces = [fragment.token]
                while not self._queue.empty():
                    following = self._queue.get_nowait()
                    if following is _END or following.WhichOneof("event") != "token":
                        held.append(following)
                        break
                    pieces.append(following.token)
                fragment = services_pb2.AnswerFragment(query_id=self._query_id, token="".join(pieces))
            yield fragment

    async def token(self, text: str) -> None:
        if not self._call.done():
            self._queue.put_nowait(services_pb2.AnswerFragment(query_id=self._query_id, token=text))

    async def step(self, step: queries_pb2.AgentStep) -> None:
        if not self._call.done():
            self._queue.put_nowait(services_pb2.AnswerFragment(query_id=self._query_id, step=step))

    async def sources(self, reply: services_pb2.SourcesReply) -> None:
        if not self._call.done():
            self._queue.put_nowait(services_pb2.AnswerFragment(query_id=self._query_id, sources=reply))

    async def done(self, answer: queries_pb2.AnswerProduced) -> None:
        self._queue.put_nowait(services_pb2.AnswerFragment(query_id=self._query_id, done=answer))
        self._queue.put_nowait(_END)
        # A failed stream was logged by the client; the answer still goes out on Kafka.
        await self._call

    async def abort(self) -> None:
        self._queue.put_nowait(_END)
        await self._call


class GrpcReplyChannel:
    """Implements `ReplyChannel` over the shared reply client."""

    def __init__(self, client: GrpcReplyClient) -> None:
        self._client = client

    def open(self, address: str, query_id: str, tenant_id: str) -> GrpcAnswerStream:
        return GrpcAnswerStream(self._client, address, query_id, tenant_id)

    async def fail(self, address: str, query_id: str, reason: str, tenant_id: str) -> None:
        failure = services_pb2.QueryFailure(query_id=query_id, stage=STAGE, reason=reason)
        await self._client.deliver_failure(address, failure, tenant_id)

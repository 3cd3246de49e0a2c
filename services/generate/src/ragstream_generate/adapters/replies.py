"""Streams answers to the waiting gateway over ReplyService.StreamAnswer (a client-streaming RPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from rag.v1 import queries_pb2, services_pb2
from ragstream_common.logs import get_logger
from ragstream_common.reply_client import ReplyClients

log = get_logger(__name__)
_END = None


class GrpcAnswerStream:
    def __init__(self, clients: ReplyClients, address: str, query_id: str, timeout_s: float) -> None:
        self._query_id = query_id
        self._address = address
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[services_pb2.AnswerFragment | None] = asyncio.Queue()
        self._call = asyncio.ensure_future(clients.stub(address).StreamAnswer(self._fragments(), timeout=timeout_s))

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

    async def done(self, answer: queries_pb2.AnswerProduced) -> None:
        self._queue.put_nowait(services_pb2.AnswerFragment(query_id=self._query_id, done=answer))
        self._queue.put_nowait(_END)
        try:
            ack = await asyncio.wait_for(self._call, self._timeout_s)
            if not ack.accepted:
                log.info("gateway no longer waits for the answer", query_id=self._query_id)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            # The answer still goes out on Kafka; only the live stream is lost.
            log.warning("answer stream to gateway failed", address=self._address, error=repr(exc))


class GrpcReplyChannel:
    def __init__(self, clients: ReplyClients, timeout_s: float = 60.0) -> None:
        self._clients = clients
        self._timeout_s = timeout_s

    def open(self, address: str, query_id: str) -> GrpcAnswerStream:
        return GrpcAnswerStream(self._clients, address, query_id, self._timeout_s)

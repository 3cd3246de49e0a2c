"""What the generate handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rag.v1 import queries_pb2
from ragstream_common.kafka import OutgoingEvent


class AnswerStream(Protocol):
    """One answer on its way to the gateway instance that waits for it."""

    async def token(self, text: str) -> None: ...

    async def done(self, answer: queries_pb2.AnswerProduced) -> None: ...


class ReplyChannel(Protocol):
    def open(self, address: str, query_id: str) -> AnswerStream: ...


class EventSink(Protocol):
    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None: ...

"""The event vocabulary handlers speak, free of any transport: no aiokafka, no topic names, no partition keys.

Handlers receive typed `Envelope`s and hand what they produce to an `EventSink` as `Emitted` messages. The Kafka
adapter (`ragstream_common.kafka.routing`) picks each message's topic and partition key; the consumer adapter
(`ragstream_common.kafka.consumer`) builds the envelopes. `OutgoingEvent` is the adapter-level record: topic, key
and message, as the publisher sends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.message import Message
from opentelemetry import context as otel_context

M = TypeVar("M", bound=Message)
PROTOBUF = "application/protobuf"


class PermanentError(Exception):
    """The event can never succeed (bad content, broken contract): dead-letter it, do not retry."""


@dataclass(frozen=True)
class Envelope(Generic[M]):
    """One received event: the typed message plus its CloudEvents attributes and position."""

    message: M
    key: str
    event_id: str
    event_type: str
    source: str
    time: datetime | None
    topic: str
    partition: int
    offset: int
    # The trace this event belongs to; handlers pass it on to what they emit.
    trace_context: otel_context.Context = field(compare=False, repr=False)


BatchHandler = Callable[[Sequence[Envelope[Any]]], Awaitable[None]]


@dataclass(frozen=True)
class Emitted:
    """A message a handler produced; `context` is the trace it continues (None: the current one)."""

    message: Message
    context: otel_context.Context | None = None


class EventSink(Protocol):
    """Where handlers put what they produce; returns once every event is durably accepted."""

    async def emit(self, events: Sequence[Emitted]) -> None: ...


@dataclass(frozen=True)
class OutgoingEvent:
    """A record as the publisher sends it: chosen topic and partition key, typed message."""

    topic: str
    key: str
    message: Message
    # The trace this event continues; defaults to the current context.
    context: otel_context.Context | None = None
    content_type: str = PROTOBUF


class RecordPublisher(Protocol):
    """What the routing sink and the gateway need of a publisher: send records, return once acknowledged."""

    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None: ...

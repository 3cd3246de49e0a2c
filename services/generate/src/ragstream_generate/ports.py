"""What the generate handler needs from the outside world (adapters implement these; tests fake them).

- `AnswerBackend` (backends/base.py): streams answer text, then one structured draft.
- `ReplyChannel` / `AnswerStream`: the live answer to the gateway instance named in `QueryRequested.reply_to`.
- `EventSink` (ragstream_common.events): where produced `AnswerProduced` messages go (Kafka in production).
"""

from __future__ import annotations

from typing import Protocol

from rag.v1 import queries_pb2, services_pb2
from ragstream_common.events import EventSink

from ragstream_generate.backends.base import AnswerBackend

__all__ = ["AnswerBackend", "AnswerStream", "EventSink", "ReplyChannel"]


class AnswerStream(Protocol):
    """One answer on its way to the gateway instance that waits for it: (AGENT mode: steps, then sources),
    tokens, then exactly one `done`.
    Either may raise when the gateway is unreachable; the handler then drops the live stream."""

    async def token(self, text: str) -> None: ...

    async def done(self, answer: queries_pb2.AnswerProduced) -> None: ...

    async def step(self, step: queries_pb2.AgentStep) -> None:
        """AGENT mode: a completed step, before the sources and the answer."""
        ...

    async def sources(self, reply: services_pb2.SourcesReply) -> None:
        """AGENT mode: every step's sources, once, before the answer's first token."""
        ...

    async def abort(self) -> None:
        """End the stream without an answer (the backend failed half-way)."""
        ...


class ReplyChannel(Protocol):
    """Every call acts for `tenant_id`, the tenant of the query (the gateway refuses replies for another's)."""

    def open(self, address: str, query_id: str, tenant_id: str) -> AnswerStream: ...

    async def fail(self, address: str, query_id: str, reason: str, tenant_id: str) -> None:
        """Tell the waiting gateway the query failed, so its caller hears it now rather than at the deadline;
        failures to deliver are logged, never raised."""
        ...

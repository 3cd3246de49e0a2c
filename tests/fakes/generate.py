"""Fakes of the generate handler's ports: a reply channel recording what each gateway stream received, and an
answer backend that plays a script per question."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rag.v1 import queries_pb2, services_pb2
from ragstream_generate.backends.base import AnswerEvent

FailAt = Literal["open", "token", "done"]


@dataclass
class RecordingAnswerStream:
    """`AnswerStream` keeping ("token", text) and ("done", answer) in arrival order; `fail_at` makes that call
    raise (a gateway gone, or one that stopped waiting)."""

    address: str
    query_id: str
    fail_at: FailAt | None = None
    received: list[tuple[str, object]] = field(default_factory=list)
    tenant_id: str = ""

    async def token(self, text: str) -> None:
        if self.fail_at == "token":
            raise ConnectionError("gateway stopped waiting")
        self.received.append(("token", text))

    async def done(self, answer: queries_pb2.AnswerProduced) -> None:
        if self.fail_at == "done":
            raise ConnectionError("gateway stopped waiting")
        self.received.append(("done", answer))

    async def abort(self) -> None:
        self.received.append(("abort", None))

    async def step(self, step: queries_pb2.AgentStep) -> None:
        self.received.append(("step", step))

    async def sources(self, reply: services_pb2.SourcesReply) -> None:
        self.received.append(("sources", reply))

    def kinds(self) -> list[str]:
        """What arrived, in order, with runs of tokens folded into one "token"."""
        kinds: list[str] = []
        for kind, _ in self.received:
            if not (kind == "token" and kinds and kinds[-1] == "token"):
                kinds.append(kind)
        return kinds

    def tokens(self) -> list[str]:
        return [str(value) for kind, value in self.received if kind == "token"]

    def answer(self) -> queries_pb2.AnswerProduced | None:
        done = [value for kind, value in self.received if kind == "done"]
        assert len(done) <= 1, "more than one done on a stream"
        return done[0] if done and isinstance(done[0], queries_pb2.AnswerProduced) else None


@dataclass
class RecordingReplyChannel:
    """`ReplyChannel` whose streams record what they receive; `fail_at` applies to every stream it opens."""

    fail_at: FailAt | None = None
    streams: list[RecordingAnswerStream] = field(default_factory=list)
    # (address, query_id, reason) of every failure reported to a gateway, and the tenant each acted for.
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    failure_tenants: list[str] = field(default_factory=list)

    async def fail(self, address: str, query_id: str, reason: str, tenant_id: str) -> None:
        self.failures.append((address, query_id, reason))
        self.failure_tenants.append(tenant_id)

    def open(self, address: str, query_id: str, tenant_id: str) -> RecordingAnswerStream:
        if self.fail_at == "open":
            raise ConnectionError(f"{address} unreachable")
        stream = RecordingAnswerStream(address, query_id, self.fail_at, tenant_id=tenant_id)
        self.streams.append(stream)
        return stream

    def stream_for(self, query_id: str) -> RecordingAnswerStream:
        [stream] = [s for s in self.streams if s.query_id == query_id]
        return stream


@dataclass
class ScriptedBackend:
    """`AnswerBackend` that plays each question's script: its events in order; an exception in the script is
    raised at that point (a backend failing up front or mid-stream). `questions` records every call."""

    scripts: dict[str, Sequence[AnswerEvent | Exception]]
    name: str = "scripted"
    questions: list[str] = field(default_factory=list)

    async def stream(self, question: str, sources: Sequence[queries_pb2.ScoredChunk]) -> AsyncIterator[AnswerEvent]:
        self.questions.append(question)
        for event in self.scripts[question]:
            if isinstance(event, Exception):
                raise event
            yield event

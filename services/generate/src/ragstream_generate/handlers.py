"""Generate handler: QueryRetrieved in; the answer streamed to the waiting gateway and AnswerProduced out.

- reply_to set (an HTTP caller): the answer's tokens, then the final AnswerProduced, go live to that gateway
  instance, and nowhere else: an HTTP caller's answer is never published to Kafka, so a gateway that is gone or
  stopped waiting ends the answer with the live stream.
- reply_to empty (a Kafka caller): the AnswerProduced is emitted through the EventSink (to the tenant's own
  answers topic), all of a batch together.
Either way the tokens the backend read and wrote go out as a usage record (`<query_id>:tokens`, metering).
Expired queries are dropped without work. A query whose backend fails ends alone: counted, logged, not published
and not retried (by the time a retry ran, its caller would have given up). A query without ids breaks the
contract: PermanentError, raised before any query of the batch is worked on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeAlias

from opentelemetry import context as otel_context
from opentelemetry import trace
from rag.v1 import queries_pb2, services_pb2, usage_pb2
from ragstream_common.events import Emitted, Envelope, EventSink, PermanentError
from ragstream_common.logs import get_logger
from ragstream_common.messages import is_expired, now_timestamp
from ragstream_common.tracing import QUERY_ID_ATTRIBUTE, TENANT_ID_ATTRIBUTE
from ragstream_common.usage_records import usage_record

from ragstream_generate.agent.answering import AgentAnswerer, step_message
from ragstream_generate.backends.base import AnswerEvent, DraftAnswer
from ragstream_generate.metrics import (
    AGENT_RUNS,
    AGENT_STEPS,
    ANSWER_SECONDS,
    ANSWERS,
    CITATIONS,
    DEGRADED,
    TOKENS_STREAMED,
)
from ragstream_generate.ports import AnswerBackend, AnswerStream, ReplyChannel

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.generate")
STAGE = "generate"
# What rag.queries.retrieved.v1 carries (the consumer dead-letters anything else).
RetrievedEvent: TypeAlias = queries_pb2.QueryRetrieved


class BackendContractError(RuntimeError):
    """The backend's stream ended without its final DraftAnswer."""


def to_answer_produced(
    query_id: str, tenant_id: str, draft: DraftAnswer, sources: Sequence[queries_pb2.ScoredChunk]
) -> queries_pb2.AnswerProduced:
    answer = queries_pb2.AnswerProduced(
        query_id=query_id,
        tenant_id=tenant_id,
        answer=draft.text,
        no_answer=draft.no_answer,
        degraded=draft.degraded,
        backend=draft.backend,
        produced_at=now_timestamp(),
    )
    for ref in draft.citations:
        chunk = sources[ref.source]
        answer.citations.append(
            queries_pb2.Citation(
                index=ref.index,
                document_id=chunk.document_id,
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                snippet=ref.snippet,
                score=ref.score,
            )
        )
    return answer


async def stream_answer(
    backend: AnswerBackend,
    query_id: str,
    tenant_id: str,
    question: str,
    sources: Sequence[queries_pb2.ScoredChunk],
    on_draft: Callable[[DraftAnswer], None] | None = None,
) -> AsyncIterator[str | queries_pb2.AnswerProduced]:
    """Tokens as the backend produces them, then the structured AnswerProduced (shared with the gRPC API);
    `on_draft` sees the backend's final draft (what it cost in tokens, which the answer does not carry)."""
    events = backend.stream(question, sources)
    async for event in produced_answer(events, backend.name, query_id, tenant_id, sources, on_draft):
        yield event


async def produced_answer(
    events: AsyncIterator[AnswerEvent],
    backend_name: str,
    query_id: str,
    tenant_id: str,
    sources: Sequence[queries_pb2.ScoredChunk],
    on_draft: Callable[[DraftAnswer], None] | None = None,
) -> AsyncIterator[str | queries_pb2.AnswerProduced]:
    """`events` with their final draft turned into the AnswerProduced citing `sources`."""
    answered = False
    async for event in events:
        if isinstance(event, DraftAnswer):
            answered = True
            if on_draft is not None:
                on_draft(event)
            yield to_answer_produced(query_id, tenant_id, event, sources)
        else:
            yield event
    if not answered:
        raise BackendContractError(f"backend {backend_name} ended without a final answer")


async def answer_batch(
    batch: Sequence[Envelope[RetrievedEvent]],
    backend: AnswerBackend,
    replies: ReplyChannel,
    sink: EventSink,
    agent: AgentAnswerer | None = None,
) -> None:
    """Answer the batch's queries concurrently (LLM backends are I/O bound); emit all answers in batch order,
    then their usage records. AGENT queries go through `agent` (without one they are answered single-shot)."""
    for envelope in batch:
        _validate(envelope.message.query)
    answered = await asyncio.gather(*(_answer_query(envelope, backend, replies, agent) for envelope in batch))
    answers = [answer for answer, _ in answered if answer is not None]
    await sink.emit(answers + [usage for _, usage in answered if usage is not None])


def _validate(query: queries_pb2.QueryRequested) -> None:
    missing = [name for name in ("query_id", "tenant_id") if not getattr(query, name)]
    if missing:
        raise PermanentError(f"QueryRetrieved without {' and '.join(missing)}")


async def _answer_query(
    envelope: Envelope[RetrievedEvent], backend: AnswerBackend, replies: ReplyChannel, agent: AgentAnswerer | None
) -> tuple[Emitted | None, Emitted | None]:
    """What answering one query emits: its answer for a Kafka caller, and its usage record."""
    query = envelope.message.query
    if is_expired(query):
        ANSWERS.labels(backend.name, "expired").inc()
        return None, None
    # Each query continues its own trace, also inside a batch (gather gives each its own context copy).
    attributes = {QUERY_ID_ATTRIBUTE: query.query_id, TENANT_ID_ATTRIBUTE: query.tenant_id}
    with tracer.start_as_current_span("generate answer", context=envelope.trace_context, attributes=attributes):
        live = LiveReply(replies, query.reply_to, query.query_id, query.tenant_id)
        drafts: list[DraftAnswer] = []
        answer = await _compose(envelope.message, backend, live, drafts.append, agent)
        usage = Emitted(_tokens_usage(query, drafts[-1]), otel_context.get_current()) if drafts else None
        # Only Kafka callers (no reply_to) get their answer as an event; HTTP callers' stay off Kafka.
        if answer is None or query.reply_to:
            return None, usage
        return Emitted(answer, otel_context.get_current()), usage


def _tokens_usage(query: queries_pb2.QueryRequested, draft: DraftAnswer) -> usage_pb2.UsageRecorded:
    """The tokens answering the query cost, for metering: counted once per query id."""
    return usage_record(
        query.tenant_id,
        f"{query.query_id}:tokens",
        "generate",
        occurred_at=query.requested_at,
        tokens_in=draft.tokens_in,
        tokens_out=draft.tokens_out,
    )


async def _compose(
    retrieved: queries_pb2.QueryRetrieved,
    backend: AnswerBackend,
    live: LiveReply,
    on_draft: Callable[[DraftAnswer], None] | None = None,
    agent: AgentAnswerer | None = None,
) -> queries_pb2.AnswerProduced | None:
    query = retrieved.query
    started = time.perf_counter()
    try:
        if agent is not None and query.mode == queries_pb2.QUERY_MODE_AGENT:
            answer = await _agent_answer(retrieved, agent, live, on_draft)
        else:
            answer = await _relay(
                stream_answer(backend, query.query_id, query.tenant_id, query.question, retrieved.chunks, on_draft),
                live,
            )
    except Exception as exc:  # a failing backend ends this query only, never the batch
        ANSWERS.labels(backend.name, "failed").inc()
        log.error("answer failed", query_id=query.query_id, tenant_id=query.tenant_id, error=repr(exc))
        await live.fail(f"{type(exc).__name__}: {exc}"[:500])
        return None
    elapsed = time.perf_counter() - started
    answer.timings_ms.update(query.timings_ms)
    answer.timings_ms[STAGE] = elapsed * 1000
    await live.done(answer)
    _count(answer, elapsed)
    return answer


async def _agent_answer(
    retrieved: queries_pb2.QueryRetrieved,
    agent: AgentAnswerer,
    live: LiveReply,
    on_draft: Callable[[DraftAnswer], None] | None,
) -> queries_pb2.AnswerProduced:
    """Steps and sources go live as the agent runs; the answer follows, carrying the steps and why they ended."""
    query = retrieved.query
    outcome = await agent.run(retrieved, live)
    sources = outcome.state.sources
    events = produced_answer(agent.answer(outcome), "agent", query.query_id, query.tenant_id, sources, on_draft)
    answer = await _relay(events, live)
    answer.steps.extend(step_message(step) for step in outcome.state.steps)
    answer.exit_reason = outcome.exit_reason.value
    AGENT_RUNS.labels(outcome.planner, outcome.exit_reason.value).inc()
    AGENT_STEPS.observe(len(outcome.state.steps))
    return answer


async def _relay(
    events: AsyncIterator[str | queries_pb2.AnswerProduced], live: LiveReply
) -> queries_pb2.AnswerProduced:
    """Tokens go live as they come; the stream's final AnswerProduced is returned."""
    answer: queries_pb2.AnswerProduced | None = None
    async for event in events:
        if isinstance(event, str):
            await live.token(event)
        else:
            answer = event
    if answer is None:  # stream_answer raises first; kept for the type checker
        raise BackendContractError("no final answer")
    return answer


def _count(answer: queries_pb2.AnswerProduced, elapsed_s: float) -> None:
    ANSWERS.labels(answer.backend, "no_answer" if answer.no_answer else "answered").inc()
    ANSWER_SECONDS.labels(answer.backend).observe(elapsed_s)
    CITATIONS.observe(len(answer.citations))
    if answer.degraded:
        DEGRADED.inc()


class LiveReply:
    """The answer's live stream to the gateway that waits for it; nothing without a reply address.

    Opened at the backend's first event, so a backend failing up front holds no call open. A stream that fails
    (gateway gone, unreachable, or no longer waiting) is dropped: only the live view is lost, never the answer.
    """

    def __init__(self, replies: ReplyChannel, address: str, query_id: str, tenant_id: str) -> None:
        self._replies = replies
        self._address = address
        self._query_id = query_id
        self._tenant_id = tenant_id  # the gateway takes replies for the query's own tenant only
        self._stream: AnswerStream | None = None
        self._lost = not address

    async def token(self, text: str) -> None:
        if await self._send(lambda stream: stream.token(text)):
            TOKENS_STREAMED.inc()

    async def done(self, answer: queries_pb2.AnswerProduced) -> None:
        await self._send(lambda stream: stream.done(answer))

    async def step(self, step: queries_pb2.AgentStep) -> None:
        await self._send(lambda stream: stream.step(step))

    async def sources(self, reply: services_pb2.SourcesReply) -> None:
        await self._send(lambda stream: stream.sources(reply))

    async def fail(self, reason: str) -> None:
        """End any open stream and report the failure, so the caller is not left waiting for its deadline."""
        if not self._address:
            return
        if self._stream is not None and not self._lost:
            await self._send(lambda stream: stream.abort())
        self._lost = True
        try:
            await self._replies.fail(self._address, self._query_id, reason, self._tenant_id)
        except Exception as exc:  # reporting is best effort: the gateway's deadline still ends the query
            log.warning("could not report the failure", query_id=self._query_id, error=repr(exc))

    async def _send(self, deliver: Callable[[AnswerStream], Awaitable[None]]) -> bool:
        if self._lost:
            return False
        try:
            if self._stream is None:
                self._stream = self._replies.open(self._address, self._query_id, self._tenant_id)
            await deliver(self._stream)
        except Exception as exc:  # the gateway's trouble must not cost the Kafka answer
            self._lost = True
            log.warning("live answer stream lost", query_id=self._query_id, address=self._address, error=repr(exc))
            return False
        return True

"""Publishes a query and follows its replies until the answer, a failure or the deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from rag.v1 import queries_pb2, usage_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.messages import now_timestamp
from ragstream_common.tracing import QUERY_ID_ATTRIBUTE
from ragstream_common.usage_records import usage_record

from ragstream_gateway.query.models import QueryFiltersBody, QueryMode
from ragstream_gateway.query.replies import (
    DoneEvent,
    FailureEvent,
    PendingQueries,
    ReplyEvent,
    SourcesEvent,
    StepEvent,
)

_MODES = {
    "answer": queries_pb2.QUERY_MODE_ANSWER,
    "search": queries_pb2.QUERY_MODE_SEARCH,
    "agent": queries_pb2.QUERY_MODE_AGENT,
}
_RETRIEVAL = {
    "hybrid": queries_pb2.RETRIEVAL_MODE_HYBRID,
    "dense": queries_pb2.RETRIEVAL_MODE_DENSE,
    "lexical": queries_pb2.RETRIEVAL_MODE_LEXICAL,
}


class QueryTimeout(Exception):
    """The deadline passed before the reply was complete."""


class QueryNotPublished(Exception):
    """Kafka did not take the question in time (broker down): answered 503 at once, not at the deadline."""


@dataclass(frozen=True)
class QueryRequest:
    tenant_id: str
    question: str
    top_k: int
    filters: QueryFiltersBody | None
    mode: QueryMode
    retrieval: str
    timeout_s: float
    # Agent mode: the most retrieval steps; None leaves it to the worker (QueryRequested.max_steps 0).
    max_steps: int | None = None
    # The caller reads only the answer (one JSON body): retrieve need not send the sources.
    answer_only: bool = False

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.mode != "agent":
            raise ValueError("max_steps applies to agent mode only")
        if self.answer_only and self.mode == "search":
            raise ValueError("a search's answer is its sources")

    @property
    def search_only(self) -> bool:
        return self.mode == "search"


@dataclass
class Submission:
    query_id: str
    search_only: bool
    deadline: float
    started: float
    queue: asyncio.Queue[ReplyEvent]


class QueryDispatcher:
    """Emits QueryRequested naming this instance's ReplyService, then reads the replies `pending` collects.

    `publisher` is any `EventSink`; the composition root routes QueryRequested to its Kafka topic."""

    def __init__(
        self, publisher: EventSink, pending: PendingQueries, reply_address: str, publish_timeout_s: float = 2.0
    ) -> None:
        self._sink = publisher
        self._pending = pending
        self._reply_address = reply_address
        self._publish_timeout_s = publish_timeout_s

    async def submit(self, request: QueryRequest) -> Submission:
        query_id = uuid.uuid4().hex
        started = time.monotonic()
        # The request's server span (request_tracing.py) names the question, as retrieve's and generate's do.
        trace.get_current_span().set_attribute(QUERY_ID_ATTRIBUTE, query_id)
        queue = self._pending.open(query_id, request.tenant_id)
        deadline = Timestamp()
        deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=request.timeout_s))
        message = queries_pb2.QueryRequested(
            query_id=query_id,
            tenant_id=request.tenant_id,
            question=request.question,
            top_k=request.top_k,
            mode=_MODES[request.mode],
            max_steps=request.max_steps or 0,
            answer_only=request.answer_only,
            retrieval=_RETRIEVAL[request.retrieval],
            reply_to=self._reply_address,
            deadline=deadline,
            requested_at=now_timestamp(),
        )
        if request.filters:
            message.filters.document_ids.extend(request.filters.document_ids)
            message.filters.metadata.update(request.filters.metadata)
        try:
            # The producer would wait for a broker up to its request timeout; a question cannot wait that long.
            async with asyncio.timeout(self._publish_timeout_s):
                await self._sink.emit([Emitted(message), Emitted(query_usage(message))])
        except Exception as exc:
            self._pending.close(query_id)
            raise QueryNotPublished(f"the question was not accepted by Kafka: {type(exc).__name__}") from exc
        except BaseException:
            self._pending.close(query_id)
            raise
        return Submission(query_id, request.search_only, started + request.timeout_s, started, queue)

    async def follow(self, submission: Submission, sources_first: bool = False) -> AsyncIterator[ReplyEvent]:
        """Reply events in arrival order; ends after the final one, raises QueryTimeout at the deadline.

        With `sources_first` (the SSE stream promises `sources` before `token`s) answer events that overtook the
        sources are held until the sources arrive: they come from retrieve and the answer from generate, over two
        independent gRPC calls. A complete answer waits at most SOURCES_GRACE_S for them, then goes out alone.
        (Agent mode sends steps, sources and answer in order on one stream: nothing is held there.)"""
        order = SourcesFirst() if sources_first and not submission.search_only else None
        try:
            while True:
                wait = submission.deadline - time.monotonic()
                if order is not None and order.answer_complete:
                    wait = min(wait, order.grace_left())
                try:
                    event = await asyncio.wait_for(submission.queue.get(), max(wait, 0))
                except TimeoutError as exc:
                    if order is not None and order.answer_complete:
                        for held in order.release():
                            yield held
                        return
                    raise QueryTimeout(submission.query_id) from exc
                for ready in order.admit(event) if order is not None else (event,):
                    yield ready
                    if _is_last(ready, submission):
                        return
        finally:
            self._pending.close(submission.query_id)


SOURCES_GRACE_S = 1.0


class SourcesFirst:
    """Holds answer events (tokens, done) until the sources event has been let through; agent steps, which come
    before the sources, and failures are never held."""

    def __init__(self) -> None:
        self._held: list[ReplyEvent] = []
        self._sources_seen = False
        self._done_at: float | None = None

    @property
    def answer_complete(self) -> bool:
        return self._done_at is not None

    def grace_left(self) -> float:
        return SOURCES_GRACE_S - (time.monotonic() - (self._done_at or time.monotonic()))

    def admit(self, event: ReplyEvent) -> list[ReplyEvent]:
        """The events to pass on now, in order."""
        if self._sources_seen or isinstance(event, FailureEvent | StepEvent):
            return [event]
        if isinstance(event, SourcesEvent):
            self._sources_seen = True
            return [event, *self.release()]
        self._held.append(event)
        if isinstance(event, DoneEvent):
            self._done_at = time.monotonic()
        return []

    def release(self) -> list[ReplyEvent]:
        held, self._held = self._held, []
        return held


def query_usage(query: queries_pb2.QueryRequested) -> usage_pb2.UsageRecorded:
    """The question or search this query is, for metering: counted once per query id (an agent query is one
    question, however many searches it runs)."""
    what = "search" if query.mode == queries_pb2.QUERY_MODE_SEARCH else "question"
    quantity = {"searches" if what == "search" else "questions": 1}
    return usage_record(
        query.tenant_id, f"{query.query_id}:{what}", "gateway", occurred_at=query.requested_at, **quantity
    )


def _is_last(event: ReplyEvent, submission: Submission) -> bool:
    return isinstance(event, DoneEvent | FailureEvent) or (isinstance(event, SourcesEvent) and submission.search_only)


def total_timings(submission: Submission, stage_timings: dict[str, float]) -> dict[str, float]:
    """Stage timings plus the end-to-end time and what the hops between stages cost."""
    total = (time.monotonic() - submission.started) * 1000
    timings = dict(stage_timings)
    timings["total"] = total
    timings["transport"] = max(0.0, total - sum(stage_timings.values()))
    return timings

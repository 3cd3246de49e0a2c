"""The SSE stream's order: sources before tokens, even when the answer overtakes the sources; agent steps, which
precede the sources, are never held."""

from __future__ import annotations

import asyncio
import time

import pytest
from rag.v1 import queries_pb2
from ragstream_gateway.query import service
from ragstream_gateway.query.replies import (
    DoneEvent,
    FailureEvent,
    PendingQueries,
    SourcesEvent,
    StepEvent,
    TokenEvent,
)
from ragstream_gateway.query.service import QueryDispatcher, SourcesFirst, Submission

pytestmark = pytest.mark.unit

SOURCES = SourcesEvent([queries_pb2.ScoredChunk(chunk_id="c1")])
DONE = DoneEvent(queries_pb2.AnswerProduced(answer="It is 5,895 m high [1]."))


def _submission(pending: PendingQueries, *events: object, timeout_s: float = 5.0) -> Submission:
    queue = pending.open("q1")
    for event in events:
        queue.put_nowait(event)  # type: ignore[arg-type]
    now = time.monotonic()
    return Submission("q1", False, now + timeout_s, now, queue)


async def _follow(submission: Submission, pending: PendingQueries, sources_first: bool) -> list[object]:
    dispatcher = QueryDispatcher(publisher=None, pending=pending, reply_address="gw:1")
    return [event async for event in dispatcher.follow(submission, sources_first=sources_first)]


async def test_an_answer_that_overtakes_the_sources_is_held_until_they_arrive() -> None:
    pending = PendingQueries()
    submission = _submission(pending, TokenEvent("It is "), TokenEvent("5,895 m"), DONE)
    asyncio.get_running_loop().call_later(0.05, pending.deliver, "q1", SOURCES)
    events = await _follow(submission, pending, sources_first=True)
    assert events == [SOURCES, TokenEvent("It is "), TokenEvent("5,895 m"), DONE]
    assert len(pending) == 0


async def test_without_sources_a_complete_answer_goes_out_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "SOURCES_GRACE_S", 0.05)
    pending = PendingQueries()
    started = time.monotonic()
    events = await _follow(_submission(pending, TokenEvent("x"), DONE), pending, sources_first=True)
    assert events == [TokenEvent("x"), DONE]
    assert time.monotonic() - started < 2.0


async def test_sources_that_arrive_first_pass_straight_through_and_failures_are_never_held() -> None:
    pending = PendingQueries()
    in_order = await _follow(_submission(pending, SOURCES, TokenEvent("a"), DONE), pending, sources_first=True)
    assert in_order == [SOURCES, TokenEvent("a"), DONE]
    failure = FailureEvent("generate", "backend down")
    failed = await _follow(_submission(pending, TokenEvent("a"), failure), pending, sources_first=True)
    assert failed == [failure]


async def test_the_json_answer_does_not_wait_for_sources() -> None:
    pending = PendingQueries()
    events = await _follow(_submission(pending, TokenEvent("a"), DONE), pending, sources_first=False)
    assert events == [TokenEvent("a"), DONE]


async def test_a_deadline_with_no_answer_is_still_a_timeout() -> None:
    pending = PendingQueries()
    with pytest.raises(service.QueryTimeout):
        await _follow(_submission(pending, TokenEvent("a"), timeout_s=0.05), pending, sources_first=True)


STEP_1 = StepEvent(queries_pb2.AgentStep(step=1, query="How high is Kilimanjaro?", new_sources=1))
STEP_2 = StepEvent(queries_pb2.AgentStep(step=2, query="Kibo summit height", reason="the summit", new_sources=0))


def test_agent_steps_pass_straight_through_ahead_of_the_sources() -> None:
    order = SourcesFirst()
    assert order.admit(STEP_1) == [STEP_1]
    assert order.admit(TokenEvent("It is ")) == []  # an answer event still waits for the sources
    assert order.admit(STEP_2) == [STEP_2]
    assert order.admit(SOURCES) == [SOURCES, TokenEvent("It is ")]
    assert order.admit(DONE) == [DONE]


async def test_an_agent_stream_keeps_its_order_step_sources_token_done() -> None:
    pending = PendingQueries()
    arrived = (STEP_1, STEP_2, SOURCES, TokenEvent("5,895 m"), DONE)
    events = await _follow(_submission(pending, *arrived), pending, sources_first=True)
    assert events == list(arrived)
    assert len(pending) == 0

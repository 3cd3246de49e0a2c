"""Submitting a question: published through the sink in its mode (agent mode with its step budget), or refused
at once when Kafka does not take it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from fakes import RecordingSink
from rag.v1 import queries_pb2, usage_pb2
from ragstream_common.events import Emitted
from ragstream_gateway.query.models import QueryMode
from ragstream_gateway.query.replies import PendingQueries
from ragstream_gateway.query.service import QueryDispatcher, QueryNotPublished, QueryRequest

pytestmark = pytest.mark.unit


def _request(timeout_s: float = 30.0, mode: QueryMode = "answer", max_steps: int | None = None) -> QueryRequest:
    return QueryRequest("t1", "How high is Kilimanjaro?", 5, None, mode, "hybrid", timeout_s, max_steps)


class HangingSink:
    """A producer waiting for a broker that is gone."""

    async def emit(self, events: Sequence[Emitted]) -> None:
        await asyncio.sleep(3600)


async def test_a_question_is_published_naming_this_gateway_with_its_deadline() -> None:
    sink, pending = RecordingSink(), PendingQueries()
    submission = await QueryDispatcher(sink, pending, "gw:50050").submit(_request())
    [message] = sink.messages(queries_pb2.QueryRequested)
    assert (message.query_id, message.tenant_id, message.reply_to) == (submission.query_id, "t1", "gw:50050")
    assert message.HasField("deadline") and len(pending) == 1


async def test_a_broker_that_does_not_answer_fails_the_question_within_the_publish_timeout() -> None:
    pending = PendingQueries()
    started = time.monotonic()
    with pytest.raises(QueryNotPublished):
        await QueryDispatcher(HangingSink(), pending, "gw:1", publish_timeout_s=0.1).submit(_request())
    assert time.monotonic() - started < 5  # generous: the point is "not the 30 s deadline"
    assert len(pending) == 0


async def test_a_failed_publish_is_refused_and_leaves_nothing_pending() -> None:
    pending = PendingQueries()
    with pytest.raises(QueryNotPublished, match="ConnectionError"):
        await QueryDispatcher(RecordingSink(fail_with=ConnectionError("no broker")), pending, "gw:1").submit(_request())
    assert len(pending) == 0


@pytest.mark.parametrize(
    ("mode", "max_steps", "published"),
    [
        ("answer", None, (queries_pb2.QUERY_MODE_ANSWER, 0)),
        ("search", None, (queries_pb2.QUERY_MODE_SEARCH, 0)),
        ("agent", None, (queries_pb2.QUERY_MODE_AGENT, 0)),  # 0: the worker's default step budget
        ("agent", 6, (queries_pb2.QUERY_MODE_AGENT, 6)),
    ],
)
async def test_a_query_is_published_in_its_mode_with_the_agents_step_budget(
    mode: QueryMode, max_steps: int | None, published: tuple[int, int]
) -> None:
    sink = RecordingSink()
    submission = await QueryDispatcher(sink, PendingQueries(), "gw:1").submit(_request(mode=mode, max_steps=max_steps))
    [message] = sink.messages(queries_pb2.QueryRequested)
    assert (message.mode, message.max_steps) == published
    assert submission.search_only == (mode == "search")


async def test_an_agent_query_is_metered_as_one_question() -> None:
    sink = RecordingSink()
    submission = await QueryDispatcher(sink, PendingQueries(), "gw:1").submit(_request(mode="agent", max_steps=3))
    [usage] = sink.messages(usage_pb2.UsageRecorded)
    assert (usage.usage_id, dict(usage.quantities)) == (f"{submission.query_id}:question", {"questions": 1})


def test_a_step_budget_outside_agent_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="agent"):
        _request(mode="answer", max_steps=2)


def test_a_search_cannot_skip_its_sources() -> None:
    with pytest.raises(ValueError, match="sources"):
        QueryRequest("t1", "q", 5, None, "search", "hybrid", 30.0, answer_only=True)

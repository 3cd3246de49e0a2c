"""Agent mode at the gateway: the body's checks, the answer stream's step and sources fragments, and the agent's
steps in the JSON answer and on the SSE stream (step..., sources, token..., done)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any
from unittest.mock import AsyncMock

import httpx
import pytest
from fakes import RecordingSink
from rag.v1 import queries_pb2, services_pb2
from ragstream_common.service_tokens import VerifiedToken
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.query import replies
from ragstream_gateway.query.replies import (
    DoneEvent,
    PendingQueries,
    ReplyEvent,
    ReplyServicer,
    SourcesEvent,
    StepEvent,
    TokenEvent,
)
from ragstream_gateway.query.service import QueryDispatcher
from support.sse import parse_sse
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
KEY = "agent-key"
SSE = {"Accept": "text/event-stream"}

FIRST = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", text="Kibo is the highest cone.", score=0.9)
SECOND = queries_pb2.ScoredChunk(
    chunk_id="c7", document_id="d2", text="Kibo last erupted 150,000 years ago.", score=0.7
)
STEPS = [
    queries_pb2.AgentStep(step=1, query="Which cones does Kilimanjaro have?", sources=[FIRST], new_sources=1),
    queries_pb2.AgentStep(
        step=2,
        query="Kibo last eruption",
        reason="when Kibo erupted is not known yet",
        sources=[FIRST, SECOND],
        new_sources=1,
    ),
]
ANSWER = queries_pb2.AnswerProduced(
    answer="Kibo [1] last erupted 150,000 years ago [2].",
    citations=[
        queries_pb2.Citation(index=1, document_id="d1", chunk_id="c1", snippet="Kibo", score=0.9),
        queries_pb2.Citation(index=2, document_id="d2", chunk_id="c7", snippet="150,000 years", score=0.7),
    ],
    backend="extractive",
    steps=STEPS,
    exit_reason="answered",
    timings_ms={"generate": 12.0},
)
AGENT_REPLY: list[ReplyEvent] = [
    StepEvent(STEPS[0]),
    StepEvent(STEPS[1]),
    SourcesEvent([FIRST, SECOND], {"retrieve": 3.0}),
    TokenEvent("Kibo [1] "),
    TokenEvent("last erupted 150,000 years ago [2]."),
    DoneEvent(ANSWER),
]


class WorkersReply(PendingQueries):
    """Stands in for the workers: each query opened is answered at once with `events`."""

    def __init__(self, events: Sequence[ReplyEvent]) -> None:
        super().__init__()
        self.events = list(events)

    def open(self, query_id: str, tenant_id: str = "") -> asyncio.Queue[ReplyEvent]:
        queue = super().open(query_id, tenant_id)
        for event in self.events:
            queue.put_nowait(event)
        return queue


def _client(sink: RecordingSink, events: Sequence[ReplyEvent] = AGENT_REPLY) -> httpx.AsyncClient:
    queries = QueryDispatcher(sink, WorkersReply(events), "gw:1")
    app = create_app(GatewaySettings(admin_token=None), gateway_deps(grants={KEY: grant()}), queries=queries)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gw", headers={"X-API-Key": KEY})


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def client(sink: RecordingSink) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(sink) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"question": "q", "max_steps": 2}, "max_steps applies to mode agent only"),  # answer mode by default
        ({"question": "q", "mode": "search", "max_steps": 2}, "max_steps applies to mode agent only"),
        ({"question": "q", "mode": "agent", "max_steps": 0}, "body.max_steps"),
        ({"question": "q", "mode": "agent", "max_steps": 9}, "body.max_steps"),
        ({"question": "q", "mode": "planner"}, "body.mode"),
    ],
)
async def test_max_steps_out_of_bounds_or_outside_agent_mode_is_a_422_problem(
    client: httpx.AsyncClient, sink: RecordingSink, body: dict[str, Any], names: str
) -> None:
    response = await client.post("/v1/query", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == "urn:ragstream:problem:validation" and names in problem["detail"]
    assert sink.messages(queries_pb2.QueryRequested) == []


@pytest.mark.parametrize(("max_steps", "sent"), [(None, 0), (1, 1), (8, 8)])
async def test_an_agent_question_goes_out_in_agent_mode_with_its_step_budget(
    client: httpx.AsyncClient, sink: RecordingSink, max_steps: int | None, sent: int
) -> None:
    body: dict[str, Any] = {"question": "When did Kibo last erupt?", "mode": "agent"}
    if max_steps is not None:
        body["max_steps"] = max_steps
    assert (await client.post("/v1/query", json=body)).status_code == 200
    [query] = sink.messages(queries_pb2.QueryRequested)
    assert (query.mode, query.max_steps) == (queries_pb2.QUERY_MODE_AGENT, sent)  # 0: the worker's default


@pytest.mark.parametrize(
    ("path", "body", "headers", "answer_only"),
    [
        ("/v1/query", {"question": "q"}, {}, True),  # one JSON body: its citations carry the chunks
        ("/v1/query", {"question": "q", "mode": "agent"}, {}, True),
        ("/v1/query", {"question": "q"}, SSE, False),  # the stream's `sources` event comes from retrieve
        ("/v1/query", {"question": "q", "mode": "search"}, {}, False),  # a search's answer is its sources
        ("/v1/search", {"query": "q"}, {}, False),
    ],
)
async def test_only_callers_that_show_the_sources_have_retrieve_send_them(
    client: httpx.AsyncClient,
    sink: RecordingSink,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    answer_only: bool,
) -> None:
    assert (await client.post(path, json=body, headers=headers)).status_code == 200
    [query] = sink.messages(queries_pb2.QueryRequested)
    assert query.answer_only is answer_only


async def test_the_json_answer_lists_the_steps_and_why_the_agent_stopped(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/query", json={"question": "When did Kibo last erupt?", "mode": "agent"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["answer"] == ANSWER.answer and body["exit_reason"] == "answered"
    assert [(c["index"], c["document_id"], c["chunk_id"]) for c in body["citations"]] == [
        (1, "d1", "c1"),
        (2, "d2", "c7"),
    ]
    assert body["steps"] == [
        {
            "step": 1,
            "query": "Which cones does Kilimanjaro have?",
            "reason": "",
            "sources": [{"document_id": "d1", "chunk_id": "c1", "score": 0.9}],
            "new_sources": 1,
        },
        {
            "step": 2,
            "query": "Kibo last eruption",
            "reason": "when Kibo erupted is not known yet",
            "sources": [
                {"document_id": "d1", "chunk_id": "c1", "score": 0.9},
                {"document_id": "d2", "chunk_id": "c7", "score": 0.7},
            ],
            "new_sources": 1,
        },
    ]


async def test_an_answer_outside_agent_mode_has_no_steps() -> None:
    plain = [SourcesEvent([FIRST]), TokenEvent("Kibo [1]."), DoneEvent(queries_pb2.AnswerProduced(answer="Kibo [1]."))]
    async with _client(RecordingSink(), plain) as client:
        body = (await client.post("/v1/query", json={"question": "Which cones?"})).json()
        response = await client.post("/v1/query", json={"question": "Which cones?"}, headers=SSE)
        done = parse_sse(response.text.splitlines())[-1]
    assert body["answer"] == "Kibo [1]." and "steps" not in body and "exit_reason" not in body
    assert done[0] == "done" and "steps" not in done[1] and "exit_reason" not in done[1]


async def test_the_stream_sends_steps_then_sources_then_tokens_then_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/query", json={"question": "When did Kibo erupt?", "mode": "agent"}, headers=SSE)
    assert response.status_code == 200
    events = parse_sse(response.text.splitlines())
    assert [kind for kind, _ in events] == ["step", "step", "sources", "token", "token", "done"]
    first, second = events[0][1], events[1][1]
    assert first == {
        "step": 1,
        "query": "Which cones does Kilimanjaro have?",
        "reason": "",
        "sources": [{"document_id": "d1", "chunk_id": "c1", "score": 0.9}],
        "new_sources": 1,
    }
    assert (second["step"], second["reason"], len(second["sources"])) == (2, "when Kibo erupted is not known yet", 2)
    assert [r["chunk_id"] for r in events[2][1]["results"]] == ["c1", "c7"]
    done = events[-1][1]
    assert "".join(data["text"] for kind, data in events if kind == "token") == done["answer"]
    assert done["exit_reason"] == "answered" and [s["step"] for s in done["steps"]] == [1, 2]
    assert done["steps"][1] == second


async def _fragments(*fragments: services_pb2.AnswerFragment) -> AsyncIterator[services_pb2.AnswerFragment]:
    for fragment in fragments:
        yield fragment


async def test_the_answer_stream_maps_step_and_sources_fragments_to_reply_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the token interceptor would have admitted the call (scope reply, tenant acme).
    monkeypatch.setattr(replies, "current_caller", lambda: VerifiedToken("acme", ("reply",), "generate", "generate"))
    pending = PendingQueries()
    queue = pending.open("q1", "acme")
    sources = services_pb2.SourcesReply(query_id="q1", chunks=[FIRST, SECOND], timings_ms={"retrieve": 3.0})
    ack = await ReplyServicer(pending).StreamAnswer(
        _fragments(
            services_pb2.AnswerFragment(query_id="q1", step=STEPS[0]),
            services_pb2.AnswerFragment(query_id="q1", sources=sources),
            services_pb2.AnswerFragment(query_id="q1", token="Kibo"),
            services_pb2.AnswerFragment(query_id="q1", done=ANSWER),
        ),
        AsyncMock(),
    )
    assert ack.accepted
    received = [queue.get_nowait() for _ in range(queue.qsize())]
    assert received == [
        StepEvent(STEPS[0]),
        SourcesEvent([FIRST, SECOND], {"retrieve": 3.0}),
        TokenEvent("Kibo"),
        DoneEvent(ANSWER),
    ]

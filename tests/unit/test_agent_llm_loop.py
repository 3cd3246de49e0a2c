"""The LLM planner driving the agent loop through the generate handler: the model is the chat-completions
stand-in (tool calls streamed in deltas, as the real protocol sends them), the search port the in-memory fake
(RetrieveService itself is exercised by tests/e2e/test_agent_e2e.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes import RecordingSink, envelope
from fakes.agent import InMemorySearcher
from fakes.generate import RecordingReplyChannel
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import SecretStr
from rag.v1 import queries_pb2
from ragstream_generate.agent.answering import AgentAnswerer, AgentConfig
from ragstream_generate.agent.llm_planner import LLMPlanner
from ragstream_generate.agent.rules_planner import ModelFreePlanner
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_generate.backends.openai_chat import OpenAIChatConfig
from ragstream_generate.handlers import answer_batch
from standins.openai_server import OpenAIStandin, Reply

pytestmark = pytest.mark.unit
QUESTION = "Which office does the lead of Project Falcon work from?"
DOCUMENTS = {
    "acme": [
        ("falcon", "Project Falcon is led by Dr. Maria Ortiz."),
        ("ortiz", "Dr. Maria Ortiz works from the Lisbon office."),
    ],
    "globex": [("tokyo", "Dr. Maria Ortiz works from the Tokyo office.")],
}


@pytest.fixture(scope="module")
def model() -> Iterator[OpenAIStandin]:
    with OpenAIStandin() as standin:
        yield standin


def retrieved() -> queries_pb2.QueryRetrieved:
    query = queries_pb2.QueryRequested(
        query_id="q1", tenant_id="acme", question=QUESTION, reply_to="gw:1", mode=queries_pb2.QUERY_MODE_AGENT, top_k=5
    )
    deadline = Timestamp()
    deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=30))
    query.deadline.CopyFrom(deadline)
    falcon = queries_pb2.ScoredChunk(chunk_id="falcon#0", document_id="falcon", text=DOCUMENTS["acme"][0][1])
    return queries_pb2.QueryRetrieved(query=query, chunks=[falcon])


async def ask(
    model: OpenAIStandin, *, base_url: str | None = None, token_budget: int | None = 20_000
) -> tuple[queries_pb2.AnswerProduced, InMemorySearcher]:
    config = OpenAIChatConfig(
        base_url=base_url or model.base_url, api_key=SecretStr("sk-test"), model="m", timeout_s=2, max_retries=0
    )
    llm, rules, searcher = LLMPlanner(config), ModelFreePlanner(), InMemorySearcher(DOCUMENTS)
    agent = AgentAnswerer(
        llm.run_for, searcher, ExtractiveBackend(), AgentConfig(token_budget=token_budget), fallback=lambda _: rules
    )
    replies = RecordingReplyChannel()
    try:
        await answer_batch([envelope(retrieved())], ExtractiveBackend(), replies, RecordingSink(), agent=agent)
    finally:
        await llm.aclose()
    produced = replies.stream_for("q1").answer()
    assert produced is not None
    return produced, searcher


async def test_the_model_searches_then_answers_citing_a_source_of_its_own_step(model: OpenAIStandin) -> None:
    model.script(
        Reply.tool_call("search", {"query": "Maria Ortiz office"}, prompt_tokens=50, completion_tokens=8),
        Reply.tool_call("answer", {"text": "Dr. Ortiz leads Falcon [1] and works in Lisbon [2]."}),
    )
    produced, searcher = await ask(model)
    assert [s.query for s in produced.steps] == [QUESTION, "Maria Ortiz office"]
    assert produced.answer == "Dr. Ortiz leads Falcon [1] and works in Lisbon [2]."
    assert [(c.index, c.document_id) for c in produced.citations] == [(1, "falcon"), (2, "ortiz")]
    assert produced.exit_reason == "answered" and not produced.degraded
    assert {call[0] for call in searcher.calls} == {"acme"}  # the query's tenant, whatever the model asks


async def test_a_repeated_identical_call_stops_the_loop_with_an_extractive_answer(model: OpenAIStandin) -> None:
    model.script(
        Reply.tool_call("search", {"query": "Maria Ortiz office"}),
        Reply.tool_call("search", {"query": "Maria Ortiz office"}),
    )
    produced, searcher = await ask(model)
    assert produced.exit_reason == "repeated_call" and len(searcher.calls) == 1
    assert "Lisbon" in produced.answer and produced.citations


async def test_an_endpoint_that_fails_hands_over_to_the_model_free_planner(model: OpenAIStandin) -> None:
    model.script(Reply.error(500))
    produced, _ = await ask(model)
    assert produced.degraded and "Lisbon" in produced.answer
    assert produced.steps[1].reason.startswith("bridge")


async def test_a_spent_token_budget_ends_the_loop(model: OpenAIStandin) -> None:
    model.script(Reply.tool_call("search", {"query": "Maria Ortiz office"}, prompt_tokens=900, completion_tokens=200))
    produced, searcher = await ask(model, token_budget=1000)
    assert produced.exit_reason == "token_budget" and len(produced.steps) == 2 and len(searcher.calls) == 1

"""AGENT queries through the generate handler over in-memory ports: the live order (steps, sources, tokens,
done), citations numbered across steps, the answer's steps and exit reason, written answers, usage, fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import RecordingSink, envelope
from fakes.agent import InMemorySearcher, ScriptedPlanner
from fakes.generate import RecordingReplyChannel, ScriptedBackend
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import queries_pb2, services_pb2, usage_pb2
from ragstream_generate.agent.answering import AgentAnswerer, AgentConfig
from ragstream_generate.agent.rules_planner import ModelFreePlanner, RulesPlannerConfig
from ragstream_generate.agent.state import FinalAnswer, PlannedSearch
from ragstream_generate.backends.base import CitationRef, DraftAnswer
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_generate.citations import marker_numbers
from ragstream_generate.handlers import answer_batch

pytestmark = pytest.mark.unit
GATEWAY = "gateway-0:50070"
QUESTION = "Which office does the lead of Project Falcon work from?"
DOCUMENTS = {
    "acme": [
        ("falcon", "Project Falcon is led by Dr. Maria Ortiz. The project builds the billing platform."),
        ("ortiz", "Dr. Maria Ortiz works from the Lisbon office. She joined in 2019."),
        ("kickoff", "The kickoff of the Heron project took place in the Berlin office."),
    ]
}


def retrieved(question: str = QUESTION, max_steps: int = 0, mode: int = queries_pb2.QUERY_MODE_AGENT):
    query = queries_pb2.QueryRequested(
        query_id="q1", tenant_id="acme", question=question, reply_to=GATEWAY, mode=mode, max_steps=max_steps, top_k=5
    )
    deadline = Timestamp()
    deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=30))
    query.deadline.CopyFrom(deadline)
    first = [
        queries_pb2.ScoredChunk(chunk_id="falcon#0", document_id="falcon", text=DOCUMENTS["acme"][0][1], score=0.9)
    ]
    return queries_pb2.QueryRetrieved(query=query, chunks=first)


async def answer(
    planner: ScriptedPlanner, message: queries_pb2.QueryRetrieved | None = None, searcher=None, fallback=None
) -> tuple[RecordingReplyChannel, RecordingSink, InMemorySearcher]:
    searcher = searcher or InMemorySearcher(DOCUMENTS)
    agent = AgentAnswerer(
        lambda _state: planner,
        searcher,
        ExtractiveBackend(),
        AgentConfig(),
        fallback=(lambda _state: fallback) if fallback else None,
    )
    replies, sink = RecordingReplyChannel(), RecordingSink()
    await answer_batch([envelope(message or retrieved())], ExtractiveBackend(), replies, sink, agent=agent)
    return replies, sink, searcher


def bridge() -> ScriptedPlanner:
    return ScriptedPlanner([PlannedSearch("Maria Ortiz office work", "bridge: 'Maria Ortiz' from step 1")])


async def test_the_gateway_hears_steps_then_sources_then_tokens_then_done() -> None:
    replies, _, _ = await answer(bridge())
    stream = replies.stream_for("q1")
    assert stream.kinds() == ["step", "step", "sources", "token", "done"]
    steps = [value for kind, value in stream.received if kind == "step"]
    assert [(s.step, s.query) for s in steps] == [(1, QUESTION), (2, "Maria Ortiz office work")]
    assert steps[0].reason == "the question as asked" and steps[1].new_sources >= 1
    [sources] = [value for kind, value in stream.received if kind == "sources"]
    assert isinstance(sources, services_pb2.SourcesReply)
    assert [c.document_id for c in sources.chunks][:2] == ["falcon", "ortiz"]


async def test_the_answer_links_both_hops_and_cites_a_chunk_of_each() -> None:
    replies, _, _ = await answer(bridge())
    produced = replies.stream_for("q1").answer()
    assert produced is not None and not produced.no_answer
    assert "Lisbon" in produced.answer
    assert produced.answer.index("Falcon") < produced.answer.index("Lisbon")  # in the order that links them
    assert {c.document_id for c in produced.citations} == {"falcon", "ortiz"}
    found = {c.chunk_id for step in produced.steps for c in step.sources}
    assert all(c.chunk_id in found for c in produced.citations)
    assert sorted(set(marker_numbers(produced.answer))) == sorted(c.index for c in produced.citations)
    assert [s.step for s in produced.steps] == [1, 2] and produced.exit_reason == "answered"


async def test_a_written_answer_cites_sources_by_their_number_across_steps() -> None:
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz office", "model: search"), FinalAnswer("Lisbon [2].")])
    replies, _, _ = await answer(planner)
    produced = replies.stream_for("q1").answer()
    assert produced is not None and produced.answer == "Lisbon [2]."
    [citation] = produced.citations
    assert (citation.index, citation.document_id) == (2, "ortiz")
    assert produced.exit_reason == "answered" and produced.backend == "scripted"


async def test_a_marker_beyond_the_found_sources_is_dropped() -> None:
    replies, _, _ = await answer(ScriptedPlanner([FinalAnswer("Lisbon [1][7].")]))
    produced = replies.stream_for("q1").answer()
    assert produced is not None and [c.index for c in produced.citations] == [1]
    assert "[7]" not in produced.answer


async def test_max_steps_from_the_query_caps_the_run() -> None:
    planner = ScriptedPlanner([PlannedSearch(f"office {n}", "more") for n in range(10)])
    replies, _, _ = await answer(planner, retrieved(max_steps=2))
    produced = replies.stream_for("q1").answer()
    assert produced is not None and len(produced.steps) == 2 and produced.exit_reason == "step_budget"


async def test_a_query_asking_more_than_the_hard_cap_gets_the_cap() -> None:
    memos = [(f"memo-{n}", f"Memo {n} mentions codeword{n}.") for n in range(20)]
    searcher = InMemorySearcher({"acme": [*DOCUMENTS["acme"], *memos]})
    planner = ScriptedPlanner([PlannedSearch(f"codeword{n}", "more") for n in range(20)])
    replies, _, _ = await answer(planner, retrieved(max_steps=50), searcher)
    produced = replies.stream_for("q1").answer()
    assert produced is not None and len(produced.steps) == AgentConfig().max_steps


async def test_a_failing_planner_falls_back_and_the_answer_says_degraded() -> None:
    replies, _, _ = await answer(ScriptedPlanner([ConnectionError("endpoint down")]), fallback=bridge())
    produced = replies.stream_for("q1").answer()
    assert produced is not None and produced.degraded and "Lisbon" in produced.answer


async def test_the_usage_record_counts_the_agent_answer_once() -> None:
    _, sink, _ = await answer(bridge())
    usage = [e.message for e in sink.emitted if isinstance(e.message, usage_pb2.UsageRecorded)]
    assert [u.usage_id for u in usage] == ["q1:tokens"] and usage[0].quantities["tokens_in"] > 0


async def test_an_answer_mode_query_is_not_run_as_an_agent() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    planner = bridge()
    replies, _, _ = await answer(planner, retrieved(mode=queries_pb2.QUERY_MODE_ANSWER), searcher)
    assert searcher.calls == [] and planner.seen_steps == []
    assert replies.stream_for("q1").kinds() == ["token", "done"]


async def test_the_model_free_planner_bridges_to_the_office_of_the_lead() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    replies, _, _ = await answer(ModelFreePlanner(RulesPlannerConfig()), searcher=searcher)  # type: ignore[arg-type]
    produced = replies.stream_for("q1").answer()
    assert produced is not None and "Lisbon" in produced.answer
    assert {c.document_id for c in produced.citations} >= {"falcon", "ortiz"}
    assert "Maria Ortiz" in produced.steps[1].query and produced.steps[1].reason.startswith("bridge")


async def test_the_model_free_planner_answers_a_comparison_from_both_sides() -> None:
    policies = {
        "acme": [
            ("travel-2024", "The 2024 travel policy caps hotel rooms at EUR 180 per night."),
            ("travel-2025", "The 2025 travel policy caps hotel rooms at EUR 210 per night."),
            ("parking", "Parking at the Berlin office is free for visitors."),
        ]
    }
    question = "Did the 2025 travel policy raise or lower the hotel cap compared with 2024?"
    message = retrieved(question)
    del message.chunks[:]
    message.chunks.append(
        queries_pb2.ScoredChunk(chunk_id="travel-2025#0", document_id="travel-2025", text=policies["acme"][1][1])
    )
    replies, _, _ = await answer(ModelFreePlanner(RulesPlannerConfig()), message, InMemorySearcher(policies))  # type: ignore[arg-type]
    produced = replies.stream_for("q1").answer()
    assert produced is not None and "180" in produced.answer and "210" in produced.answer
    assert {c.document_id for c in produced.citations} == {"travel-2024", "travel-2025"}


async def test_a_chain_retrieved_whole_in_step_one_is_still_followed_through_its_bridge() -> None:
    message = retrieved()
    message.chunks.append(
        queries_pb2.ScoredChunk(chunk_id="ortiz#0", document_id="ortiz", text=DOCUMENTS["acme"][1][1], score=0.5)
    )
    replies, _, _ = await answer(ModelFreePlanner(RulesPlannerConfig()), message)  # type: ignore[arg-type]
    produced = replies.stream_for("q1").answer()
    assert produced is not None and len(produced.steps) == 2
    assert produced.exit_reason in {"answered", "no_new_evidence"}
    assert "Lisbon" in produced.answer and {c.document_id for c in produced.citations} == {"falcon", "ortiz"}


async def test_an_llm_backend_writes_the_answer_from_every_steps_sources() -> None:
    draft = DraftAnswer(
        text="Lisbon [2].", citations=[CitationRef(index=2, source=1, snippet="Lisbon", score=1.0)], backend="llm"
    )
    backend = ScriptedBackend({QUESTION: ["Lisbon ", "[2].", draft]})
    agent = AgentAnswerer(lambda _state: bridge(), InMemorySearcher(DOCUMENTS), backend, AgentConfig())
    replies = RecordingReplyChannel()
    await answer_batch([envelope(retrieved())], ExtractiveBackend(), replies, RecordingSink(), agent=agent)
    stream = replies.stream_for("q1")
    produced = stream.answer()
    assert backend.questions == [QUESTION] and stream.tokens() == ["Lisbon ", "[2]."]
    assert produced is not None and [(c.index, c.document_id) for c in produced.citations] == [(2, "ortiz")]

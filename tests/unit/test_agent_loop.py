"""The agent loop's bounds: steps, deadline, tokens, repeats, no new evidence, failing planners and searches."""

from __future__ import annotations

import asyncio
import time

import pytest
from fakes.agent import InMemorySearcher, ScriptedPlanner, chunk
from ragstream_generate.agent.loop import AgentBudget, AgentRun, run_agent
from ragstream_generate.agent.ports import SearchScope
from ragstream_generate.agent.state import AgentState, ExitReason, FinalAnswer, PlannedSearch, Step

DOCUMENTS = {
    "acme": [
        ("falcon", "Project Falcon is led by Dr. Maria Ortiz."),
        ("ortiz", "Dr. Maria Ortiz works from the Lisbon office."),
        ("heron", "Project Heron is led by Tom Becker."),
        ("becker", "Tom Becker works from the Oslo office."),
    ],
    "globex": [("secret", "Globex's Maria Ortiz works from the Tokyo office.")],
}
SCOPE = SearchScope("acme")

pytestmark = pytest.mark.unit


def started(question: str = "Which office does the lead of Project Falcon work from?") -> AgentState:
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [chunk("falcon", DOCUMENTS["acme"][0][1])])
    return state


def budget(**overrides: float | int | None) -> AgentBudget:
    values: dict[str, float | int | None] = {"max_steps": 4, "deadline": time.monotonic() + 30}
    values.update(overrides)
    return AgentBudget(**values)  # type: ignore[arg-type]


async def run(
    planner: ScriptedPlanner,
    searcher: InMemorySearcher | None = None,
    state: AgentState | None = None,
    fallback: ScriptedPlanner | None = None,
    **limits: float | int | None,
) -> tuple[AgentRun, list[Step], ExitReason, FinalAnswer | None]:
    announced: list[Step] = []

    async def on_step(step: Step) -> None:
        announced.append(step)

    agent = AgentRun(state or started(), planner, fallback, budget(**limits))
    outcome = await run_agent(agent, searcher or InMemorySearcher(DOCUMENTS), SCOPE, on_step)
    return agent, announced, outcome.exit_reason, outcome.written


async def test_a_bridge_search_becomes_step_two_with_its_new_sources() -> None:
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz office", "bridge")])
    agent, announced, reason, _ = await run(planner)
    assert [s.number for s in announced] == [2]
    assert announced[0].sources[0].document_id == "ortiz"
    assert "ortiz#0" in announced[0].new_chunk_ids
    assert [c.document_id for c in agent.state.sources][:2] == ["falcon", "ortiz"]
    assert reason is ExitReason.ANSWERED  # the planner had nothing more to ask after new evidence


async def test_the_step_budget_counts_step_one() -> None:
    planner = ScriptedPlanner([PlannedSearch(f"office {n}", "more") for n in range(10)])
    agent, announced, reason, _ = await run(planner, max_steps=3)
    assert reason is ExitReason.STEP_BUDGET
    assert len(agent.state.steps) == 3 and len(announced) == 2


async def test_a_repeated_search_stops_the_loop_without_running_it_again() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz", "a"), PlannedSearch("  maria   ORTIZ ", "b")])
    _, _, reason, _ = await run(planner, searcher)
    assert reason is ExitReason.REPEATED_CALL
    assert [call[1] for call in searcher.calls] == ["Maria Ortiz"]


async def test_the_question_itself_counts_as_asked() -> None:
    planner = ScriptedPlanner([PlannedSearch("Which office does the lead of Project Falcon work from?", "again")])
    _, announced, reason, _ = await run(planner)
    assert reason is ExitReason.REPEATED_CALL and announced == []


async def test_two_steps_in_a_row_without_new_sources_stop_the_loop() -> None:
    queries = ["Falcon", "Falcon lead", "Falcon leads", "Falcon leader"]
    planner = ScriptedPlanner([PlannedSearch(q, "x") for q in queries])
    agent, _, reason, _ = await run(planner, max_steps=8)
    assert reason is ExitReason.NO_NEW_EVIDENCE
    assert len(agent.state.steps) == 3


async def test_a_planner_stopping_after_a_step_without_new_sources_says_so() -> None:
    planner = ScriptedPlanner([PlannedSearch("Falcon", "x")])
    _, _, reason, _ = await run(planner)
    assert reason is ExitReason.NO_NEW_EVIDENCE


async def test_no_step_starts_once_the_deadline_is_too_close() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz", "bridge")])
    _, announced, reason, _ = await run(planner, searcher, deadline=time.monotonic() + 0.2, answer_reserve_s=0.3)
    assert reason is ExitReason.DEADLINE
    assert announced == [] and searcher.calls == [] and planner.seen_steps == []


async def test_a_slow_search_is_cut_at_the_deadline() -> None:
    class DeadlineBound(InMemorySearcher):
        """Honours `timeout_s` as the gRPC searcher does: a search slower than it fails when it runs out."""

        timeouts: list[float]

        async def search(self, scope, query, top_k, timeout_s, **kwargs):  # type: ignore[no-untyped-def]
            self.timeouts.append(timeout_s)
            await asyncio.sleep(timeout_s + 0.01)  # a gRPC deadline fires at, never before, its time
            raise TimeoutError

    searcher = DeadlineBound(DOCUMENTS)
    searcher.timeouts = []
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz", "bridge")])
    began = time.monotonic()
    _, announced, reason, _ = await run(planner, searcher, deadline=time.monotonic() + 0.6, answer_reserve_s=0.2)
    assert searcher.timeouts and searcher.timeouts[0] <= 0.4  # the time left before the reserve, not 5 s
    assert reason is ExitReason.DEADLINE  # out of time, not a failing retrieve: the answer is not degraded
    assert announced == []
    assert time.monotonic() - began < 1


async def test_a_written_answer_ends_the_loop() -> None:
    planner = ScriptedPlanner([FinalAnswer("Lisbon [2].")])
    _, _, reason, written = await run(planner)
    assert reason is ExitReason.ANSWERED and written == FinalAnswer("Lisbon [2].")


async def test_a_spent_token_budget_stops_before_the_next_call() -> None:
    state = started()
    state.tokens_in, state.tokens_out = 900, 200
    planner = ScriptedPlanner([PlannedSearch("Maria Ortiz", "bridge")])
    _, _, reason, _ = await run(planner, state=state, tokens=1000)
    assert reason is ExitReason.TOKEN_BUDGET and planner.seen_steps == []


async def test_a_failing_planner_hands_over_to_the_fallback_and_degrades() -> None:
    failing = ScriptedPlanner([ConnectionError("LLM endpoint down")], name="llm")
    fallback = ScriptedPlanner([PlannedSearch("Maria Ortiz office", "bridge")], name="rules")
    agent, announced, reason, _ = await run(failing, fallback=fallback)
    assert agent.degraded and agent.planner is fallback
    assert [s.search.reason for s in announced] == ["bridge"]
    assert reason is ExitReason.ANSWERED


async def test_a_failing_planner_without_fallback_fails_the_query() -> None:
    with pytest.raises(ConnectionError):
        await run(ScriptedPlanner([ConnectionError("down")]))


async def test_a_failed_search_ends_with_the_earlier_steps_and_degrades() -> None:
    searcher = InMemorySearcher(DOCUMENTS, fail_on="Ortiz")
    agent, announced, reason, _ = await run(ScriptedPlanner([PlannedSearch("Maria Ortiz", "bridge")]), searcher)
    assert reason is ExitReason.SEARCH_FAILED and agent.degraded
    assert announced == [] and len(agent.state.steps) == 1


async def test_read_document_and_metadata_reach_the_searcher() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    planner = ScriptedPlanner([PlannedSearch("office", "model: read", document_id="ortiz", metadata={"lang": "en"})])
    await run(planner, searcher, read_top_k=6)
    [(tenant, query, top_k, document_ids, metadata)] = searcher.calls
    assert (tenant, query, top_k, document_ids, metadata) == ("acme", "office", 6, ("ortiz",), {"lang": "en"})


async def test_every_step_searches_in_the_query_tenant_only() -> None:
    searcher = InMemorySearcher(DOCUMENTS)
    agent, _, _, _ = await run(ScriptedPlanner([PlannedSearch("Maria Ortiz Tokyo office", "bridge")]), searcher)
    assert {call[0] for call in searcher.calls} == {"acme"}
    assert "secret" not in {c.document_id for c in agent.state.sources}

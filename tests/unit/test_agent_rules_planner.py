"""The model-free planner over real AgentStates: decomposition first, then bridges, then one expansion, and
the stops (question covered, nothing new found, nothing left to ask). No search runs: each test records the
chunks a search would have returned."""

from __future__ import annotations

import pytest
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.agent.ports import Planner
from ragstream_generate.agent.rules_planner import ModelFreePlanner, RulesPlannerConfig
from ragstream_generate.agent.state import AgentState, PlannedSearch

pytestmark = pytest.mark.unit

LEAD_QUESTION = "Which office does the lead of Project Falcon work from?"


def chunk(chunk_id: str, text: str, score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(chunk_id=chunk_id, document_id=f"doc-{chunk_id}", text=text, score=score)


def asked(question: str, *found: ScoredChunk) -> AgentState:
    """A run after step 1: the question as asked, run by the pipeline."""
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), list(found))
    return state


async def next_search(planner: ModelFreePlanner, state: AgentState) -> PlannedSearch | None:
    action = await planner.next_action(state, timeout_s=1.0)
    assert action is None or isinstance(action, PlannedSearch)
    return action


FALCON_LEAD = chunk("falcon-1", "Project Falcon is led by Dr. Maria Ortiz. Its offsite was organised by Tom Berg.", 0.9)
HERON_NOTE = chunk("heron-1", "Project Heron's budget is reviewed by Priya Nair in Munich.", 0.5)
ORTIZ_OFFICE = chunk("people-7", "Maria Ortiz works from the Lisbon office on the third floor.", 0.8)


def test_the_planner_satisfies_the_port() -> None:
    planner: Planner = ModelFreePlanner()
    assert planner.name == "rules"


async def test_a_single_hop_question_covered_by_step_one_stops_at_once() -> None:
    state = asked(
        "What is the hotel cap in the 2025 travel policy?",
        chunk("travel-3", "Under the 2025 travel policy the hotel cap is EUR 180 per night.", 0.9),
    )
    assert await next_search(ModelFreePlanner(), state) is None


async def test_an_empty_run_starts_with_the_question_itself() -> None:
    search = await next_search(ModelFreePlanner(), AgentState(LEAD_QUESTION))
    assert search == PlannedSearch(LEAD_QUESTION, "the question as asked")


async def test_a_multi_hop_question_bridges_through_the_entity_beside_its_terms() -> None:
    planner = ModelFreePlanner()
    state = asked(LEAD_QUESTION, FALCON_LEAD, HERON_NOTE)
    bridge = await next_search(planner, state)
    assert bridge == PlannedSearch(
        "Maria Ortiz office work", "bridge: 'Maria Ortiz' from step 1 is not in the question"
    )
    assert bridge is not None
    state.record(bridge, [ORTIZ_OFFICE, FALCON_LEAD])
    assert await next_search(planner, state) is None  # every word of the question is covered now


async def test_a_distractor_ranked_first_does_not_become_the_bridge() -> None:
    state = asked(
        LEAD_QUESTION,
        chunk("becker", "Tom Becker works from the Oslo office.", 0.95),
        chunk("nilsen", "Ida Nilsen works from the Bergen office.", 0.9),
        FALCON_LEAD,
    )
    search = await next_search(ModelFreePlanner(), state)
    assert search is not None and search.query.startswith("Maria Ortiz")
    assert search.reason == "bridge: 'Maria Ortiz' from step 1 is not in the question"


async def test_comparison_sides_come_first_each_once() -> None:
    planner = ModelFreePlanner(RulesPlannerConfig(top_k=5))
    question = "Did the 2025 travel policy raise or lower the hotel cap compared with 2024?"
    state = asked(question, chunk("travel-2025", "The 2025 travel policy sets the hotel cap at EUR 180 per night."))
    first = await next_search(planner, state)
    assert first == PlannedSearch("2025 travel policy hotel cap", "comparison: one side", top_k=5)
    assert first is not None
    state.record(first, [chunk("travel-2025", "The 2025 travel policy sets the hotel cap at EUR 180 per night.")])
    second = await next_search(planner, state)
    assert second is not None and second.query == "2024 travel policy hotel cap" and second.top_k == 5
    state.record(second, [chunk("travel-2024", "In the 2024 travel policy the hotel cap was EUR 150 per night.")])
    assert await next_search(planner, state) is None  # both sides found; every word covered


async def test_sub_queries_already_asked_in_another_spelling_are_not_repeated() -> None:
    planner = ModelFreePlanner()
    question = "What are the security contacts of Project Falcon and Project Heron?"
    state = asked(question, chunk("sec-1", "Security contacts are listed per project."))
    state.record(
        PlannedSearch("SECURITY contacts  project falcon", "asked before"), [chunk("sec-2", "Falcon: A. Lee.")]
    )
    search = await next_search(planner, state)
    assert search is not None and search.query == "security contacts Project Heron"


async def test_a_step_that_found_nothing_new_ends_the_run() -> None:
    planner = ModelFreePlanner()
    state = asked(LEAD_QUESTION, FALCON_LEAD, HERON_NOTE)
    bridge = await next_search(planner, state)
    assert bridge is not None
    state.record(bridge, [FALCON_LEAD, HERON_NOTE, chunk("misc-9", "Maria Ortiz joined in 2019.")])
    # The only new source ranks below evidence_k=2: nothing new among the top sources.
    assert await ModelFreePlanner(RulesPlannerConfig(evidence_k=2)).next_action(state, 1.0) is None
    assert await next_search(planner, state) is not None  # with evidence_k=3 the new source counts


async def test_bridges_stop_at_max_bridges_then_one_expansion_runs() -> None:
    planner = ModelFreePlanner(RulesPlannerConfig(max_bridges=1))
    state = asked(LEAD_QUESTION, FALCON_LEAD, HERON_NOTE)
    bridge = await next_search(planner, state)
    assert bridge is not None
    state.record(bridge, [chunk("people-2", "Maria Ortiz chairs the architecture board of Project Falcon.")])
    expansion = await next_search(planner, state)
    assert expansion is not None and expansion.reason.startswith("expansion: ")
    assert expansion.query.startswith(LEAD_QUESTION + " ")
    assert "maria" in expansion.query.casefold()
    state.record(expansion, [chunk("people-3", "Board members meet in Porto.")])
    assert await next_search(planner, state) is None  # one expansion per run, bridges used up


async def test_without_expansion_the_planner_stops_when_bridges_run_out() -> None:
    planner = ModelFreePlanner(RulesPlannerConfig(max_bridges=1, expansion=False))
    state = asked(LEAD_QUESTION, FALCON_LEAD)
    bridge = await next_search(planner, state)
    assert bridge is not None
    state.record(bridge, [chunk("people-2", "Maria Ortiz chairs the architecture board of Project Falcon.")])
    assert await next_search(planner, state) is None


async def test_a_second_bridge_skips_the_entity_already_used() -> None:
    planner = ModelFreePlanner()
    state = asked(
        LEAD_QUESTION,
        chunk("falcon-2", "Project Falcon is led by Dr. Maria Ortiz. Tom Berg is deputy lead of Project Falcon."),
    )
    first = await next_search(planner, state)
    assert first is not None and "'Maria Ortiz'" in first.reason
    state.record(first, [chunk("people-2", "Maria Ortiz chairs the board of Project Falcon.")])
    second = await next_search(planner, state)
    assert second == PlannedSearch("Tom Berg office work", "bridge: 'Tom Berg' from step 1 is not in the question")


async def test_unrelated_entities_are_not_bridges_expansion_runs_instead() -> None:
    planner = ModelFreePlanner()
    question = "How many vacation days do new hires get?"
    state = asked(
        question,
        chunk("hr-1", "New hires receive 28 vacation days. The canteen is run by Anna Kowalski.", 0.9),
        chunk("hr-2", "Vacation requests are approved in the holiday planner by the team lead.", 0.7),
    )
    search = await next_search(planner, state)
    assert search is not None and search.reason.startswith("expansion: ") and "Kowalski" not in search.query


async def test_one_planner_serves_concurrent_runs_from_their_states_alone() -> None:
    planner = ModelFreePlanner()
    first_run = asked(LEAD_QUESTION, FALCON_LEAD)
    second_run = asked(LEAD_QUESTION, FALCON_LEAD)
    bridge = await next_search(planner, first_run)
    assert bridge is not None
    first_run.record(bridge, [chunk("people-2", "Maria Ortiz chairs the board of Project Falcon.")])
    assert await next_search(planner, second_run) == bridge  # the first run's progress is not shared
    follow_up = await next_search(planner, first_run)
    assert follow_up is not None and follow_up.key() != bridge.key()


async def test_no_search_ever_repeats_an_earlier_key() -> None:
    planner = ModelFreePlanner(RulesPlannerConfig(max_bridges=3))
    state = asked(
        "Which office does the lead of Project Falcon and the owner of FAL-2291 work from?",
        chunk("c1", "Project Falcon is led by Maria Ortiz. Ticket FAL-2291 is owned by Tom Berg.", 0.9),
        chunk("c2", "Priya Nair in Munich reviews Project Heron.", 0.4),
    )
    for number in range(2, 12):
        search = await next_search(planner, state)
        if search is None:
            break
        assert search.key() not in {step.search.key() for step in state.steps}
        state.record(search, [chunk(f"new-{number}", f"Unrelated note {number} about Building {number}.")])
    else:
        pytest.fail("the planner never stopped")

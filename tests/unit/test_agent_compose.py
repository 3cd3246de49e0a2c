"""The model-free agent's extractive answer: the chain leads, competing claims beside it are dropped, citations
are numbered by first use."""

from __future__ import annotations

import pytest
from fakes.agent import chunk
from ragstream_generate.agent.compose import compose_agent_answer
from ragstream_generate.agent.state import AgentState, PlannedSearch
from ragstream_generate.citations import marker_numbers

pytestmark = pytest.mark.unit

CHARTERS = [
    chunk("charter-heron", "Project Heron will move support chat to one inbox. Siobhan Kelly is the project lead."),
    chunk("charter-falcon", "Project Falcon will replace the matching engine. The project lead is Kwame Mensah."),
    chunk("charter-quartz", "Project Quartz will rebuild the mobile checkout flow. The project lead is Priya Raman."),
]
KWAME = chunk(
    "staff-kwame",
    "Kwame Mensah is a product designer in the Finance Systems team. Kwame Mensah works from the Austin office "
    "and joined the company in 2015. Desk extension: 6872.",
)
AUSTIN = chunk("office-austin", "The Austin office occupies two floors. The site manager is Gretchen Alvarez.")
OSAKA = chunk("office-osaka", "The Osaka office occupies two floors. The site manager is Yusuf Demir.")


def _bridge(entity: str, query: str, step: int = 1) -> PlannedSearch:
    return PlannedSearch(query, f"bridge: '{entity}' from step {step} is not in the question")


def test_the_chain_leads_and_other_projects_leads_are_dropped() -> None:
    question = "What desk extension does the lead of Project Falcon have?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), CHARTERS)
    state.record(_bridge("Kwame Mensah", "Kwame Mensah desk extension"), [KWAME])
    answer = compose_agent_answer(state).text
    assert answer.startswith("The project lead is Kwame Mensah [1].")
    assert "6872" in answer and answer.index("Kwame Mensah [1]") < answer.index("6872")
    assert "Siobhan Kelly" not in answer and "Priya Raman" not in answer  # competing claims, not evidence
    assert "Project Falcon will replace" in answer  # names the question's own entity: kept, after the chain


def test_a_three_hop_chain_reads_in_hop_order_without_a_rival_office() -> None:
    question = "Who is the site manager of the office where Project Falcon's lead works?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [OSAKA, *CHARTERS])
    state.record(_bridge("Kwame Mensah", "Kwame Mensah site manager office works"), [KWAME])
    state.record(_bridge("Austin", "Austin site manager project falcon lead", step=2), [AUSTIN, OSAKA])
    answer = compose_agent_answer(state).text
    positions = [answer.index(text) for text in ("Kwame Mensah [", "Austin office", "Gretchen Alvarez")]
    assert positions == sorted(positions)
    assert "Yusuf Demir" not in answer and "Osaka" not in answer


def test_citations_are_numbered_by_first_use_not_by_the_order_sources_were_found() -> None:
    question = "What desk extension does the lead of Project Falcon have?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), CHARTERS)
    state.record(_bridge("Kwame Mensah", "Kwame Mensah desk extension"), [KWAME])
    draft = compose_agent_answer(state)
    assert marker_numbers(draft.text)[0] == 1
    assert [(c.index, state.sources[c.source].document_id) for c in draft.citations] == [
        (1, "charter-falcon"),
        (2, "staff-kwame"),
    ]


def test_without_a_chain_every_steps_answer_stays() -> None:
    question = "Did the 2025 travel policy raise or lower the hotel cap compared with 2024?"
    state = AgentState(question)
    policy_2025 = chunk("travel-2025", "From 2025, hotel stays are reimbursed up to 180 euros per night.")
    policy_2024 = chunk("travel-2024", "From 2024, hotel stays are reimbursed up to 155 euros per night.")
    state.record(PlannedSearch(question, "the question as asked"), [policy_2025])
    state.record(PlannedSearch("2024 travel policy hotel cap", "part 2 of a comparison"), [policy_2024])
    answer = compose_agent_answer(state).text
    assert "180" in answer and "155" in answer

"""The model-free agent's extractive answer: the chain leads, competing claims beside it are dropped, citations
are numbered by first use."""

from __future__ import annotations

import pytest
from fakes.agent import chunk
from rag.v1.queries_pb2 import ScoredChunk
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


def _incident(code: str, commander: str, on_call: str, cause: str) -> ScoredChunk:
    text = f"The billing portal was unavailable for 40 minutes. Root cause: {cause}. "
    text += f"Incident commander: {commander}; also on call: {on_call}."
    return ScoredChunk(
        chunk_id=f"incident-{code}#0", document_id=f"incident-{code}", title=f"Incident report {code}", text=text
    )


INC_8942 = _incident("INC-8942", "Siobhan Kelly", "Marta Novak", "a faulty schema migration")
SIOBHAN = chunk("staff-siobhan", "Siobhan Kelly, data analyst, Data Platform team. Works from the Dublin office.")
MARTA = chunk("staff-marta", "Marta Novak is a finance controller in the Identity team. She works from Lisbon.")


def test_of_two_people_one_sentence_names_only_the_one_asked_about_keeps_its_hop() -> None:
    # The planner may follow both names of "Incident commander: X; also on call: Y": the two hops are
    # alternatives, and the commander's clause is the one the question asks about.
    question = "Which team is the incident commander of INC-8942 part of?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [INC_8942])
    state.record(_bridge("Siobhan Kelly", "Siobhan Kelly team inc 8942 part"), [SIOBHAN, MARTA])
    state.record(_bridge("Marta Novak", "Marta Novak team inc 8942 part"), [MARTA, SIOBHAN])
    answer = compose_agent_answer(state).text
    assert "Data Platform team" in answer and "Identity" not in answer


def test_the_hop_answering_what_the_intro_lacks_wins_over_its_sibling() -> None:
    question = "Of the people on call for incident INC-8942, who works from Lisbon?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [INC_8942])
    state.record(_bridge("Siobhan Kelly", "Siobhan Kelly people inc 8942 works lisbon"), [SIOBHAN])
    state.record(_bridge("Marta Novak", "Marta Novak people inc 8942 works lisbon"), [MARTA])
    answer = compose_agent_answer(state).text
    assert "She works from Lisbon" in answer and "Dublin" not in answer


def test_hops_that_answer_alike_both_stay() -> None:
    # Both hops name a team, and neither name's clause holds a word of the question.
    question = "Which teams worked on INC-8942?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [INC_8942])
    state.record(_bridge("Siobhan Kelly", "Siobhan Kelly teams worked inc 8942"), [SIOBHAN])
    state.record(_bridge("Marta Novak", "Marta Novak teams worked inc 8942"), [MARTA])
    answer = compose_agent_answer(state).text
    assert "Data Platform team" in answer and "Identity team" in answer


def test_a_two_part_question_drops_what_step_one_found_about_other_incidents() -> None:
    # Step 1 matches "caused" in every incident report; the parts name two of them.
    question = "What caused INC-4408, and what caused INC-4200?"
    reports = [
        _incident("INC-4200", "Priya Raman", "Tom Berg", "a misconfigured load balancer rule"),
        _incident("INC-3738", "Amara Okafor", "Rafael Costa", "a runaway batch job"),
        _incident("INC-4408", "Marek Novak", "Priya Raman", "a DNS record deleted by mistake"),
        _incident("INC-5120", "Hiroko Tanaka", "Amara Okafor", "a faulty schema migration"),
    ]
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), reports)
    state.record(PlannedSearch("What caused INC-4408", "part 1 of a conjunction"), [reports[2], reports[0]])
    state.record(PlannedSearch("what caused INC-4200", "part 2 of a conjunction"), [reports[0], reports[2]])
    answer = compose_agent_answer(state).text
    assert "DNS record deleted by mistake" in answer and "misconfigured load balancer rule" in answer
    assert "runaway batch job" not in answer and "faulty schema migration" not in answer


def test_a_year_the_question_names_keeps_its_policy_and_drops_another_years() -> None:
    question = "What is the nightly hotel cap in the 2024 travel policy?"
    policy_2023 = chunk("travel-2023", "From 1 January 2023, hotel stays are reimbursed up to 140 euros per night.")
    policy_2024 = chunk("travel-2024", "From 1 January 2024, hotel stays are reimbursed up to 155 euros per night.")
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [policy_2023, policy_2024])
    expansion = PlannedSearch(f"{question} euros reimbursed", "expansion: words of step 1's top sources")
    state.record(expansion, [policy_2024])
    answer = compose_agent_answer(state).text
    assert "155" in answer and "140" not in answer


def test_when_no_source_names_what_the_question_names_every_sentence_stays() -> None:
    question = "Which office does the lead of Project Falcon work from?"
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [KWAME])
    state.record(PlannedSearch(f"{question} austin", "expansion: words of step 1's top sources"), [AUSTIN])
    assert "Austin" in compose_agent_answer(state).text


def test_a_hop_continuing_from_a_dropped_sibling_leaves_with_it() -> None:
    question = "Who is the site manager of the office the incident commander of INC-8942 works from?"
    siobhan = chunk("staff-siobhan", "Siobhan Kelly, data analyst, Data Platform team. Works from the Dublin office.")
    marta = chunk("staff-marta", "Marta Novak works from the Lisbon office. She is a finance controller.")
    lisbon = chunk("office-lisbon", "The Lisbon office occupies three floors. The site manager is Rui Almeida.")
    state = AgentState(question)
    state.record(PlannedSearch(question, "the question as asked"), [INC_8942])
    state.record(_bridge("Siobhan Kelly", "Siobhan Kelly site manager office works"), [siobhan])
    state.record(_bridge("Marta Novak", "Marta Novak site manager office works"), [marta])
    state.record(_bridge("Lisbon", "Lisbon site manager", step=3), [lisbon])
    answer = compose_agent_answer(state).text
    assert "Dublin office" in answer
    assert "Lisbon" not in answer and "Rui Almeida" not in answer

"""Compound questions -> sub-queries: comparisons, "between", lists and choices of names, joined questions;
and the questions that must stay whole (noun phrases with "and", ranges, thresholds, single-hop asks)."""

from __future__ import annotations

import pytest
from ragstream_generate.agent.decompose import MAX_SUB_QUERIES, SubQuery, decompose

pytestmark = pytest.mark.unit


def queries(question: str) -> list[str]:
    return [part.query for part in decompose(question)]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "Did the 2025 travel policy raise or lower the hotel cap compared with 2024?",
            ["2025 travel policy hotel cap", "2024 travel policy hotel cap"],
        ),
        (
            "How does the Berlin office's parking allowance compare to the Munich office's?",
            ["Berlin office parking allowance", "Munich office parking allowance"],
        ),
        (
            "Is the Berlin parking allowance higher than Munich's?",
            ["Berlin parking allowance", "Munich parking allowance"],
        ),
        ("How does Project Falcon differ from Project Heron?", ["Project Falcon", "Project Heron"]),
        ("Is the 2025 hotel cap in Berlin vs. Munich the same?", ["2025 hotel cap Berlin", "2025 hotel cap Munich"]),
        (
            "What is the on-call rotation of FAL-2291 versus FAL-2310?",
            ["on-call rotation FAL-2291", "on-call rotation FAL-2310"],
        ),
        (
            "Is the remote work stipend higher than the gym allowance?",
            ["remote work stipend", "gym allowance"],
        ),
        (
            "How much did the hotel cap change relative to last year?",
            ["hotel cap", "hotel cap last year"],
        ),
    ],
)
def test_comparisons_become_one_search_per_side(question: str, expected: list[str]) -> None:
    assert queries(question) == expected


def test_a_comparison_with_several_items_has_a_side_for_each() -> None:
    assert queries("How does the Berlin relocation bonus compare to Munich and Hamburg?") == [
        "Berlin relocation bonus",
        "Munich relocation bonus",
        "Hamburg relocation bonus",
    ]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "What is the difference in parental leave between the Berlin and Munich offices?",
            ["parental leave Berlin offices", "parental leave Munich offices"],
        ),
        ("Did headcount change between 2023 and 2025?", ["headcount 2023", "headcount 2025"]),
        (
            "What is the difference between contractor and employee notice periods?",
            ["contractor notice periods", "employee notice periods"],
        ),
    ],
)
def test_between_x_and_y_splits_into_both_sides(question: str, expected: list[str]) -> None:
    assert queries(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "What are the security contacts of Project Falcon and Project Heron?",
            ["security contacts Project Falcon", "security contacts Project Heron"],
        ),
        ("Which is older, Project Falcon or Project Heron?", ["older Project Falcon", "older Project Heron"]),
        ("How do the travel policies of 2024 and 2025 differ?", ["travel policies 2024", "travel policies 2025"]),
        ("What is the hotel cap in 2024 and in 2025?", ["hotel cap 2024", "hotel cap 2025"]),
        ("Who owns SKU 4471 and SKU 4472?", ["owns SKU 4471", "owns SKU 4472"]),
        ("Who are the Head of Sales and the Head of Marketing?", ["Head Sales", "Head Marketing"]),
    ],
)
def test_lists_and_choices_of_names_share_the_predicate(question: str, expected: list[str]) -> None:
    assert queries(question) == expected


def test_two_questions_joined_by_and_stay_whole_clauses() -> None:
    assert decompose("Who leads Project Falcon and where is Project Heron based?") == [
        SubQuery("Who leads Project Falcon", "part of the question"),
        SubQuery("where is Project Heron based", "part of the question"),
    ]


def test_a_joined_clause_that_is_itself_a_comparison_is_split_further() -> None:
    assert queries("Who approved the Falcon budget, and is the 2025 hotel cap higher than in 2024?") == [
        "Who approved the Falcon budget",
        "2025 hotel cap",
        "2024 hotel cap",
    ]


@pytest.mark.parametrize(
    "question",
    [
        "What are the terms and conditions of the 2025 travel policy?",
        "How large is the research and development budget?",
        "What is the Research and Development budget for 2025?",
        "Which teams work on Project Falcon and are based in Berlin?",
        "Which teams have between 10 and 20 employees?",
        "Which projects have more than 5 engineers?",
        "What is the balance between work and life in the handbook?",
        "Who approves expenses other than travel?",
        "What is the notice period for contractors in the Munich office?",
        "Who leads Project Falcon?",
    ],
)
def test_questions_that_are_not_compound_stay_whole(question: str) -> None:
    assert decompose(question) == []


def test_sub_queries_are_distinct_from_the_question_and_each_other_and_at_most_four() -> None:
    question = (
        "Who approves expenses for Project Falcon, Project Heron, Project Osprey, Project Kestrel and Project Wren?"
    )
    parts = queries(question)
    assert len(parts) == MAX_SUB_QUERIES
    assert parts[0] == "approves expenses Project Falcon"
    normalised = [" ".join(part.casefold().split()) for part in parts]
    assert len(set(normalised)) == len(normalised)
    assert " ".join(question.casefold().split()).rstrip("?") not in normalised


def test_reasons_say_which_side_a_sub_query_is() -> None:
    parts = decompose("Did the 2025 travel policy raise or lower the hotel cap compared with 2024?")
    assert [part.reason for part in parts] == ["comparison: one side", "comparison: the other side (2024)"]
    listed = decompose("What are the security contacts of Project Falcon and Project Heron?")
    assert [part.reason for part in listed] == [
        "part of the question (Project Falcon)",
        "part of the question (Project Heron)",
    ]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "Which opened first, the Krakow office or the Lisbon office?",
            ["opened first Krakow office", "opened first Lisbon office"],
        ),
        (
            "Is the client meal limit per guest higher in the 2025 expense policy or in the 2024 one?",
            ["client meal limit guest 2025 expense policy", "client meal limit guest 2024 expense policy"],
        ),
        (
            "Who has been with the company longer: the lead of Project Beacon or the lead of Project Orchid?",
            ["company longer lead Project Beacon", "company longer lead Project Orchid"],
        ),
        ("Should I bring a laptop or a tablet?", ["bring laptop", "bring tablet"]),
    ],
)
def test_a_choice_between_parallel_phrases_searches_each(question: str, expected: list[str]) -> None:
    assert queries(question) == expected


def test_a_change_from_one_year_to_another_searches_both_years() -> None:
    assert queries("How did the daily meal allowance for travel change from 2023 to 2024?") == [
        "daily meal allowance travel 2023",
        "daily meal allowance travel 2024",
    ]


@pytest.mark.parametrize(
    "question",
    [
        "Can I work from home or not?",  # one thing asked, yes or no
        "How do I get from the station to the office?",  # a route, not two things compared
        "How do I reset my password?",
    ],
)
def test_questions_that_only_look_like_choices_stay_whole(question: str) -> None:
    assert decompose(question) == []

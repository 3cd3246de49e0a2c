"""RM3 expansion: the words the best sources use for what the question asks, weighted by retrieval score."""

from __future__ import annotations

import pytest
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.agent.expansion import relevance_model, rm3_query, rm3_weights

pytestmark = pytest.mark.unit

QUESTION = "What is the hotel cap for business trips?"
FEEDBACK = [
    ScoredChunk(
        chunk_id="c1",
        document_id="travel-2025",
        text="Hotel stays on business trips are reimbursed up to a nightly rate of EUR 180. "
        "The nightly rate applies in every city.",
        score=0.9,
    ),
    ScoredChunk(
        chunk_id="c2",
        document_id="travel-2025",
        text="Nightly rates above the limit need written approval from the cost centre owner.",
        score=0.6,
    ),
    ScoredChunk(chunk_id="c3", document_id="canteen", text="The canteen serves vegetarian lunches daily.", score=0.1),
    ScoredChunk(chunk_id="c4", document_id="parking", text="Parking permits are issued by facilities.", score=0.05),
]


def test_expansion_appends_the_feedbacks_words_for_the_concept() -> None:
    expanded = rm3_query(QUESTION, FEEDBACK, expansion_terms=3)
    assert expanded == f"{QUESTION} nightly rate stays"


def test_each_stem_is_added_once_as_its_most_frequent_surface_word() -> None:
    words = rm3_query(QUESTION, FEEDBACK)[len(QUESTION) :].split()
    assert "nightly" in words and "rate" in words and "rates" not in words
    assert len(words) == len(set(words)) == 8


def test_only_the_top_feedback_docs_count() -> None:
    added = rm3_query(QUESTION, FEEDBACK, feedback_docs=2)[len(QUESTION) :].split()
    assert not {"canteen", "vegetarian", "parking", "permits"} & set(added)
    assert "canteen" in rm3_query(QUESTION, FEEDBACK, feedback_docs=3, expansion_terms=30)


def test_words_the_question_has_are_not_added() -> None:
    added = rm3_query(QUESTION, FEEDBACK, expansion_terms=30)[len(QUESTION) :].split()
    assert not {"hotel", "business", "trips", "trip", "cap"} & set(added)


def test_higher_scored_feedback_weighs_more() -> None:
    model = relevance_model(FEEDBACK[:3])
    assert model["night"] > model["canteen"]
    assert sum(model.values()) == pytest.approx(1.0)


def test_rank_weights_stand_in_for_missing_scores() -> None:
    unscored = [ScoredChunk(chunk_id=c.chunk_id, text=c.text) for c in FEEDBACK]
    assert rm3_query(QUESTION, unscored, expansion_terms=2) == f"{QUESTION} nightly rate"


def test_the_question_keeps_its_share_of_the_model() -> None:
    weights = rm3_weights(QUESTION, FEEDBACK[:2], original_weight=0.5)
    assert weights["hotel"] > weights["night"]
    assert sum(weights.values()) == pytest.approx(1.0)


def test_nothing_to_add_returns_the_question_unchanged() -> None:
    assert rm3_query(QUESTION, []) == QUESTION
    echo = [ScoredChunk(chunk_id="c1", text="Hotel cap for business trips.", score=1.0)]
    assert rm3_query(QUESTION, echo) == QUESTION

"""The multi-hop evaluation set: the committed files are what its builder writes, and the set is well formed."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from ragstream_common.text_analysis import ENGLISH_ANALYZER
from support.bench_modules import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.unit

_DIR = BENCHMARKS / "multihop"
build_dataset = load_benchmark("multihop_build_dataset", _DIR / "build_dataset.py")

DOCUMENTS: list[dict[str, Any]] = [json.loads(line) for line in (_DIR / "corpus.jsonl").read_text("utf-8").splitlines()]
QUESTIONS: list[dict[str, Any]] = [
    json.loads(line) for line in (_DIR / "questions.jsonl").read_text("utf-8").splitlines()
]
BY_ID = {document["id"]: document for document in DOCUMENTS}
# A term in at least this many documents does not single out one of them: a second hop may share it.
COMMON_TERM_DOCUMENTS = 5


def _full_text(document: dict[str, Any]) -> str:
    return f"{document['title']} {document['text']}"


def _mentions(text: str, entity: str) -> bool:
    """Whole words only: "Priya Raman" must not be found inside "Priya Ramanathan"."""
    return re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", text, re.IGNORECASE) is not None


def test_the_committed_files_are_exactly_what_the_builder_writes() -> None:
    documents, questions = build_dataset.build()
    assert (_DIR / "corpus.jsonl").read_text("utf-8") == build_dataset.render(documents)
    assert (_DIR / "questions.jsonl").read_text("utf-8") == build_dataset.render(questions)
    assert build_dataset.build() == (documents, questions)  # one seed, the same set every time


def test_counts_and_the_mix_of_question_types() -> None:
    types = Counter(question["type"] for question in QUESTIONS)
    assert len(DOCUMENTS) >= 60 and len(QUESTIONS) >= 40
    assert set(types) == {"bridge", "comparison", "conjunction", "single"}
    assert 6 <= types["single"] <= 10  # controls
    assert types["bridge"] >= 20  # mostly multi-hop, bridges first of all
    assert len(BY_ID) == len(DOCUMENTS) and len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)


def test_documents_and_questions_have_the_documented_fields() -> None:
    for document in DOCUMENTS:
        assert set(document) == {"id", "title", "text", "metadata"}
        # The gateway's id pattern, with the eval's prefix.
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", f"multihop-{document['id']}")
        assert all(isinstance(value, str) for value in document["metadata"].values())
    for question in QUESTIONS:
        assert set(question) - {"bridge"} == {"id", "question", "type", "supporting", "expected"}
        assert question["expected"] and all(isinstance(text, str) and text for text in question["expected"])


def test_every_supporting_document_exists_and_holds_the_expected_strings() -> None:
    for question in QUESTIONS:
        supporting = [BY_ID[document_id] for document_id in question["supporting"]]  # KeyError: missing
        assert len(set(question["supporting"])) == len(supporting)
        assert (len(supporting) == 1) == (question["type"] == "single"), question["id"]
        together = " ".join(_full_text(document) for document in supporting)
        for text in question["expected"]:
            assert text.casefold() in together.casefold(), (question["id"], text)


def test_bridge_entities_link_consecutive_hops_and_are_not_in_the_question() -> None:
    for question in QUESTIONS:
        texts = [_full_text(BY_ID[document_id]) for document_id in question["supporting"]]
        bridges = question.get("bridge", [])
        assert not any(_mentions(question["question"], entity) for entity in bridges), question["id"]
        if question["type"] == "bridge":
            # A chain: bridge i is in hop i and hop i + 1.
            assert len(bridges) == len(texts) - 1, question["id"]
            for hop, entity in enumerate(bridges):
                assert _mentions(texts[hop], entity) and _mentions(texts[hop + 1], entity), (question["id"], entity)
        else:
            for entity in bridges:
                assert sum(_mentions(text, entity) for text in texts) >= 2, (question["id"], entity)


def test_later_hops_share_only_common_terms_with_the_question() -> None:
    """A single search for the question has nothing but common words to find a bridge's second hop with."""
    terms = {document["id"]: set(ENGLISH_ANALYZER.terms(_full_text(document))) for document in DOCUMENTS}
    document_frequency = Counter(term for found in terms.values() for term in found)
    for question in (q for q in QUESTIONS if q["type"] == "bridge"):
        asked = set(ENGLISH_ANALYZER.terms(question["question"]))
        for later_hop in question["supporting"][1:]:
            distinctive = {t for t in asked & terms[later_hop] if document_frequency[t] < COMMON_TERM_DOCUMENTS}
            assert not distinctive, (question["id"], later_hop, distinctive)


def test_similar_names_are_distinct_people_in_the_directory() -> None:
    staff = [
        document["title"].removeprefix("Staff directory: ")
        for document in DOCUMENTS
        if document["id"].startswith("staff-")
    ]
    assert {"Ana Duarte", "Ana Durante", "Lena Fischer", "Lena Fisher"} <= set(staff)
    for name in staff:  # no name inside another: "contains" matching of answers stays exact
        assert not [other for other in staff if other != name and _mentions(other, name)]

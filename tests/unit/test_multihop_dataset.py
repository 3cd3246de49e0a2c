"""The multi-hop evaluation sets (development and held-out): the committed files are what their builder writes,
and each set is well formed."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ragstream_common.text_analysis import ENGLISH_ANALYZER
from support.bench_modules import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.unit

_DIR = BENCHMARKS / "multihop"
build_dataset = load_benchmark("multihop_build_dataset", _DIR / "build_dataset.py")

SETS = {"dev": (_DIR, build_dataset.build, "mh"), "heldout": (_DIR / "heldout", build_dataset.build_heldout, "ho")}


def _load(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name).read_text("utf-8").splitlines()]


@dataclass(frozen=True)
class EvalSet:
    name: str
    folder: Path
    documents: list[dict[str, Any]]
    questions: list[dict[str, Any]]

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        return {document["id"]: document for document in self.documents}


@pytest.fixture(params=sorted(SETS))
def data(request: pytest.FixtureRequest) -> EvalSet:
    folder = SETS[request.param][0]
    return EvalSet(request.param, folder, _load(folder, "corpus.jsonl"), _load(folder, "questions.jsonl"))


# A term in at least this many documents does not single out one of them: a second hop may share it.
COMMON_TERM_DOCUMENTS = 5


def _full_text(document: dict[str, Any]) -> str:
    return f"{document['title']} {document['text']}"


def _mentions(text: str, entity: str) -> bool:
    """Whole words only: "Priya Raman" must not be found inside "Priya Ramanathan"."""
    return re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", text, re.IGNORECASE) is not None


def test_the_committed_files_are_exactly_what_the_builder_writes(data: EvalSet) -> None:
    _, build, prefix = SETS[data.name]
    documents, questions = build()
    assert (data.folder / "corpus.jsonl").read_text("utf-8") == build_dataset.render(documents)
    assert (data.folder / "questions.jsonl").read_text("utf-8") == build_dataset.render(questions)
    assert build() == (documents, questions)  # one seed, the same set every time
    assert all(question["id"].startswith(f"{prefix}-") for question in questions)


def test_the_held_out_set_shares_no_name_with_the_development_set() -> None:
    dev, heldout = build_dataset.DEV_NAMES, build_dataset.HELDOUT_NAMES
    for field_name in ("offices", "people", "teams", "projects", "vendors"):
        assert not set(getattr(dev, field_name)) & set(getattr(heldout, field_name)), field_name
    managers = [{manager for _, _, manager in names.offices.values()} for names in (dev, heldout)]
    cities = [{city for city, _ in names.vendors.values()} for names in (dev, heldout)]
    assert not managers[0] & managers[1] and not cities[0] & cities[1]


def test_another_seed_makes_another_set_of_the_same_shape() -> None:
    documents, questions = build_dataset.build(seed=7)
    assert (documents, questions) != build_dataset.build()
    assert len(documents) == len(build_dataset.build()[0]) and len(questions) >= 40


def test_counts_and_the_mix_of_question_types(data: EvalSet) -> None:
    types = Counter(question["type"] for question in data.questions)
    assert len(data.documents) >= 60 and len(data.questions) >= 40
    assert set(types) == {"bridge", "comparison", "conjunction", "single"}
    assert 6 <= types["single"] <= 10  # controls
    assert types["bridge"] >= 20  # mostly multi-hop, bridges first of all
    assert len(data.by_id) == len(data.documents) and len({q["id"] for q in data.questions}) == len(data.questions)


def test_documents_and_questions_have_the_documented_fields(data: EvalSet) -> None:
    for document in data.documents:
        assert set(document) == {"id", "title", "text", "metadata"}
        # The gateway's id pattern, with the eval's prefix.
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", f"multihop-{document['id']}")
        assert all(isinstance(value, str) for value in document["metadata"].values())
    for question in data.questions:
        assert set(question) - {"bridge"} == {"id", "question", "type", "supporting", "expected", "rivals"}
        assert question["expected"] and all(isinstance(text, str) and text for text in question["expected"])


def test_rivals_are_other_values_of_the_kind_asked_for_and_occur_in_the_corpus(data: EvalSet) -> None:
    corpus = " ".join(_full_text(document) for document in data.documents)
    for question in data.questions:
        rivals = question["rivals"]
        assert len(set(rivals)) == len(rivals), question["id"]  # none: the question asks for every value
        assert not {r.casefold() for r in rivals} & {e.casefold() for e in question["expected"]}, question["id"]
        assert all(_mentions(corpus, rival) for rival in rivals), question["id"]


def test_every_supporting_document_exists_and_holds_the_expected_strings(data: EvalSet) -> None:
    by_id = data.by_id
    for question in data.questions:
        supporting = [by_id[document_id] for document_id in question["supporting"]]  # KeyError: missing
        assert len(set(question["supporting"])) == len(supporting)
        assert (len(supporting) == 1) == (question["type"] == "single"), question["id"]
        together = " ".join(_full_text(document) for document in supporting)
        for text in question["expected"]:
            assert text.casefold() in together.casefold(), (question["id"], text)


def test_bridge_entities_link_consecutive_hops_and_are_not_in_the_question(data: EvalSet) -> None:
    by_id = data.by_id
    for question in data.questions:
        texts = [_full_text(by_id[document_id]) for document_id in question["supporting"]]
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


def test_later_hops_share_only_common_terms_with_the_question(data: EvalSet) -> None:
    """A single search for the question has nothing but common words to find a bridge's second hop with."""
    terms = {document["id"]: set(ENGLISH_ANALYZER.terms(_full_text(document))) for document in data.documents}
    document_frequency = Counter(term for found in terms.values() for term in found)
    for question in (q for q in data.questions if q["type"] == "bridge"):
        asked = set(ENGLISH_ANALYZER.terms(question["question"]))
        for later_hop in question["supporting"][1:]:
            distinctive = {t for t in asked & terms[later_hop] if document_frequency[t] < COMMON_TERM_DOCUMENTS}
            assert not distinctive, (question["id"], later_hop, distinctive)


def test_similar_names_are_distinct_people_in_the_directory(data: EvalSet) -> None:
    staff = [
        document["title"].removeprefix("Staff directory: ")
        for document in data.documents
        if document["id"].startswith("staff-")
    ]
    names = build_dataset.DEV_NAMES if data.name == "dev" else build_dataset.HELDOUT_NAMES
    assert set(names.people) == set(staff) and names.twin in staff
    pairs = [(a, b) for a, b in zip(names.people[0:12:2], names.people[1:12:2], strict=True)]
    assert all(a.split()[0] == b.split()[0] or a.split()[-1] == b.split()[-1] for a, b in pairs)  # similar pairs
    for name in staff:  # no name inside another: "contains" matching of answers stays exact
        assert not [other for other in staff if other != name and _mentions(other, name)]

"""Bridge entities: names and codes found in text, which of them lead to the next hop of a question, the
question's words no evidence covers, and the follow-up search built from both."""

from __future__ import annotations

import pytest
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.agent.bridging import bridge_entities, bridge_query, uncovered_words
from ragstream_generate.agent.entities import clause_naming, find_entities

pytestmark = pytest.mark.unit

LEAD_QUESTION = "Which office does the lead of Project Falcon work from?"


def chunk(chunk_id: str, text: str, score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(chunk_id=chunk_id, document_id=f"doc-{chunk_id}", text=text, score=score)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Project Falcon is led by Dr. Maria Ortiz.", ["Project Falcon", "Maria Ortiz"]),
        ("Escalations go to Ms. Ortiz before Friday.", ["Ortiz"]),
        (
            "The audit covers ISO 27001 controls for SKU 4471 and ticket FAL-2291.",
            ["ISO 27001", "SKU 4471", "FAL-2291"],
        ),
        ("Staff may expense one iPhone per year through the HR portal.", ["iPhone", "HR"]),
        (
            'The pilot, code-named "Blue Harbor", reports to the Head of Engineering.',
            ["Blue Harbor", "Head of Engineering"],
        ),
        ("The Berlin office closes early on Friday in December.", ["Berlin"]),
        ("Falcon's budget was approved by the Berlin steering group.", ["Berlin"]),
        ("Heron ships in May. The Heron team sits in Lisbon.", ["Heron", "Lisbon"]),
        ("In March the policy changed. All staff were informed on Monday.", []),
        ("The hotel cap rose to EUR 180 per night in 2025.", []),
    ],
)
def test_find_entities_names_and_codes(text: str, expected: list[str]) -> None:
    assert find_entities(text) == expected


def test_find_entities_lists_each_name_once_in_order_of_first_mention() -> None:
    text = "Tom Berg approved FAL-2291. Later tom berg and Maria Ortiz reviewed FAL-2291 again."
    assert find_entities(text) == ["Tom Berg", "FAL-2291", "Maria Ortiz"]


def test_uncovered_words_are_the_question_words_no_evidence_mentions() -> None:
    evidence = [chunk("c1", "Project Falcon is led by Dr. Maria Ortiz.")]
    # "lead" is covered by "led"; question words (which, does, from) are never asked about.
    assert uncovered_words(LEAD_QUESTION, evidence) == ["office", "work"]
    evidence.append(chunk("c2", "Maria Ortiz works from the Lisbon office."))
    assert uncovered_words(LEAD_QUESTION, evidence) == []
    assert uncovered_words(LEAD_QUESTION, []) == ["office", "lead", "project", "falcon", "work"]


def test_uncovered_words_match_by_stem() -> None:
    evidence = [chunk("c1", "Parking allowances differ per office; Berlin offers 40 spaces.")]
    assert uncovered_words("What parking allowance does the Berlin office offer employees?", evidence) == ["employees"]


def test_the_bridge_is_the_entity_beside_the_question_terms_not_a_distractor() -> None:
    chunks = [
        chunk("c1", "The Heron offsite was organised by Tom Berg. Project Falcon is led by Dr. Maria Ortiz.", 0.9),
        chunk("c2", "Quarterly numbers are reviewed by Priya Nair in Munich.", 0.7),
    ]
    ranked = bridge_entities(LEAD_QUESTION, chunks)
    assert ranked[0].text == "Maria Ortiz" and ranked[0].chunk_id == "c1" and ranked[0].related
    assert {entity.text for entity in ranked[1:]} == {"Heron", "Tom Berg", "Priya Nair", "Munich"}
    # Names in the chunk that names the project are second choices; names elsewhere are noise.
    assert {entity.text for entity in ranked if entity.related} == {"Maria Ortiz", "Heron", "Tom Berg"}
    assert all(ranked[0].score > entity.score for entity in ranked[1:])


def test_a_related_mention_in_a_lower_chunk_beats_noise_in_the_top_chunk() -> None:
    chunks = [
        chunk("c1", "The cafeteria menu is set by Anna Kowalski every week.", 0.9),
        chunk("c2", "Since January, Project Falcon has been led by Omar Haddad.", 0.6),
    ]
    assert bridge_entities(LEAD_QUESTION, chunks)[0].text == "Omar Haddad"


# A directory page that shares only "office" and "work" with the question, ranked above the charter.
DISTRACTOR_FIRST = [
    chunk("becker", "Tom Becker works from the Oslo office.", 0.95),
    chunk("nilsen", "Ida Nilsen works from the Bergen office on Fridays.", 0.9),
    chunk("falcon", "Project Falcon is led by Dr. Maria Ortiz.", 0.8),
    chunk("kaur", "Raj Kaur works from the Leeds office.", 0.7),
]


def test_a_distractor_ranked_first_loses_to_the_entity_beside_the_questions_own_name() -> None:
    ranked = bridge_entities(LEAD_QUESTION, DISTRACTOR_FIRST)
    assert ranked[0].text == "Maria Ortiz" and ranked[0].chunk_id == "falcon" and ranked[0].related
    # "office" and "work" are in most of the evidence: sharing only them ties no name to the question.
    assert {entity.text for entity in ranked if entity.related} == {"Maria Ortiz"}


def test_with_no_chunk_naming_the_questions_entity_shared_common_words_still_relate() -> None:
    ranked = bridge_entities(LEAD_QUESTION, [c for c in DISTRACTOR_FIRST if c.chunk_id != "falcon"])
    assert ranked[0].text == "Tom Becker" and ranked[0].related  # nothing better to anchor on: rank decides


def test_generic_terms_weigh_less_than_rare_ones() -> None:
    chunks = [
        chunk("a", "Ana Duarte works from the Lisbon office."),
        chunk("b", "Marek Novak works from the Krakow office."),
        chunk("c", "The Lisbon office badge is issued by Nia Kamau."),
        chunk("d", "Office badges are approved by Colm Byrne, who leads security."),
    ]
    ranked = bridge_entities("Who leads the office badge process?", chunks, ranks=[0, 0, 0, 0])
    # "badge" (two chunks) and "lead" (one) outweigh "office" (all four) at equal rank.
    assert ranked[0].text == "Colm Byrne"


def test_a_followed_entity_anchors_the_next_hop_like_the_questions_own_name() -> None:
    question = "Who is the site manager of the office where Project Falcon's lead works?"
    chunks = [
        chunk("falcon", "Project Falcon is led by Maria Ortiz. Target launch: Q2 2026."),
        chunk("ortiz", "Maria Ortiz, product designer, Mobile Apps team. Works from the Lisbon office since 2019."),
        chunk("becker", "Tom Becker works from the Oslo office."),
    ]
    ranked = bridge_entities(question, chunks, exclude=["Maria Ortiz"], ranks=[0, 0, 1])
    assert ranked[0].text == "Lisbon"  # the hop Maria Ortiz led to, next to the question's "office"
    assert not next(entity for entity in ranked if entity.text == "Oslo").related


def test_entities_the_question_names_or_the_caller_excludes_are_not_bridges() -> None:
    chunks = [chunk("c1", "Project Falcon is led by Dr. Maria Ortiz, who reports to Tom Berg.")]
    assert [entity.text for entity in bridge_entities(LEAD_QUESTION, chunks)] == ["Maria Ortiz", "Tom Berg"]
    assert [entity.text for entity in bridge_entities(LEAD_QUESTION, chunks, exclude=["Maria Ortiz"])] == ["Tom Berg"]


def test_frequency_breaks_ties() -> None:
    chunks = [chunk("c1", "The Falcon team works from Lisbon and Porto. Porto hosts its lab. The Porto lab is new.")]
    ranked = [entity.text for entity in bridge_entities("Where is the Falcon team based?", chunks)]
    assert ranked[:2] == ["Porto", "Lisbon"]


def test_bridge_query_is_the_entity_and_the_uncovered_words() -> None:
    evidence = [chunk("c1", "Project Falcon is led by Dr. Maria Ortiz.")]
    assert bridge_query("Maria Ortiz", LEAD_QUESTION, evidence) == "Maria Ortiz office work"


def test_bridge_query_does_not_repeat_the_entitys_own_words() -> None:
    evidence = [chunk("c1", "Expense approvals for Project Falcon go to the Finance Office.")]
    question = "Which office approves Project Falcon expenses and where is it located?"
    assert bridge_query("Finance Office", question, evidence) == "Finance Office located"


INCIDENT = ScoredChunk(
    chunk_id="incident-inc-8942#0",
    document_id="incident-inc-8942",
    title="Incident report INC-8942",
    text="On 28 January 2025 the mobile push gateway was unavailable for 177 minutes. Root cause: a faulty schema "
    "migration. Incident commander: Siobhan Kelly; also on call: Marta Novak.",
)


def test_a_name_is_compared_with_the_question_by_its_clause_not_its_whole_sentence() -> None:
    # One sentence, two people: asked about the commander, only the commander's clause shares a word.
    commander = bridge_entities("Which team is the incident commander of INC-8942 part of?", [INCIDENT])
    assert [entity.text for entity in commander] == ["Siobhan Kelly", "Marta Novak"]
    assert commander[0].score > commander[1].score
    on_call = bridge_entities("Name the Lisbon-based person who was on call when INC-8942 happened.", [INCIDENT])
    assert [entity.text for entity in on_call] == ["Marta Novak", "Siobhan Kelly"]
    assert on_call[0].score > on_call[1].score


def test_a_chunk_names_what_its_title_names() -> None:
    # The incident's code is only in the report's title: both people are in the chunk about it, so both can
    # be bridges (the answer keeps the hop that answers); without that title, only the clause decides.
    question = "Which team is the incident commander of INC-8942 part of?"
    assert all(entity.related for entity in bridge_entities(question, [INCIDENT]))
    untitled = ScoredChunk(chunk_id="c1", document_id="report", text=INCIDENT.text)
    ranked = bridge_entities(question, [untitled])
    assert [(entity.text, entity.related) for entity in ranked] == [("Siobhan Kelly", True), ("Marta Novak", False)]


def test_both_clauses_relate_when_the_question_asks_about_both() -> None:
    ranked = bridge_entities("Of the people on call for incident INC-8942, who works from Lisbon?", [INCIDENT])
    assert {entity.text for entity in ranked if entity.related} == {"Siobhan Kelly", "Marta Novak"}


@pytest.mark.parametrize(
    ("sentence", "name", "clause"),
    [
        ("Incident commander: Siobhan Kelly; also on call: Marta Novak.", "marta novak", "also on call: Marta Novak."),
        ("Owner: Ana Duarte | backup: Tom Berg", "Ana Duarte", "Owner: Ana Duarte"),
        ("Leads: Ana Duarte \u2022 Tom Berg (deputy)", "Tom Berg", "Tom Berg (deputy)"),
        # Dashes bracket asides as often as they separate facts: the sentence stays whole.
        (
            "Maria Ortiz \u2014 the project lead \u2014 works from the Lisbon office.",
            "Maria Ortiz",
            "Maria Ortiz \u2014 the project lead \u2014 works from the Lisbon office.",
        ),
        ("Project Falcon is led by Maria Ortiz.", "Tom Berg", "Project Falcon is led by Maria Ortiz."),
    ],
)
def test_clause_naming_cuts_at_semicolons_bars_and_bullets(sentence: str, name: str, clause: str) -> None:
    assert clause_naming(sentence, name) == clause

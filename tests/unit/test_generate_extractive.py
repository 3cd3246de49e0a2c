import pytest
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.backends import (
    NO_ANSWER_TEXT,
    AnswerBackend,
    DraftAnswer,
    ExtractiveBackend,
    ExtractiveConfig,
)
from ragstream_generate.backends.extractive import compose_answer, wordish_tokens
from ragstream_generate.citations import parse_markers

pytestmark = pytest.mark.unit


def chunk(n: int, title: str, text: str, score: float) -> ScoredChunk:
    return ScoredChunk(
        chunk_id=f"c{n}", document_id=f"d{n}", version=1, title=title, text=text, position=0, score=score
    )


SOURCES = [
    chunk(1, "Security", "All data is encrypted at rest with AES-256. Keys rotate every 90 days.", 0.91),
    chunk(
        2,
        "Refund policy",
        "Refunds are issued within 30 days of purchase. Refunds go back to the original "
        "payment method.\n\nDamaged goods are replaced for free.",
        0.84,
    ),
    chunk(3, "Support", "Enterprise plans include 24/7 priority support. Tickets are answered within one hour.", 0.52),
]


async def collect(backend: AnswerBackend, question: str, sources: list[ScoredChunk]) -> tuple[list[str], DraftAnswer]:
    events = [event async for event in backend.stream(question, sources)]
    draft = events.pop()
    tokens = [event for event in events if isinstance(event, str)]
    assert isinstance(draft, DraftAnswer) and len(tokens) == len(events)
    return tokens, draft


def test_backend_satisfies_the_port() -> None:
    assert isinstance(ExtractiveBackend(), AnswerBackend)


def test_answer_cites_sources_with_verbatim_snippets() -> None:
    draft = compose_answer("How are refunds issued?", SOURCES)
    assert not draft.no_answer and not draft.degraded and draft.backend == "extractive"
    assert draft.text.startswith("Refunds are issued within 30 days of purchase [1].")
    assert [c.index for c in draft.citations] == [1]
    citation = draft.citations[0]
    assert citation.source == 1 and citation.score == pytest.approx(0.84)
    assert citation.snippet in SOURCES[1].text
    assert "Refunds" in citation.snippet


def test_citations_are_renumbered_by_first_citation() -> None:
    draft = compose_answer("How fast are enterprise support tickets answered?", SOURCES)
    assert [(c.index, c.source) for c in draft.citations] == [(1, 2)]
    assert parse_markers(draft.text, 3) == [1]
    for citation in draft.citations:
        assert citation.snippet in SOURCES[citation.source].text


def test_several_sources_each_numbered_once_in_order_of_appearance() -> None:
    draft = compose_answer("Is data encrypted, and are refunds issued?", SOURCES)
    assert [c.index for c in draft.citations] == list(range(1, len(draft.citations) + 1))
    assert {c.source for c in draft.citations} == {0, 1}
    assert parse_markers(draft.text, len(SOURCES)) == [c.index for c in draft.citations]


def test_sentences_of_one_source_keep_their_text_order() -> None:
    draft = compose_answer("Where do refunds go, and when are refunds issued?", SOURCES)
    first = draft.text.index("Refunds are issued")
    second = draft.text.index("Refunds go back")
    assert first < second
    assert draft.text.count("[1]") == 2


def test_max_sentences_and_near_duplicates() -> None:
    duplicate = chunk(4, "Refunds (copy)", "Refunds are issued within 30 days of purchase!", 0.8)
    draft = compose_answer(
        "refunds issued purchase payment method", [*SOURCES, duplicate], ExtractiveConfig(max_sentences=5)
    )
    assert draft.text.count("Refunds are issued within 30 days") == 1
    one = compose_answer("refunds issued purchase payment method", SOURCES, ExtractiveConfig(max_sentences=1))
    assert one.text.count("[") == 1


@pytest.mark.parametrize("question", ["What is the capital of Peru?", "What is it?", ""])
def test_no_answer_when_nothing_matches(question: str) -> None:
    draft = compose_answer(question, SOURCES)
    assert draft == DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend="extractive")


@pytest.mark.parametrize(
    "question", ["Can you tell me how refunds are issued?", "how long do refunds take", "tell me about support"]
)
def test_conversational_phrasing_does_not_hide_the_answer(question: str) -> None:
    # "tell", "me", "how", "long" are terms for the shared analyzer; found in no source, they must not
    # count against the words that are.
    draft = compose_answer(question, SOURCES)
    assert not draft.no_answer and len(draft.citations) == 1


def test_no_answer_without_sources() -> None:
    assert compose_answer("How are refunds issued?", []).no_answer


def test_chunk_without_sentence_punctuation_is_still_citable() -> None:
    bare = chunk(1, "Notes", "retention period for audit logs is seven years", 0.3)
    draft = compose_answer("audit log retention period", [bare])
    assert draft.text == "retention period for audit logs is seven years [1]"
    assert draft.citations[0].snippet == bare.text


async def test_stream_tokens_concatenate_to_the_final_text() -> None:
    tokens, draft = await collect(ExtractiveBackend(), "How are refunds issued?", SOURCES)
    assert len(tokens) > 5
    assert "".join(tokens) == draft.text
    _, no_answer = await collect(ExtractiveBackend(), "Who won the 1998 World Cup?", SOURCES)
    assert no_answer.no_answer and no_answer.citations == []


def test_wordish_tokens_round_trip() -> None:
    text = "  Leading space, [1]. trailing  "
    assert "".join(wordish_tokens(text)) == text

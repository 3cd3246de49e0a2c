import pytest
from pydantic import SecretStr
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.backends import (
    NO_ANSWER_TEXT,
    AnswerBackend,
    DraftAnswer,
    OpenAIChatBackend,
    OpenAIChatConfig,
)
from ragstream_generate.backends.openai_chat import build_messages, draft_from_completion

pytestmark = pytest.mark.unit

SOURCES = [
    ScoredChunk(
        chunk_id="c1",
        document_id="d1",
        title="Refund policy",
        score=0.8,
        text="Shipping is free. Refunds are issued within 30 days of purchase.",
    ),
    ScoredChunk(
        chunk_id="c2", document_id="d2", title="", score=0.5, text="Enterprise plans include 24/7 priority support."
    ),
]


def test_prompt_numbers_the_sources_and_asks_for_grounded_citations() -> None:
    system, user = build_messages("How long do refunds take?", SOURCES)
    assert system["role"] == "system" and "only" in system["content"]
    assert NO_ANSWER_TEXT in system["content"]
    assert '<source id="1" title="Refund policy">\nShipping is free.' in user["content"]
    assert '<source id="2" title="d2">\nEnterprise plans' in user["content"]  # untitled: the document id stands in
    assert user["content"].index('id="1"') < user["content"].index('id="2"')
    assert "<question>\nHow long do refunds take?\n</question>" in user["content"]


def test_draft_parses_markers_into_citations_with_best_sentence_snippets() -> None:
    answer = "Refunds are issued within 30 days [1]. Support is 24/7 [2][7]. Both apply [1, 2]."
    draft = draft_from_completion(answer, "How long do refunds take?", SOURCES)
    assert draft.text == answer.replace("[7]", "") and draft.backend == "openai"  # only sent sources are cited
    assert not draft.no_answer and not draft.degraded
    assert [(c.index, c.source) for c in draft.citations] == [(1, 0), (2, 1)]
    assert draft.citations[0].snippet == "Refunds are issued within 30 days of purchase."
    assert draft.citations[1].snippet == "Enterprise plans include 24/7 priority support."
    assert draft.citations[0].score == pytest.approx(0.8)


def test_draft_recognises_the_no_answer_reply() -> None:
    draft = draft_from_completion(NO_ANSWER_TEXT, "What is the capital of Peru?", SOURCES)
    assert draft.no_answer and draft.citations == []
    uncited = draft_from_completion("Probably Lima.", "What is the capital of Peru?", SOURCES)
    assert not uncited.no_answer and uncited.citations == []


async def test_no_sources_answers_without_calling_the_endpoint() -> None:
    # Port 9 (discard) is never contacted: with nothing to ground on the model is not asked.
    backend = OpenAIChatBackend(OpenAIChatConfig(base_url="http://127.0.0.1:9/v1", max_retries=0))
    assert isinstance(backend, AnswerBackend)
    events = [event async for event in backend.stream("Anything?", [])]
    assert events[-1] == DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend="openai")
    assert "".join(e for e in events if isinstance(e, str)) == NO_ANSWER_TEXT
    await backend.aclose()


def test_config_keeps_the_api_key_secret() -> None:
    config = OpenAIChatConfig(api_key=SecretStr("sk-test-123"))
    assert "sk-test-123" not in repr(config)
    assert config.api_key.get_secret_value() == "sk-test-123"

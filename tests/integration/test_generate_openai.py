"""The OpenAI-compatible backend against a local server speaking the chat-completions stream protocol."""

import socket
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.backends import DraftAnswer, OpenAIChatBackend, OpenAIChatConfig
from standins.openai_server import OpenAIStandin, Reply

pytestmark = pytest.mark.integration

QUESTION = "How are refunds issued?"
SOURCES = [
    ScoredChunk(
        chunk_id="c1",
        document_id="d1",
        version=1,
        title="Refund policy",
        score=0.9,
        text="Refunds are issued within 30 days of purchase. Damaged goods are replaced.",
    ),
    ScoredChunk(
        chunk_id="c2",
        document_id="d2",
        version=1,
        title="Support",
        score=0.6,
        text="Enterprise plans include 24/7 priority support. Tickets close within a day.",
    ),
]
ANSWER = (
    "Refunds are issued within 30 days of purchase [1]. "
    "Enterprise customers also get priority support [2][1]. Ignore [5]."
)
# Only two sources were sent: the [5] marker (and its space) is dropped from what streams and what is kept.
SENT_ANSWER = ANSWER.replace(" [5]", "")


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIStandin]:
    with OpenAIStandin() as standin:
        yield standin


def backend_for(base_url: str, timeout_s: float = 5.0, max_retries: int = 0) -> OpenAIChatBackend:
    config = OpenAIChatConfig(
        base_url=base_url,
        api_key=SecretStr("sk-standin"),
        model="standin-model",
        timeout_s=timeout_s,
        max_retries=max_retries,
        temperature=0.1,
    )
    return OpenAIChatBackend(config)


async def run(backend: OpenAIChatBackend) -> tuple[list[str], DraftAnswer, float]:
    started = time.monotonic()
    events = [event async for event in backend.stream(QUESTION, SOURCES)]
    elapsed = time.monotonic() - started
    await backend.aclose()
    draft = events.pop()
    tokens = [event for event in events if isinstance(event, str)]
    assert isinstance(draft, DraftAnswer) and len(tokens) == len(events)
    return tokens, draft, elapsed


def assert_degraded_extractive(draft: DraftAnswer) -> None:
    assert draft.degraded and draft.backend == "extractive" and not draft.no_answer
    assert draft.text.startswith("Refunds are issued within 30 days of purchase [1].")
    assert [(c.index, c.source) for c in draft.citations] == [(1, 0)]


async def test_streams_tokens_in_order_and_parses_citations(server: OpenAIStandin) -> None:
    server.script(Reply.answer(ANSWER, token_delay_s=0.005))
    tokens, draft, _ = await run(backend_for(server.base_url))
    assert len(tokens) > 10
    assert "".join(tokens) == SENT_ANSWER == draft.text
    assert not draft.degraded and not draft.no_answer and draft.backend == "openai"
    assert [(c.index, c.source) for c in draft.citations] == [(1, 0), (2, 1)]
    assert draft.citations[0].snippet == "Refunds are issued within 30 days of purchase."
    assert draft.citations[1].snippet == "Enterprise plans include 24/7 priority support."

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-standin"
    assert request.body["stream"] is True and request.body["model"] == "standin-model"
    assert request.body["temperature"] == pytest.approx(0.1)
    prompt = request.prompt()
    assert f'<source id="1" title="Refund policy">\n{SOURCES[0].text}\n</source>' in prompt
    assert f'<source id="2" title="Support">\n{SOURCES[1].text}\n</source>' in prompt
    assert f"<question>\n{QUESTION}\n</question>" in prompt


async def test_model_saying_no_answer_is_flagged(server: OpenAIStandin) -> None:
    server.script(Reply.answer("The indexed documents do not contain an answer to this question."))
    _, draft, _ = await run(backend_for(server.base_url))
    assert draft.no_answer and draft.citations == [] and not draft.degraded


async def test_http_500_after_retries_degrades_to_extractive(server: OpenAIStandin) -> None:
    server.script(Reply.error(500))
    tokens, draft, _ = await run(backend_for(server.base_url, max_retries=1))
    assert len(server.requests) == 2  # the first attempt and one retry
    assert_degraded_extractive(draft)
    assert "".join(tokens) == draft.text  # the fallback's answer is streamed too


async def test_retry_recovers_from_one_500(server: OpenAIStandin) -> None:
    server.script(Reply.error(503), Reply.answer(ANSWER))
    _, draft, _ = await run(backend_for(server.base_url, max_retries=2))
    assert len(server.requests) == 2
    assert not draft.degraded and draft.text == SENT_ANSWER


async def test_hang_times_out_within_the_configured_timeout(server: OpenAIStandin) -> None:
    server.script(Reply.hang(30))
    tokens, draft, elapsed = await run(backend_for(server.base_url, timeout_s=0.5, max_retries=2))
    assert 0.45 <= elapsed < 1.5  # SDK retries do not extend the first-token deadline
    assert_degraded_extractive(draft)
    assert "".join(tokens) == draft.text


async def test_stall_mid_stream_ends_with_a_degraded_final_answer(server: OpenAIStandin) -> None:
    server.script(Reply.hang_mid_stream(ANSWER, seconds=30))
    tokens, draft, elapsed = await run(backend_for(server.base_url, timeout_s=0.5))
    assert tokens and ANSWER.startswith("".join(tokens))  # the partial model answer went out
    assert elapsed < 1.5
    assert_degraded_extractive(draft)  # ...and the final draft replaces it


async def test_malformed_stream_degrades(server: OpenAIStandin) -> None:
    server.script(Reply.malformed())
    _, draft, _ = await run(backend_for(server.base_url))
    assert_degraded_extractive(draft)


async def test_empty_completion_degrades(server: OpenAIStandin) -> None:
    server.script(Reply.answer(""))
    _, draft, _ = await run(backend_for(server.base_url))
    assert_degraded_extractive(draft)


async def test_connection_refused_degrades() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, draft, elapsed = await run(backend_for(f"http://127.0.0.1:{port}/v1", timeout_s=2))
    assert_degraded_extractive(draft)
    assert elapsed < 2


async def test_standin_also_serves_non_streaming_completions(server: OpenAIStandin) -> None:
    from openai import AsyncOpenAI

    server.script(Reply.answer("Plain answer [1]."))
    async with AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Plain answer [1]."
    assert completion.choices[0].finish_reason == "stop"

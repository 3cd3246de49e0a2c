"""LLM tokens and generate latency of the OpenAI-compatible backend, against the local chat-completions stand-in
(tests/standins/openai_server.py, which reports `usage` when asked with `stream_options.include_usage`, as the
OpenAI API documents for streamed completions)."""

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_generate.backends import DraftAnswer, OpenAIChatBackend, OpenAIChatConfig
from ragstream_generate.backends.openai_chat import build_messages
from standins.openai_server import OpenAIStandin, Reply

pytestmark = pytest.mark.integration

QUESTION = "How are refunds issued?"
SOURCES = [
    ScoredChunk(chunk_id="c1", document_id="d1", title="Refunds", score=0.9, text="Refunds are issued in 30 days.")
]
ANSWER = "Refunds are issued within 30 days [1]."


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIStandin]:
    with OpenAIStandin() as standin:
        yield standin


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def answer(server: OpenAIStandin, stream_usage: bool) -> DraftAnswer:
    config = OpenAIChatConfig(
        base_url=server.base_url, api_key=SecretStr("sk-standin"), model="m", max_retries=0, stream_usage=stream_usage
    )
    backend = OpenAIChatBackend(config)
    try:
        events = [event async for event in backend.stream(QUESTION, SOURCES)]
    finally:
        await backend.aclose()
    draft = events[-1]
    assert isinstance(draft, DraftAnswer) and draft.backend == "openai" and not draft.degraded
    return draft


@pytest.mark.parametrize("stream_usage", [True, False], ids=["reported", "estimated"])
async def test_tokens_counted_per_backend_and_direction(server: OpenAIStandin, stream_usage: bool) -> None:
    server.script(Reply.answer(ANSWER))
    read, written = (
        value("ragstream_generate_tokens_total", backend="openai", direction="in"),
        value("ragstream_generate_tokens_total", backend="openai", direction="out"),
    )
    generate = value("ragstream_stage_seconds_count", stage="generate")
    draft = await answer(server, stream_usage)

    (request,) = server.requests[-1:]
    assert ("stream_options" in request.body) is stream_usage
    if stream_usage:  # the stand-in reports one completion token per streamed piece and no prompt tokens
        assert draft.tokens_out > 0 and draft.tokens_in == 0
    else:
        prompt = build_messages(QUESTION, SOURCES)
        assert draft.tokens_in == sum(len(message["content"].split()) for message in prompt)
        assert draft.tokens_out == len(ANSWER.split())
    assert value("ragstream_generate_tokens_total", backend="openai", direction="in") == read + draft.tokens_in
    assert value("ragstream_generate_tokens_total", backend="openai", direction="out") == written + draft.tokens_out
    assert value("ragstream_stage_seconds_count", stage="generate") == generate + 1

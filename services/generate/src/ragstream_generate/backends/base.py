"""The answer-backend port: stream answer text, then one structured draft answer."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.stage_metrics import STAGE_SECONDS

from ragstream_generate.metrics import TOKENS

NO_ANSWER_TEXT = "The indexed documents do not contain an answer to this question."


@dataclass(frozen=True)
class CitationRef:
    """One cited source: the [index] marker used in the answer text and the chunk it points at."""

    index: int  # the n of the [n] marker, 1-based
    source: int  # position of the cited chunk in the sources sequence, 0-based
    snippet: str  # a sentence copied verbatim from that chunk's text
    score: float  # the chunk's retrieval score


@dataclass(frozen=True)
class DraftAnswer:
    """The final event of a stream. `text` is authoritative over the streamed tokens."""

    text: str
    citations: list[CitationRef] = field(default_factory=list)
    no_answer: bool = False
    degraded: bool = False  # the configured backend failed and the extractive fallback answered
    backend: str = ""
    # What producing it cost (the tokens usage metering bills); not part of the answer's identity.
    tokens_in: int = field(default=0, compare=False)
    tokens_out: int = field(default=0, compare=False)


# A str is a piece of answer text; a DraftAnswer ends the stream.
AnswerEvent: TypeAlias = str | DraftAnswer


@runtime_checkable
class AnswerBackend(Protocol):
    name: str

    def stream(self, question: str, sources: Sequence[ScoredChunk]) -> AsyncIterator[AnswerEvent]:
        """Yield answer-text pieces, then exactly one DraftAnswer."""
        ...


def whitespace_tokens(*texts: str) -> int:
    """The token estimate of backends without a tokenizer: whitespace-separated words."""
    return sum(len(text.split()) for text in texts)


def count_tokens(draft: DraftAnswer) -> None:
    """Add the draft's tokens to `ragstream_generate_tokens_total` under the backend that wrote it."""
    TOKENS.labels(draft.backend, "in").inc(draft.tokens_in)
    TOKENS.labels(draft.backend, "out").inc(draft.tokens_out)


async def timed_generation(events: AsyncGenerator[AnswerEvent, None]) -> AsyncIterator[AnswerEvent]:
    """`events` unchanged; stage `generate` observes the time to the final draft (not what the caller spends
    between pieces after it)."""
    started = time.perf_counter()
    # aclosing: a caller stopping early closes the backend's stream (and its HTTP response) at once, not at GC.
    async with aclosing(events) as pending:
        async for event in pending:
            if isinstance(event, DraftAnswer):
                STAGE_SECONDS.labels("generate").observe(time.perf_counter() - started)
            yield event

"""The answer-backend port: stream answer text, then one structured draft answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from rag.v1.queries_pb2 import ScoredChunk

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


# A str is a piece of answer text; a DraftAnswer ends the stream.
AnswerEvent: TypeAlias = str | DraftAnswer


@runtime_checkable
class AnswerBackend(Protocol):
    name: str

    def stream(self, question: str, sources: Sequence[ScoredChunk]) -> AsyncIterator[AnswerEvent]:
        """Yield answer-text pieces, then exactly one DraftAnswer."""
        ...

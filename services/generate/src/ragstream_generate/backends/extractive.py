"""Extractive answers: the source sentences most relevant to the question, each cited with [n].

No model weights: relevance is BM25 over the candidate sentences (the question's terms, from the
project's one analyzer in `ragstream_common.text_analysis`, the same that built the retrieval index)
blended with the chunk's retrieval score. Pure CPU; about a millisecond for ten chunks.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.text_analysis import Bm25Parameters, bm25_idf, bm25_term_weight

from ragstream_generate.backends.base import (
    NO_ANSWER_TEXT,
    AnswerEvent,
    CitationRef,
    DraftAnswer,
    count_tokens,
    timed_generation,
    whitespace_tokens,
)
from ragstream_generate.citations import content_terms, sentence_spans

# Sentences are the "documents": the retrieval index's BM25 parameters serve them too.
_SENTENCE_BM25 = Bm25Parameters()
_WORDISH_TOKEN = re.compile(r"\s*\S+\s*$|\s*\S+")
_TERMINAL_PUNCT = re.compile(r"[.!?]+$")


@dataclass(frozen=True)
class ExtractiveConfig:
    max_sentences: int = 3
    # Share of the IDF weight of the question terms found in the candidates a sentence must match.
    min_coverage: float = 0.2
    # Sentences scoring below this fraction of the best one are left out.
    relative_floor: float = 0.35
    # Token-set Jaccard above which two sentences count as the same statement.
    duplicate_jaccard: float = 0.8
    # Weight of the (max-normalised) retrieval score against lexical relevance.
    retrieval_weight: float = 0.2


@dataclass
class _Sentence:
    source: int
    start: int
    text: str  # verbatim from the chunk
    terms: list[str]
    score: float = 0.0


def _candidates(sources: Sequence[ScoredChunk]) -> list[_Sentence]:
    return [
        _Sentence(source, start, chunk.text[start:end], content_terms(chunk.text[start:end]))
        for source, chunk in enumerate(sources)
        for start, end in sentence_spans(chunk.text)
    ]


def _retrieval_weights(sources: Sequence[ScoredChunk]) -> list[float]:
    """Retrieval scores scaled to [0, 1]; rank-based when scores are absent or not positive."""
    scores = [chunk.score for chunk in sources]
    top = max(scores, default=0.0)
    if top > 0 and min(scores) >= 0:
        return [score / top for score in scores]
    return [1.0 / (1 + rank) for rank in range(len(sources))]


def _score(
    question: set[str], sentences: list[_Sentence], sources: Sequence[ScoredChunk], config: ExtractiveConfig
) -> list[_Sentence]:
    """Set BM25-blended scores; return the sentences covering enough of the question."""
    count = len(sentences)
    document_frequency = Counter(term for s in sentences for term in set(s.terms) & question)
    idf = {t: bm25_idf(document_frequency[t], count) for t in question}
    # Coverage counts only question terms some candidate contains: over a handful of sentences a term found
    # nowhere ("tell", "how", "long") gets the top idf whether it is filler or substance, and would sink
    # every sentence of a chatty question. A question matching nothing still gets no answer.
    total_idf = sum(idf[t] for t in document_frequency)
    average_length = sum(len(s.terms) for s in sentences) / count or 1.0
    retrieval = _retrieval_weights(sources)
    relevant: list[_Sentence] = []
    for sentence in sentences:
        frequencies = Counter(t for t in sentence.terms if t in question)
        if not frequencies or sum(idf[t] for t in frequencies) < config.min_coverage * total_idf:
            continue
        sentence.score = sum(
            bm25_term_weight(tf, document_frequency[t], count, len(sentence.terms), average_length, _SENTENCE_BM25)
            for t, tf in frequencies.items()
        )
        relevant.append(sentence)
    best_lexical = max((s.score for s in relevant), default=1.0)
    for sentence in relevant:
        lexical = sentence.score / best_lexical
        weight = config.retrieval_weight
        sentence.score = (1 - weight) * lexical + weight * retrieval[sentence.source]
    return relevant


def _is_duplicate(sentence: _Sentence, chosen: list[_Sentence], threshold: float) -> bool:
    terms = set(sentence.terms)
    for other in chosen:
        other_terms = set(other.terms)
        union = terms | other_terms
        if union and len(terms & other_terms) / len(union) >= threshold:
            return True
    return False


def _select(relevant: list[_Sentence], config: ExtractiveConfig) -> list[_Sentence]:
    ranked = sorted(relevant, key=lambda s: (-s.score, s.source, s.start))
    chosen: list[_Sentence] = []
    for sentence in ranked:
        if len(chosen) == config.max_sentences or sentence.score < config.relative_floor * ranked[0].score:
            break
        if not _is_duplicate(sentence, chosen, config.duplicate_jaccard):
            chosen.append(sentence)
    return chosen


def _reading_order(chosen: list[_Sentence]) -> list[_Sentence]:
    """Sources by their best sentence (best first); sentences of one source in text order."""
    source_rank: dict[int, int] = {}
    for sentence in chosen:  # chosen is best-first
        source_rank.setdefault(sentence.source, len(source_rank))
    return sorted(chosen, key=lambda s: (source_rank[s.source], s.start))


def with_marker(sentence: str, index: int) -> str:
    """The sentence on one line with its [index] citation before the final punctuation."""
    flat = " ".join(sentence.split())
    punct = _TERMINAL_PUNCT.search(flat)
    if punct:
        return f"{flat[: punct.start()]} [{index}]{punct.group(0)}"
    return f"{flat} [{index}]"


@dataclass(frozen=True)
class RankedSentence:
    """A source sentence relevant to a question: `source` indexes the sources it came from."""

    source: int
    start: int
    text: str
    score: float


def ranked_sentences(
    question: str, sources: Sequence[ScoredChunk], config: ExtractiveConfig | None = None
) -> list[RankedSentence]:
    """The sentences covering enough of the question, best first (what the agent composes steps from)."""
    config = config or ExtractiveConfig()
    question_terms = set(content_terms(question))
    sentences = _candidates(sources) if question_terms else []
    relevant = _score(question_terms, sentences, sources, config) if sentences else []
    return [
        RankedSentence(s.source, s.start, s.text, s.score)
        for s in sorted(relevant, key=lambda s: (-s.score, s.source, s.start))
    ]


def selected_sentences(
    question: str, sources: Sequence[ScoredChunk], config: ExtractiveConfig | None = None
) -> list[RankedSentence]:
    """The sentences the single-shot answer is made of, in its reading order."""
    return [RankedSentence(s.source, s.start, s.text, s.score) for s in _chosen(question, sources, config)]


def _chosen(question: str, sources: Sequence[ScoredChunk], config: ExtractiveConfig | None) -> list[_Sentence]:
    config = config or ExtractiveConfig()
    question_terms = set(content_terms(question))
    sentences = _candidates(sources) if question_terms else []
    return _reading_order(_select(_score(question_terms, sentences, sources, config), config)) if sentences else []


def compose_answer(
    question: str, sources: Sequence[ScoredChunk], config: ExtractiveConfig | None = None, backend: str = "extractive"
) -> DraftAnswer:
    """The extractive answer, or the no-answer draft when no sentence matches the question."""
    chosen = _chosen(question, sources, config)
    if not chosen:
        return DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend=backend)
    index_of: dict[int, int] = {}  # source position -> [n], numbered by first citation
    snippet_of: dict[int, _Sentence] = {}  # the best chosen sentence of each cited source
    parts: list[str] = []
    for sentence in chosen:
        index = index_of.setdefault(sentence.source, len(index_of) + 1)
        if sentence.source not in snippet_of or sentence.score > snippet_of[sentence.source].score:
            snippet_of[sentence.source] = sentence
        parts.append(with_marker(sentence.text, index))
    citations = [
        CitationRef(index=index, source=source, snippet=snippet_of[source].text, score=sources[source].score)
        for source, index in index_of.items()
    ]
    return DraftAnswer(text=" ".join(parts), citations=citations, backend=backend)


def wordish_tokens(text: str) -> Iterator[str]:
    """Pieces of `text` (a word with its leading space) that concatenate back to `text`."""
    return (match.group(0) for match in _WORDISH_TOKEN.finditer(text))


class ExtractiveBackend:
    """AnswerBackend that needs no model: see compose_answer."""

    name = "extractive"

    def __init__(self, config: ExtractiveConfig | None = None) -> None:
        self._config = config or ExtractiveConfig()

    def answer(self, question: str, sources: Sequence[ScoredChunk]) -> DraftAnswer:
        """The answer, its words read (question and sources) and written counted as tokens."""
        draft = compose_answer(question, sources, self._config, self.name)
        tokens_in = whitespace_tokens(question, *(chunk.text for chunk in sources))
        draft = dataclasses.replace(draft, tokens_in=tokens_in, tokens_out=whitespace_tokens(draft.text))
        count_tokens(draft)
        return draft

    def stream(self, question: str, sources: Sequence[ScoredChunk]) -> AsyncIterator[AnswerEvent]:
        return timed_generation(self.answer_events(question, sources))

    async def answer_events(self, question: str, sources: Sequence[ScoredChunk]) -> AsyncGenerator[AnswerEvent, None]:
        """`stream` untimed: for a backend falling back to this one inside its own timed stream."""
        draft = self.answer(question, sources)
        for token in wordish_tokens(draft.text):
            yield token
        yield draft

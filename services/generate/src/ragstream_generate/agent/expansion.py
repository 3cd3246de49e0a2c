"""RM3 pseudo-relevance feedback: the question plus the words its best sources use for what it asks.

The relevance model (Lavrenko & Croft's RM1) weights a term by sum_d P(t|d) * P(d|q) over the top
feedback chunks, P(d|q) being the chunk's normalised retrieval score; RM3 interpolates it with the
question's own term distribution. A question that says "hotel cap" gains "nightly", "rate", "limit" when
those are how the policy words it. Terms come from the project's one analyzer, so an added word matches the
retrieval index exactly as the question's words do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.text_analysis import ENGLISH_ANALYZER

from ragstream_generate.agent.entities import QUESTION_WORDS

_QUESTION_STEMS = frozenset(ENGLISH_ANALYZER.terms(" ".join(QUESTION_WORDS)))


def _document_weights(chunks: Sequence[ScoredChunk]) -> list[float]:
    """P(d|q): retrieval scores summing to 1; rank-based when scores are absent or not positive."""
    scores = [chunk.score for chunk in chunks]
    if scores and min(scores) >= 0 and sum(scores) > 0:
        raw = scores
    else:
        raw = [1.0 / (1 + rank) for rank in range(len(chunks))]
    total = sum(raw)
    return [weight / total for weight in raw] if total else []


def relevance_model(feedback: Sequence[ScoredChunk]) -> dict[str, float]:
    """RM1: term -> sum over the feedback chunks of P(t|d) * P(d|q)."""
    weights: dict[str, float] = {}
    for chunk, document_weight in zip(feedback, _document_weights(feedback), strict=True):
        terms = [term for term in ENGLISH_ANALYZER.terms(chunk.text) if term not in _QUESTION_STEMS]
        for term, count in Counter(terms).items():
            weights[term] = weights.get(term, 0.0) + count / len(terms) * document_weight
    return weights


def rm3_weights(question: str, feedback: Sequence[ScoredChunk], original_weight: float = 0.5) -> dict[str, float]:
    """RM3: original_weight * P(t|question) + (1 - original_weight) * RM1(t)."""
    question_terms = [term for term in ENGLISH_ANALYZER.terms(question) if term not in _QUESTION_STEMS]
    weights = {term: (1 - original_weight) * weight for term, weight in relevance_model(feedback).items()}
    for term, count in Counter(question_terms).items():
        weights[term] = weights.get(term, 0.0) + original_weight * count / len(question_terms)
    return weights


def _surface_words(chunks: Sequence[ScoredChunk]) -> dict[str, str]:
    """stem -> its most frequent surface word in `chunks` (the first seen among equals)."""
    counts: Counter[tuple[str, str]] = Counter()
    for chunk in chunks:
        words = ENGLISH_ANALYZER.words(chunk.text)
        counts.update(zip(ENGLISH_ANALYZER.terms(chunk.text), words, strict=True))
    surface: dict[str, tuple[str, int]] = {}
    for (stem, word), count in counts.items():  # Counter keeps first-seen order
        if stem not in surface or count > surface[stem][1]:
            surface[stem] = (word, count)
    return {stem: word for stem, (word, _) in surface.items()}


def rm3_query(
    question: str,
    feedback: Sequence[ScoredChunk],
    *,
    feedback_docs: int = 3,
    expansion_terms: int = 8,
    original_weight: float = 0.5,
) -> str:
    """The question followed by the best-weighted words of the top feedback chunks it does not already have;
    the question unchanged when there is nothing to add."""
    top = list(feedback[:feedback_docs])
    asked = set(ENGLISH_ANALYZER.terms(question))
    weights = rm3_weights(question, top, original_weight)
    order = {term: index for index, term in enumerate(weights)}
    candidates = [term for term, weight in weights.items() if term not in asked and weight > 0]
    candidates.sort(key=lambda term: (-weights[term], order[term]))
    surface = _surface_words(top)
    added = [surface[term] for term in candidates[:expansion_terms]]
    return " ".join([question, *added]) if added else question

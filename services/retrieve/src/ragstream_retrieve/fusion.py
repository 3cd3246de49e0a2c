"""Rank fusion and near-duplicate removal: pure functions over retriever results."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ragstream_retrieve.models import Candidate, StoredChunk


@dataclass(frozen=True)
class FusedCandidate:
    key: int
    score: float
    # The retrievers' own scores; None where that retriever did not return the chunk.
    dense_score: float | None
    lexical_score: float | None


def reciprocal_rank_fusion(
    dense: Sequence[Candidate],
    lexical: Sequence[Candidate],
    *,
    k: float = 60.0,
    dense_weight: float = 1.0,
    lexical_weight: float = 1.0,
) -> list[FusedCandidate]:
    """Weighted RRF (Cormack et al. 2009): score = sum over retrievers of weight / (k + rank), ranks from 1.

    Inputs must be ordered best first. Ties keep dense order first, then lexical, so results are stable.
    """
    fused: dict[int, float] = {}
    dense_scores = {c.key: c.score for c in dense}
    lexical_scores = {c.key: c.score for c in lexical}
    for weight, ranking in ((dense_weight, dense), (lexical_weight, lexical)):
        for rank, candidate in enumerate(ranking, start=1):
            fused[candidate.key] = fused.get(candidate.key, 0.0) + weight / (k + rank)
    order = sorted(fused, key=lambda key: -fused[key])  # sorted() is stable: insertion order breaks ties
    return [FusedCandidate(key, fused[key], dense_scores.get(key), lexical_scores.get(key)) for key in order]


def single_ranking(candidates: Sequence[Candidate], *, dense: bool) -> list[FusedCandidate]:
    """One retriever's results as fused candidates whose score is that retriever's own score."""
    return [
        FusedCandidate(c.key, c.score, c.score if dense else None, None if dense else c.score) for c in candidates
    ]


def remove_near_duplicates(chunks: Iterable[StoredChunk], min_cosine: float) -> list[StoredChunk]:
    """Keep the first of each group of chunks with the same text hash or vectors at least `min_cosine` alike.

    `chunks` come best first, so the better-ranked copy survives. Vectors are L2-normalised: cosine = dot.
    """
    kept: list[StoredChunk] = []
    seen_hashes: set[str] = set()
    kept_vectors: list[np.ndarray] = []
    for chunk in chunks:
        if chunk.content_sha256 and chunk.content_sha256 in seen_hashes:
            continue
        if kept_vectors and float(np.max(np.stack(kept_vectors) @ chunk.embedding)) >= min_cosine:
            continue
        kept.append(chunk)
        seen_hashes.add(chunk.content_sha256)
        kept_vectors.append(chunk.embedding)
    return kept

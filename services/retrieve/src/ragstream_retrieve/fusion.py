"""Rank fusion and near-duplicate removal: pure functions over retriever results."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ragstream_retrieve.models import Candidate, ScoreNormalization, SearchTuning, StoredChunk


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
    for weight, ranking in ((dense_weight, dense), (lexical_weight, lexical)):
        for rank, candidate in enumerate(ranking, start=1):
            fused[candidate.key] = fused.get(candidate.key, 0.0) + weight / (k + rank)
    return _ranked(fused, dense, lexical)


def min_max_normalized(scores: Sequence[float]) -> tuple[list[float], float]:
    """Scores mapped onto [0, 1] by the list's own min and max, and the value for a candidate it lacks (0).

    A list of equal scores maps to 1: each is that retriever's best.
    """
    if not scores:
        return [], 0.0
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores), 0.0
    return [(s - low) / (high - low) for s in scores], 0.0


def z_score_normalized(scores: Sequence[float]) -> tuple[list[float], float]:
    """Standard scores over the list, and the value for a candidate it lacks: the list's minimum."""
    if not scores:
        return [], 0.0
    mean, deviation = statistics.fmean(scores), statistics.pstdev(scores)
    if deviation == 0:
        return [0.0] * len(scores), 0.0
    normalized = [(s - mean) / deviation for s in scores]
    return normalized, min(normalized)


NORMALIZATIONS: dict[ScoreNormalization, Callable[[Sequence[float]], tuple[list[float], float]]] = {
    "minmax": min_max_normalized,
    "zscore": z_score_normalized,
}


def convex_combination_fusion(
    dense: Sequence[Candidate],
    lexical: Sequence[Candidate],
    *,
    dense_weight: float = 1.0,
    lexical_weight: float = 1.0,
    normalization: ScoreNormalization = "minmax",
) -> list[FusedCandidate]:
    """score = alpha * dense' + (1 - alpha) * lexical' with alpha = dense_weight / (dense_weight + lexical_weight),
    each retriever's scores normalised over its own list for this query.

    Bruch et al. 2022 ("An Analysis of Fusion Functions for Hybrid Retrieval"): a convex combination of normalised
    scores keeps how far apart the candidates are, which rank fusion throws away. A candidate one retriever did not
    return gets that retriever's lowest normalised score (it ranked below the whole list). Ties keep dense order
    first, then lexical.
    """
    if dense_weight < 0 or lexical_weight < 0 or dense_weight + lexical_weight <= 0:
        raise ValueError(f"weights must be >= 0 and not both 0, got {dense_weight}, {lexical_weight}")
    alpha = dense_weight / (dense_weight + lexical_weight)
    normalize = NORMALIZATIONS[normalization]
    dense_norm, dense_missing = normalize([c.score for c in dense])
    lexical_norm, lexical_missing = normalize([c.score for c in lexical])
    dense_by_key = dict(zip((c.key for c in dense), dense_norm, strict=True))
    lexical_by_key = dict(zip((c.key for c in lexical), lexical_norm, strict=True))
    fused = {
        key: alpha * dense_by_key.get(key, dense_missing) + (1 - alpha) * lexical_by_key.get(key, lexical_missing)
        for key in [*dense_by_key, *lexical_by_key]
    }
    return _ranked(fused, dense, lexical)


def fuse(dense: Sequence[Candidate], lexical: Sequence[Candidate], tuning: SearchTuning) -> list[FusedCandidate]:
    """Hybrid fusion as the tuning says: convex combination of normalised scores (default) or weighted RRF."""
    if tuning.fusion == "rrf":
        return reciprocal_rank_fusion(
            dense, lexical, k=tuning.rrf_k, dense_weight=tuning.dense_weight, lexical_weight=tuning.lexical_weight
        )
    return convex_combination_fusion(
        dense,
        lexical,
        dense_weight=tuning.dense_weight,
        lexical_weight=tuning.lexical_weight,
        normalization=tuning.score_normalization,
    )


def _ranked(fused: dict[int, float], dense: Sequence[Candidate], lexical: Sequence[Candidate]) -> list[FusedCandidate]:
    dense_scores = {c.key: c.score for c in dense}
    lexical_scores = {c.key: c.score for c in lexical}
    order = sorted(fused, key=lambda key: -fused[key])  # sorted() is stable: insertion order breaks ties
    return [FusedCandidate(key, fused[key], dense_scores.get(key), lexical_scores.get(key)) for key in order]


def single_ranking(candidates: Sequence[Candidate], *, dense: bool) -> list[FusedCandidate]:
    """One retriever's results as fused candidates whose score is that retriever's own score."""
    return [FusedCandidate(c.key, c.score, c.score if dense else None, None if dense else c.score) for c in candidates]


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

"""Reciprocal rank fusion and near-duplicate removal."""

from __future__ import annotations

import numpy as np
import pytest
from ragstream_retrieve.fusion import reciprocal_rank_fusion, remove_near_duplicates, single_ranking
from ragstream_retrieve.models import Candidate, StoredChunk

pytestmark = pytest.mark.unit


def _chunk(key: int, vector: list[float], sha: str | None = None) -> StoredChunk:
    embedding = np.asarray(vector, dtype=np.float32)
    return StoredChunk(
        key=key, chunk_id=f"c{key}", document_id="d", version=1, title="", text="", position=key, metadata={},
        content_sha256=sha or f"sha{key}", embedding=embedding / np.linalg.norm(embedding),
    )


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    dense = [Candidate(1, 0.9), Candidate(2, 0.8)]
    lexical = [Candidate(2, 12.0), Candidate(3, 7.0)]
    fused = reciprocal_rank_fusion(dense, lexical, k=60)
    assert [c.key for c in fused] == [2, 1, 3]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61)
    assert fused[2].score == pytest.approx(1 / 62)
    assert (fused[0].dense_score, fused[0].lexical_score) == (0.8, 12.0)
    assert (fused[1].dense_score, fused[1].lexical_score) == (0.9, None)
    assert (fused[2].dense_score, fused[2].lexical_score) == (None, 7.0)


def test_rrf_weights_shift_the_balance() -> None:
    dense = [Candidate(1, 0.9), Candidate(2, 0.8)]
    lexical = [Candidate(2, 5.0), Candidate(1, 4.0)]
    assert [c.key for c in reciprocal_rank_fusion(dense, lexical, dense_weight=2.0)] == [1, 2]
    assert [c.key for c in reciprocal_rank_fusion(dense, lexical, lexical_weight=2.0)] == [2, 1]


def test_rrf_ties_keep_dense_order_first() -> None:
    fused = reciprocal_rank_fusion([Candidate(1, 0.9)], [Candidate(2, 3.0)])
    assert [c.key for c in fused] == [1, 2]
    assert fused[0].score == fused[1].score


def test_rrf_of_nothing_is_nothing() -> None:
    assert reciprocal_rank_fusion([], []) == []


def test_single_ranking_keeps_the_retrievers_scores() -> None:
    dense = single_ranking([Candidate(4, 0.7)], dense=True)[0]
    lexical = single_ranking([Candidate(5, 9.5)], dense=False)[0]
    assert (dense.score, dense.dense_score, dense.lexical_score) == (0.7, 0.7, None)
    assert (lexical.score, lexical.dense_score, lexical.lexical_score) == (9.5, None, 9.5)


def test_same_text_hash_keeps_the_better_ranked_copy() -> None:
    chunks = [_chunk(1, [1, 0, 0], "same"), _chunk(2, [0, 1, 0], "same"), _chunk(3, [0, 0, 1])]
    assert [c.key for c in remove_near_duplicates(chunks, 0.98)] == [1, 3]


def test_near_identical_vectors_are_dropped_distinct_ones_kept() -> None:
    chunks = [_chunk(1, [1, 0, 0]), _chunk(2, [1, 0.05, 0]), _chunk(3, [1, 1, 0])]
    # cos(1, 2) ~ 0.9988 >= 0.98; cos(1, 3) ~ 0.707
    assert [c.key for c in remove_near_duplicates(chunks, 0.98)] == [1, 3]
    assert [c.key for c in remove_near_duplicates(chunks, 0.9999)] == [1, 2, 3]

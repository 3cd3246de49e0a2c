"""Score fusion (convex combination, RRF) and near-duplicate removal, on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from ragstream_retrieve.fusion import (
    convex_combination_fusion,
    fuse,
    min_max_normalized,
    reciprocal_rank_fusion,
    remove_near_duplicates,
    single_ranking,
    z_score_normalized,
)
from ragstream_retrieve.models import Candidate, SearchTuning, StoredChunk

pytestmark = pytest.mark.unit


def _chunk(key: int, vector: list[float], sha: str | None = None) -> StoredChunk:
    embedding = np.asarray(vector, dtype=np.float32)
    return StoredChunk(
        key=key,
        chunk_id=f"c{key}",
        document_id="d",
        version=1,
        title="",
        text="",
        position=key,
        metadata={},
        content_sha256=sha or f"sha{key}",
        embedding=embedding / np.linalg.norm(embedding),
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


def test_min_max_maps_each_list_onto_0_1_and_missing_to_0() -> None:
    assert min_max_normalized([6.0, 4.0, 2.0]) == ([1.0, 0.5, 0.0], 0.0)
    # Equal scores are all that retriever's best.
    assert min_max_normalized([3.0, 3.0]) == ([1.0, 1.0], 0.0)
    assert min_max_normalized([]) == ([], 0.0)


def test_z_score_centres_each_list_and_missing_gets_its_minimum() -> None:
    # mean 2, population deviation sqrt(2/3)
    normalized, missing = z_score_normalized([3.0, 2.0, 1.0])
    assert normalized == pytest.approx([1.5**0.5, 0.0, -(1.5**0.5)])
    assert missing == pytest.approx(-(1.5**0.5))
    assert z_score_normalized([5.0, 5.0]) == ([0.0, 0.0], 0.0)


def test_convex_combination_of_min_max_scores() -> None:
    dense = [Candidate(1, 0.9), Candidate(2, 0.7), Candidate(3, 0.5)]  # -> 1, 0.5, 0
    lexical = [Candidate(2, 10.0), Candidate(4, 6.0), Candidate(1, 2.0)]  # -> 1, 0.5, 0
    fused = convex_combination_fusion(dense, lexical)
    # 1: (1 + 0) / 2, 2: (0.5 + 1) / 2, 3: (0 + missing 0) / 2, 4: (missing 0 + 0.5) / 2
    assert [(c.key, c.score) for c in fused] == [(2, 0.75), (1, 0.5), (4, 0.25), (3, 0.0)]
    assert [(c.dense_score, c.lexical_score) for c in fused] == [(0.7, 10.0), (0.9, 2.0), (None, 6.0), (0.5, None)]
    # alpha = 3 / (3 + 1): 1: 0.75, 2: 0.375 + 0.25, 4: 0.125, 3: 0
    weighted = convex_combination_fusion(dense, lexical, dense_weight=3.0, lexical_weight=1.0)
    assert [c.key for c in weighted] == [1, 2, 4, 3]
    assert [c.score for c in weighted] == pytest.approx([0.75, 0.625, 0.125, 0.0])


def test_convex_keeps_score_gaps_that_rank_fusion_discards() -> None:
    # B is a close second in both lists; A and C each win one list by a little and lose the other by a lot.
    dense = [Candidate(1, 0.80), Candidate(2, 0.79), Candidate(3, 0.20)]
    lexical = [Candidate(3, 9.0), Candidate(2, 8.0), Candidate(1, 1.0)]
    convex = convex_combination_fusion(dense, lexical)
    assert convex[0].key == 2 and convex[0].score == pytest.approx(0.5 * 0.59 / 0.6 + 0.5 * 7 / 8)
    assert [c.key for c in reciprocal_rank_fusion(dense, lexical)][-1] == 2  # 2/62 < 1/61 + 1/63


def test_convex_with_z_scores() -> None:
    dense = [Candidate(1, 3.0), Candidate(2, 2.0), Candidate(3, 1.0)]  # -> 1.2247, 0, -1.2247
    lexical = [Candidate(4, 20.0), Candidate(2, 10.0)]  # -> 1, -1; missing -1
    fused = convex_combination_fusion(dense, lexical, normalization="zscore")
    assert [c.key for c in fused] == [1, 4, 2, 3]
    z = 1.5**0.5  # 1 / sqrt(2/3)
    assert [c.score for c in fused] == pytest.approx([(z - 1) / 2, (1 - z) / 2, -0.5, (-z - 1) / 2])


def test_convex_ties_keep_dense_order_first_and_nothing_fuses_to_nothing() -> None:
    fused = convex_combination_fusion([Candidate(1, 0.5)], [Candidate(2, 3.0)])
    assert [(c.key, c.score) for c in fused] == [(1, 0.5), (2, 0.5)]
    assert convex_combination_fusion([], []) == []


def test_convex_refuses_weights_that_are_negative_or_both_zero() -> None:
    for weights in ((0.0, 0.0), (-1.0, 1.0)):
        with pytest.raises(ValueError):
            convex_combination_fusion([], [], dense_weight=weights[0], lexical_weight=weights[1])


def test_fuse_follows_the_tuning() -> None:
    dense = [Candidate(1, 0.80), Candidate(2, 0.79), Candidate(3, 0.20)]
    lexical = [Candidate(3, 9.0), Candidate(2, 8.0), Candidate(1, 1.0)]
    assert fuse(dense, lexical, SearchTuning()) == convex_combination_fusion(dense, lexical)
    zscore = SearchTuning(score_normalization="zscore", dense_weight=2.0)
    assert fuse(dense, lexical, zscore) == convex_combination_fusion(
        dense, lexical, dense_weight=2.0, normalization="zscore"
    )
    rrf = SearchTuning(fusion="rrf", rrf_k=10.0, lexical_weight=1.5)
    assert fuse(dense, lexical, rrf) == reciprocal_rank_fusion(dense, lexical, k=10.0, lexical_weight=1.5)


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

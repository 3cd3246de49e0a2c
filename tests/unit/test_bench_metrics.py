"""The benchmark's retrieval metrics against values computed by hand (trec_eval definitions, as BEIR uses)."""

from __future__ import annotations

import pytest
from support.bench_modules import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.unit

metrics = load_benchmark("bench_metrics", BENCHMARKS / "metrics.py")

# d2 (grade 2) at rank 2, d4 (grade 1) at rank 4, d5 (grade 1) never retrieved.
RANKING = ["d1", "d2", "d3", "d4"]
QRELS = {"d2": 2, "d4": 1, "d5": 1}


def test_ndcg_uses_graded_gains_and_the_ideal_order_of_all_judged_documents() -> None:
    # DCG = 2/log2(3) + 1/log2(5) = 1.261860 + 0.430677 = 1.692536
    # IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.630930 + 0.5 = 3.130930
    assert metrics.ndcg_at_k(RANKING, QRELS, 10) == pytest.approx(1.692536 / 3.130930, abs=1e-6)
    assert metrics.ndcg_at_k(RANKING, QRELS, 10) == pytest.approx(0.540586, abs=1e-6)


def test_ndcg_cuts_the_ranking_and_the_ideal_at_k() -> None:
    assert metrics.ndcg_at_k(RANKING, QRELS, 1) == 0.0
    # k=2: DCG = 2/log2(3) = 1.261860; IDCG@2 = 2 + 1/log2(3) = 2.630930
    assert metrics.ndcg_at_k(RANKING, QRELS, 2) == pytest.approx(1.261860 / 2.630930, abs=1e-6)


def test_perfect_ranking_scores_one_and_no_relevant_documents_score_zero() -> None:
    assert metrics.ndcg_at_k(["d2", "d4", "d5"], QRELS, 10) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(RANKING, {"d9": 0}, 10) == 0.0
    assert metrics.ndcg_at_k([], QRELS, 10) == 0.0


def test_recall_counts_relevant_documents_found_within_k() -> None:
    assert metrics.recall_at_k(RANKING, QRELS, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKING, QRELS, 10) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(RANKING, QRELS, 100) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(["d2", "d4", "d5"], QRELS, 3) == 1.0


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document_within_k() -> None:
    assert metrics.mrr_at_k(RANKING, QRELS, 10) == 0.5
    assert metrics.mrr_at_k(RANKING, QRELS, 1) == 0.0
    assert metrics.mrr_at_k(["x"] * 3 + ["d5"], QRELS, 10) == 0.25


def test_grade_zero_is_judged_but_not_relevant() -> None:
    qrels = {"d1": 0, "d2": 1}
    assert metrics.mrr_at_k(["d1", "d2"], qrels, 10) == 0.5
    assert metrics.recall_at_k(["d1", "d2"], qrels, 1) == 0.0
    assert metrics.ndcg_at_k(["d1", "d2"], qrels, 10) == pytest.approx(1 / 1.584963, abs=1e-6)


def test_chunks_aggregate_to_documents_at_their_best_rank() -> None:
    assert metrics.documents_in_rank_order(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_evaluate_averages_over_judged_queries_and_scores_missing_rankings_zero() -> None:
    qrels = {"q1": QRELS, "q2": {"d7": 1}}
    scores = metrics.evaluate({"q1": RANKING}, qrels)
    assert scores["ndcg@10"] == pytest.approx(0.540586 / 2, abs=1e-6)
    assert scores["recall@10"] == pytest.approx(1 / 3)
    assert scores["recall@100"] == pytest.approx(1 / 3)
    assert scores["mrr@10"] == pytest.approx(0.25)


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    assert metrics.percentile([10, 20, 30, 40], 50) == 25.0
    assert metrics.percentile([1, 2, 3, 4, 5], 99) == pytest.approx(4.96)
    summary = metrics.latency_summary([5.0] * 10)
    assert summary["p50_ms"] == summary["p99_ms"] == 5.0 and summary["n"] == 10

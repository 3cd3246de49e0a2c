"""Retrieval metrics as BEIR reports them (pytrec_eval / trec_eval definitions) and latency percentiles.

A ranking is a list of document ids, best first; qrels map document ids to graded relevance. Documents with a
grade of 0 or less are not relevant (trec_eval's relevance level 1), and gains are the grades themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Qrels = Mapping[str, int]


def documents_in_rank_order(document_ids: Iterable[str]) -> list[str]:
    """Chunk results to documents: each document at the rank of its first (best) chunk."""
    return list(dict.fromkeys(document_ids))


def _relevant(qrels: Qrels) -> set[str]:
    return {document for document, grade in qrels.items() if grade > 0}


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with the log2(rank + 1) discount, ranks from 1."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    gains = [max(qrels.get(document, 0), 0) for document in ranking[:k]]
    ideal = dcg(sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k])
    return dcg(gains) / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    relevant = _relevant(qrels)
    for rank, document in enumerate(ranking[:k], start=1):
        if document in relevant:
            return 1.0 / rank
    return 0.0


def evaluate(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Qrels]) -> dict[str, float]:
    """Mean nDCG@10, recall@10, recall@100 and MRR@10 over every query in `qrels` (a missing ranking scores 0)."""
    scores: dict[str, list[float]] = {"ndcg@10": [], "recall@10": [], "recall@100": [], "mrr@10": []}
    for query_id, judged in qrels.items():
        ranking = rankings.get(query_id, [])
        scores["ndcg@10"].append(ndcg_at_k(ranking, judged, 10))
        scores["recall@10"].append(recall_at_k(ranking, judged, 10))
        scores["recall@100"].append(recall_at_k(ranking, judged, 100))
        scores["mrr@10"].append(mrr_at_k(ranking, judged, 10))
    return {name: float(np.mean(values)) if values else 0.0 for name, values in scores.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(latencies_ms),
        "mean_ms": round(float(np.mean(latencies_ms)), 1) if latencies_ms else math.nan,
        "p50_ms": round(percentile(latencies_ms, 50), 1),
        "p95_ms": round(percentile(latencies_ms, 95), 1),
        "p99_ms": round(percentile(latencies_ms, 99), 1),
    }

"""bench-embed's pure helpers: dense ranking by best chunk, and the summary's ratios against torch."""

from __future__ import annotations

import numpy as np
import pytest
from support.bench_modules import load_benchmark

pytestmark = pytest.mark.unit

bench = load_benchmark("embed_backends")


def test_a_document_ranks_by_its_best_chunk_once() -> None:
    chunks = [("d1", "a"), ("d2", "b"), ("d1", "c"), ("d3", "d")]
    chunk_vectors = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
    queries = np.array([[0, 1], [1, 0]], dtype=np.float32)
    rankings = bench.dense_rankings(["q1", "q2"], queries, chunk_vectors, chunks)
    assert rankings == {"q1": ["d1", "d2", "d3"], "q2": ["d1", "d2", "d3"]}


def figures(chunks_per_s: float, p50: float, ndcg: float) -> dict[str, object]:
    return {
        "docs_chunks_per_s": chunks_per_s,
        "query": {"p50_ms": p50, "p99_ms": p50 * 2},
        "peak_rss_mb": 500.0,
        "ndcg@10": ndcg,
    }


def test_the_summary_compares_the_default_backend_with_torch() -> None:
    results = {"torch": figures(20.0, 15.0, 0.65), "onnx-int8": figures(70.0, 3.0, 0.648)}
    summary = bench.summarise(results, "onnx-int8")
    assert (summary["speedup_docs"], summary["speedup_query"], summary["ndcg_loss"]) == (3.5, 5.0, 0.002)
    assert summary["torch"]["query_p99_ms"] == 30.0 and summary["default"] == "onnx-int8"


def test_without_torch_measured_there_are_no_ratios() -> None:
    summary = bench.summarise({"onnx": figures(30.0, 7.0, 0.65)}, "onnx")
    assert "speedup_docs" not in summary and summary["onnx"]["docs_chunks_per_s"] == 30.0

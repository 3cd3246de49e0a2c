"""The peers benchmark's pure helpers: the SciFact subset, database URLs, scoring rows, goals, the peers' output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.bench_modules import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.unit


peers = load_benchmark("bench_peers", BENCHMARKS / "peers.py")
common = load_benchmark("bench_peers_common", BENCHMARKS / "peers" / "common.py")
Document = sys.modules["corpus"].Document


def _corpus(n: int) -> list[object]:
    return [Document(f"d{i}", f"title {i}", f"text {i}") for i in range(n)]


QUERIES = {"q1": "first", "q2": "second", "q3": "unjudged", "q4": "judged outside the corpus"}
QRELS = {"q1": {"d3": 1, "d9": 0}, "q2": {"d7": 1, "d3": 1}, "q4": {"missing": 1}}


def test_subset_keeps_judged_queries_in_order_every_relevant_document_and_fills_with_distractors() -> None:
    documents, queries, qrels = peers.select_subset(
        _corpus(50), QUERIES, QRELS, limit_queries=None, corpus_size=10, seed=17
    )
    ids = [d.corpus_id for d in documents]
    assert list(queries) == ["q1", "q2"]  # q3 has no judgement, q4 none inside the corpus
    assert qrels == {"q1": {"d3": 1, "d9": 0}, "q2": {"d7": 1, "d3": 1}}
    assert len(ids) == 10 and {"d3", "d7"} <= set(ids)
    assert ids == sorted(ids, key=lambda d: int(d[1:]))  # corpus order


def test_subset_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    def ids(seed: int) -> list[str]:
        subset = peers.select_subset(_corpus(200), QUERIES, QRELS, limit_queries=None, corpus_size=20, seed=seed)
        return [d.corpus_id for d in subset[0]]

    assert ids(17) == ids(17)
    assert ids(17) != ids(18)


def test_subset_limits_queries_and_never_drops_a_relevant_document_for_size() -> None:
    documents, queries, _ = peers.select_subset(_corpus(50), QUERIES, QRELS, limit_queries=1, corpus_size=0, seed=1)
    assert list(queries) == ["q1"]
    assert [d.corpus_id for d in documents] == ["d3"]


def test_subset_larger_than_the_corpus_takes_all_of_it() -> None:
    documents, _, _ = peers.select_subset(_corpus(12), QUERIES, QRELS, limit_queries=None, corpus_size=500, seed=1)
    assert len(documents) == 12


def test_database_url_replaces_only_the_database() -> None:
    assert peers.database_url("postgresql://postgres@127.0.0.1:5432/ragstream", "p") == (
        "postgresql://postgres@127.0.0.1:5432/p"
    )
    assert peers.database_url("postgresql://u:pw@h/ragstream?sslmode=require", "p") == (
        "postgresql://u:pw@h/p?sslmode=require"
    )
    assert peers.database_url("postgresql://u@h:1", "p") == "postgresql://u@h:1/p"


def test_with_driver_names_the_sqlalchemy_driver() -> None:
    assert common.with_driver("postgresql://u@h:1/db", "asyncpg") == "postgresql+asyncpg://u@h:1/db"
    assert common.with_driver("postgres+psycopg://u@h/db", "psycopg2") == "postgresql+psycopg2://u@h/db"
    with pytest.raises(ValueError):
        common.with_driver("mysql://u@h/db", "psycopg2")


def test_score_collapses_chunks_to_documents_and_rounds() -> None:
    ingest = {"chunks_per_s": 12.3456, "documents_per_s": 5.0, "chunks": 40}
    # d3 twice (two chunks): the document counts once, at its best rank, so d7 ranks 2nd.
    row = peers.score(ingest, {"q1": ["d3", "d3", "d7"]}, [10.0, 20.0, 30.0], 0, {"q1": {"d7": 1}})
    assert row["ingest_chunks_per_s"] == 12.35 and row["chunks"] == 40
    assert row["p50_ms"] == 20.0
    assert row["ndcg@10"] == pytest.approx(1 / 1.5849625, abs=1e-4)  # 1/log2(3)
    assert row["recall@10"] == 1.0


def _row(chunks_per_s: float, p50_ms: float, ndcg: float, documents_per_s: float = 1.0) -> dict[str, float]:
    return {
        "ingest_chunks_per_s": chunks_per_s,
        "ingest_documents_per_s": documents_per_s,
        "p50_ms": p50_ms,
        "ndcg@10": ndcg,
    }


def test_goals_compare_ragstream_hybrid_with_every_peer() -> None:
    rows = {
        "ragstream_hybrid": _row(30.0, 45.0, 0.75),
        "llamaindex": _row(25.0, 30.0, 0.70),
        "haystack": _row(28.0, 40.0, 0.72, documents_per_s=2.0),
    }
    assert peers.goals(rows) == {
        "ingest_at_least_peers": True,
        "ingest_documents_at_least_peers": False,
        "p50_within_1_5x": True,
        "p50_ratio": 1.5,
        "ndcg_above_peers": True,
    }
    rows["haystack"] = _row(31.0, 29.0, 0.75)
    verdict = peers.goals(rows)
    assert verdict["ingest_at_least_peers"] is False
    assert verdict["p50_within_1_5x"] is False
    assert verdict["ndcg_above_peers"] is False  # a tie is not above


def test_goals_are_unknown_without_a_peer_or_ragstream() -> None:
    assert peers.goals({"ragstream_hybrid": _row(1, 1, 1)})["ndcg_above_peers"] is None
    assert peers.goals({"haystack": _row(1, 1, 1)})["p50_within_1_5x"] is None


def test_time_queries_warms_up_untimed_and_reports_failures() -> None:
    calls: list[str] = []

    def search(text: str) -> list[str]:
        calls.append(text)
        if text == "boom":
            raise RuntimeError("no")
        return [f"{text}-doc"]

    queries = [{"_id": "1", "text": "a"}, {"_id": 2, "text": "boom"}, {"_id": "3", "text": "c"}]
    rankings, latencies, failures = common.time_queries(search, queries, warmup=1)
    assert calls == ["a", "a", "boom", "c"]
    assert rankings == {"1": ["a-doc"], "3": ["c-doc"]}
    assert len(latencies) == 2
    assert failures == ["2: RuntimeError: no"]


def test_emit_writes_everything_and_prints_the_brief_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = {"system": "x", "ingest": {"chunks": 1}, "rankings": {"q": ["d"]}, "latencies_ms": [1.0]}
    common.emit(tmp_path / "out.json", result)
    assert json.loads((tmp_path / "out.json").read_text()) == result
    assert json.loads(capsys.readouterr().out.strip()) == {"system": "x", "ingest": {"chunks": 1}}


def test_ingest_figures() -> None:
    assert common.ingest_figures(10, 25, 5.0, 1.234) == {
        "documents": 10,
        "chunks": 25,
        "elapsed_s": 5.0,
        "documents_per_s": 2.0,
        "chunks_per_s": 5.0,
        "model_load_s": 1.23,
    }


def test_write_inputs_round_trips_through_the_peers_loader(tmp_path: Path) -> None:
    peers.write_inputs(tmp_path, _corpus(2), {"q1": "first"})
    assert common.load_jsonl(tmp_path / "corpus.jsonl") == [
        {"_id": "d0", "title": "title 0", "text": "text 0"},
        {"_id": "d1", "title": "title 1", "text": "text 1"},
    ]
    assert common.load_jsonl(tmp_path / "queries.jsonl") == [{"_id": "q1", "text": "first"}]

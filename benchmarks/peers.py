"""Ragstream end to end against LlamaIndex and Haystack in process: same SciFact subset, model and Postgres.

    uv run python benchmarks/peers.py                                        # make bench-peers
    uv run python benchmarks/peers.py --limit-queries 20 --corpus-size 100   # a quick smoke run

The subset: the first --limit-queries judged queries of qrels/<split>.tsv (all 809 of train by default), every
document judged relevant to them, and distractors drawn at random (--seed) from the rest of the corpus up to
--corpus-size documents in all (2000), in corpus order. Then, for each system:

1. Ragstream (the system harness.py reaches or starts): ingest through POST /v1/documents into a fresh tenant
   (ingest_throughput.run_pipeline: first created_at to last indexed_at), then every query once, one at a time,
   through POST /v1/search (the sources of a query, as /v1/query mode "search") in dense and in hybrid retrieval.
2. LlamaIndex and Haystack (benchmarks/peers/run_*.py, in the pinned virtualenv ~/.cache/ragstream/peers-venv),
   each in a database of its own on the same Postgres server: index with their defaults (ingest time after the
   model is loaded), then every query once, one at a time, through their default dense retriever.

All with all-MiniLM-L6-v2 and --top-k chunks per query; chunks become documents at the rank of their best chunk
and are scored by metrics.py as in eval_retrieval.py (nDCG@10, recall@10). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from corpus import Document, load_corpus, load_qrels, load_queries
from eval_retrieval import search_all
from harness import (
    DEFAULT_DATASET,
    ROOT,
    SystemUnderTest,
    api_client,
    finish,
    fresh_tenant,
    log,
    run_id,
    system_under_test,
)
from ingest_throughput import run_pipeline
from metrics import documents_in_rank_order, evaluate, latency_summary

PEERS = ("llamaindex", "haystack")
PEERS_DIR = ROOT / "benchmarks" / "peers"
# Where `make bench-peers` builds the peers' virtualenv: the user's cache, outside the checkout.
PEERS_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragstream" / "peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
RAGSTREAM_MODES = ("dense", "hybrid")
P50_FACTOR = 1.5  # the goal: Ragstream's end-to-end p50 within 1.5x the peers' in-process p50
# Before each system's run, wait (at most SETTLE_MAX_S) until the machine's CPUs are this idle: the system's
# services keep working for a while after its ingest, and that work must not land on the next system's figures.
SETTLE_BUSY_PERCENT = 25.0
SETTLE_QUIET_S = 3
SETTLE_MAX_S = 90.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="BEIR folder")
    parser.add_argument("--split", default="train", help="qrels/<split>.tsv")
    parser.add_argument("--limit-queries", type=int, default=None, help="only the first N judged queries")
    parser.add_argument("--corpus-size", type=int, default=2000, help="documents in all (relevant + distractors)")
    parser.add_argument("--seed", type=int, default=17, help="of the distractor draw")
    parser.add_argument("--top-k", type=int, default=20, help="chunks per query, every system")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries before each timed run")
    parser.add_argument("--systems", default=",".join(("ragstream", *PEERS)), help="comma-separated subset")
    parser.add_argument("--dsn", default=None, help="superuser URL of the system's Postgres (default: the harness's)")
    parser.add_argument("--peers-python", type=Path, default=PEERS_PYTHON, help="the peers' virtualenv python")
    parser.add_argument("--concurrency", type=int, default=8, help="Ragstream uploads in flight")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for any one system's run")
    args = parser.parse_args(argv)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if unknown := set(args.systems) - {"ragstream", *PEERS}:
        parser.error(f"unknown systems: {sorted(unknown)}")
    return args


def select_subset(
    corpus: Sequence[Document],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    limit_queries: int | None,
    corpus_size: int,
    seed: int,
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """The judged queries (queries.jsonl order, first `limit_queries`), every corpus document relevant to them,
    and seeded random distractors up to `corpus_size` documents (never fewer than the relevant ones), in corpus
    order; judgements of documents outside the corpus file are dropped, and queries left with none."""
    present = {document.corpus_id for document in corpus}
    judged = {
        q: {d: g for d, g in qrels[q].items() if d in present}
        for q in queries
        if q in qrels and any(g > 0 and d in present for d, g in qrels[q].items())
    }
    chosen = list(judged)[:limit_queries]
    relevant = {d for q in chosen for d, g in judged[q].items() if g > 0}
    others = sorted(present - relevant)
    wanted = min(max(corpus_size - len(relevant), 0), len(others))
    distractors = set(random.Random(seed).sample(others, wanted))
    documents = [d for d in corpus if d.corpus_id in relevant or d.corpus_id in distractors]
    return documents, {q: queries[q] for q in chosen}, {q: judged[q] for q in chosen}


def database_url(dsn: str, database: str) -> str:
    """`dsn` with its database (the URL's path) replaced by `database`; the query string is kept."""
    head, sep, rest = dsn.partition("://")
    if not sep:
        raise ValueError("not a URL")
    authority, _, tail = rest.partition("/")
    _, _, query = tail.partition("?")
    return f"{head}://{authority}/{database}" + (f"?{query}" if query else "")


def prepare_database(dsn: str, database: str) -> str:
    """A new, empty `database` with pgvector on the server of `dsn` (dropped first if an earlier run left one)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = database_url(dsn, database)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return url


async def run_ragstream(
    system: SystemUnderTest, documents: Sequence[Document], queries: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    tenant = await fresh_tenant(system, f"bench-peers-{run_id()}")
    options = argparse.Namespace(concurrency=args.concurrency, timeout=args.timeout)
    pipeline = await run_pipeline(system, documents, options, tenant)
    if tenant is not None:  # the searches go to the tenant that indexed the documents
        system = dataclasses.replace(system, tenant=tenant[0], api_key=tenant[1])
    result: dict[str, Any] = {"ingest": pipeline, "modes": {}}
    warmup = dict(list(queries.items())[: args.warmup])
    async with api_client(system) as client:
        for mode in RAGSTREAM_MODES:
            await search_all(client, warmup, mode, pipeline["prefix"], args.top_k, 1)
            rankings, failures, latencies = await search_all(client, queries, mode, pipeline["prefix"], args.top_k, 1)
            log(f"ragstream {mode}: {len(latencies)} searches, {len(failures)} failed")
            result["modes"][mode] = {"rankings": rankings, "latencies_ms": latencies, "failures": failures}
    return result


def settle(what: str) -> float:
    """Wait until SETTLE_QUIET_S consecutive seconds use under SETTLE_BUSY_PERCENT of the CPUs (or SETTLE_MAX_S
    pass); the last second's CPU use, in percent."""
    deadline = time.monotonic() + SETTLE_MAX_S
    quiet, busy = 0, 100.0
    while quiet < SETTLE_QUIET_S and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
        quiet = quiet + 1 if busy < SETTLE_BUSY_PERCENT else 0
    log(f"before {what}: CPUs {busy:.0f}% busy" + ("" if quiet >= SETTLE_QUIET_S else " (still busy: figures suffer)"))
    return busy


def run_peer(name: str, dsn: str, inputs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One peer runner in the peers' virtualenv; its whole result (rankings too) comes back through a file."""
    out = inputs / f"{name}.json"
    command = [
        str(args.peers_python),
        str(PEERS_DIR / f"run_{name}.py"),
        *("--corpus", str(inputs / "corpus.jsonl"), "--queries", str(inputs / "queries.jsonl")),
        *("--dsn", dsn, "--top-k", str(args.top_k), "--warmup", str(args.warmup), "--out", str(out)),
    ]
    # The workspace's venv must not leak into the peers' interpreter.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    log(f"{name}: {' '.join(command[:2])} ...")
    completed = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
    if completed.returncode != 0:
        raise SystemExit(f"{name} failed (exit {completed.returncode}); its stderr is above")
    log(f"{name}: {completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else '(no summary line)'}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def write_inputs(folder: Path, documents: Sequence[Document], queries: Mapping[str, str]) -> None:
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for d in documents:
            handle.write(json.dumps({"_id": d.corpus_id, "title": d.title, "text": d.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")


def score(
    ingest: Mapping[str, Any],
    rankings: Mapping[str, Sequence[str]],
    latencies_ms: Sequence[float],
    failures: int,
    qrels: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    """One row of the table: ingest figures, sequential latency, and quality scored as eval_retrieval.py does."""
    quality = evaluate({q: documents_in_rank_order(ids) for q, ids in rankings.items()}, qrels)
    latency = latency_summary(latencies_ms)
    return {
        "ingest_chunks_per_s": round(float(ingest["chunks_per_s"]), 2),
        "ingest_documents_per_s": round(float(ingest["documents_per_s"]), 2),
        "chunks": int(ingest["chunks"]),
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "ndcg@10": round(quality["ndcg@10"], 4),
        "recall@10": round(quality["recall@10"], 4),
        "failures": failures,
    }


def goals(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's goals, for Ragstream's default (hybrid) against every peer that ran; None when one is missing."""
    ours = rows.get("ragstream_hybrid")
    peers = [rows[name] for name in PEERS if name in rows]
    if ours is None or not peers:
        return {"ingest_at_least_peers": None, "p50_within_1_5x": None, "ndcg_above_peers": None}
    fastest_p50 = min(peer["p50_ms"] for peer in peers)
    return {
        "ingest_at_least_peers": all(ours["ingest_chunks_per_s"] >= peer["ingest_chunks_per_s"] for peer in peers),
        # Chunk sizes differ between the systems' defaults, so documents/s is told too.
        "ingest_documents_at_least_peers": all(
            ours["ingest_documents_per_s"] >= peer["ingest_documents_per_s"] for peer in peers
        ),
        "p50_within_1_5x": ours["p50_ms"] <= P50_FACTOR * fastest_p50,
        "p50_ratio": round(ours["p50_ms"] / fastest_p50, 2) if fastest_p50 else None,
        "ndcg_above_peers": all(ours["ndcg@10"] > peer["ndcg@10"] for peer in peers),
    }


def print_table(rows: Mapping[str, Mapping[str, Any]], versions: Mapping[str, str], head: str) -> None:
    print(f"\n{head}")
    columns = ("chunks", "ingest_chunks_per_s", "ingest_documents_per_s", "p50_ms", "p99_ms", "ndcg@10", "recall@10")
    titles = ("chunks", "chunks/s", "docs/s", "p50 ms", "p99 ms", "nDCG@10", "recall@10")
    print(f"  {'system':<20}{'version':<10}" + "".join(f"{t:>11}" for t in titles))
    for name, row in rows.items():
        version = versions.get(name.split("_")[0], "")
        print(f"  {name:<20}{version:<10}" + "".join(f"{row[c]:>11}" for c in columns))


PEER_LIBRARY = {"llamaindex": "llama-index-core", "haystack": "haystack-ai"}


def measure(
    args: argparse.Namespace,
    system: SystemUnderTest,
    subset: tuple[list[Document], dict[str, str], dict[str, dict[str, int]]],
    inputs: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, Any]]:
    """Each chosen system in turn: the table's rows, the libraries' versions and the details to save."""
    documents, queries, qrels = subset
    peers = [name for name in PEERS if name in args.systems]
    dsn = args.dsn or system.database_url
    if peers and not dsn:
        raise SystemExit("the peers need the system's Postgres: set DATABASE_URL (a superuser URL) or --dsn")
    rows: dict[str, dict[str, Any]] = {}
    versions = {"ragstream": metadata.version("ragstream-gateway")}
    details: dict[str, Any] = {}
    if "ragstream" in args.systems:
        details["cpu_busy_percent_before"] = {"ragstream": settle("ragstream")}
        ours = asyncio.run(run_ragstream(system, documents, queries, args))
        for mode, run in ours["modes"].items():
            rows[f"ragstream_{mode}"] = score(
                ours["ingest"], run["rankings"], run["latencies_ms"], len(run["failures"]), qrels
            )
        ours["ingest"].pop("indexed_ids")
        failures = {mode: run["failures"][:5] for mode, run in ours["modes"].items()}
        details["ragstream"] = {"ingest": ours["ingest"], "failure_examples": failures}
    for name in peers:
        assert dsn is not None
        details.setdefault("cpu_busy_percent_before", {})[name] = settle(name)
        peer = run_peer(name, prepare_database(dsn, f"ragstream_peers_{name}"), inputs, args)
        rows[name] = score(peer["ingest"], peer["rankings"], peer["latencies_ms"], peer["failures"], qrels)
        versions[name] = peer["versions"][PEER_LIBRARY[name]]
        details[name] = {k: v for k, v in peer.items() if k not in ("rankings", "latencies_ms")}
    return rows, versions, details


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if any(name in PEERS for name in args.systems) and not args.peers_python.exists():
        raise SystemExit(f"{args.peers_python} is missing: `make bench-peers` creates it (benchmarks/peers/README.md)")
    subset = select_subset(
        load_corpus(args.dataset),
        load_queries(args.dataset),
        load_qrels(args.dataset, args.split),
        limit_queries=args.limit_queries,
        corpus_size=args.corpus_size,
        seed=args.seed,
    )
    documents, queries, _ = subset
    head = (
        f"Ragstream (end to end) vs peers (in process) on {args.dataset.name} {args.split}: {len(documents)} "
        f"documents, {len(queries)} queries, top_k {args.top_k} chunks, all-MiniLM-L6-v2"
    )
    log(head)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder, system_under_test() as system:
        log(system.describe())
        write_inputs(Path(folder), documents, queries)
        rows, versions, systems = measure(args, system, subset, Path(folder))
    print_table(rows, versions, head)
    summary = {"documents": len(documents), "queries": len(queries), "top_k": args.top_k, **rows}
    summary["goals"] = goals(rows)
    summary["versions"] = versions
    print("  goals (Ragstream hybrid against each peer): " + json.dumps(summary["goals"]))
    finish("bench_peers", summary, {"args": vars(args) | {"dataset": str(args.dataset)}, "systems": systems})


if __name__ == "__main__":
    main()

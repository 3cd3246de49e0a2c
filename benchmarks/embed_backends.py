"""The embed service's backends side by side: torch, ONNX fp32 and ONNX int8 on the same model and texts.

    uv run python benchmarks/embed_backends.py                      # make bench-embed (SciFact train)
    uv run python benchmarks/embed_backends.py --limit 300          # a quick smoke run

Each backend runs in a process of its own (so peak RSS is its own), one after another, through the service's
own encoder (`ragstream_embed.adapters.encoder.Encoder`, its thread and batch settings from EmbedSettings):
1. Documents: the corpus chunked by the ingest service's Chunker, encoded in the service's micro-batches
   (EMBED_BATCH_MAX_CHUNKS chunks per `encode_documents` call, EMBED_ENCODE_BATCH_SIZE per forward pass) on the
   documents thread (EMBED_DOCUMENT_THREADS); chunks/s after a warm-up.
2. Queries: every judged query of the split, one at a time through `encode_queries` (the query thread,
   EMBED_QUERY_THREADS); p50/p99 after a warm-up.
3. Quality: dense-only nDCG@10 from those very vectors (a document scores its best chunk's cosine).
4. Peak RSS of the process (model, runtime and the corpus's vectors).
Ends with one JSON line: each backend's figures, and speedup_docs / speedup_query / ndcg_loss of the default
backend (EMBED_BACKEND) against torch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from corpus import load_corpus, load_qrels, load_queries
from harness import DEFAULT_DATASET, finish, log
from ingest_throughput import document_chunks
from metrics import evaluate, latency_summary

BACKENDS = ("torch", "onnx", "onnx-int8")
WARMUP = 16


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None, help="only the first N corpus documents (smoke runs)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--measure", choices=BACKENDS, help=argparse.SUPPRESS)  # the per-backend child process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


async def measure(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """One backend's figures, in this process."""
    import dataclasses

    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.config import EmbedSettings

    settings = EmbedSettings()
    chunks = document_chunks(load_corpus(args.dataset, args.limit))
    qrels = load_qrels(args.dataset, args.split)
    queries = {qid: text for qid, text in load_queries(args.dataset).items() if qid in qrels}
    started = time.perf_counter()
    encoder = Encoder.load(dataclasses.replace(settings.encoder_options(), backend=backend, query_backend=""))
    load_s = time.perf_counter() - started
    try:
        texts = [text for _, text in chunks]
        await encoder.encode_documents(texts[:WARMUP])
        started = time.perf_counter()
        batches = [texts[i : i + settings.batch_max_chunks] for i in range(0, len(texts), settings.batch_max_chunks)]
        vectors = np.concatenate([await encoder.encode_documents(batch) for batch in batches])
        encode_s = time.perf_counter() - started
        for text in list(queries.values())[:WARMUP]:
            await encoder.encode_queries([text])
        latencies, query_vectors = [], []
        for text in queries.values():
            started = time.perf_counter()
            query_vectors.append((await encoder.encode_queries([text]))[0])
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        encoder.close()
    quality = evaluate(dense_rankings(list(queries), np.stack(query_vectors), vectors, chunks), qrels)
    return {
        "chunks": len(texts),
        "docs_chunks_per_s": round(len(texts) / encode_s, 2),
        "query": latency_summary(latencies),
        "ndcg@10": round(quality["ndcg@10"], 4),
        "recall@100": round(quality["recall@100"], 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_s": round(load_s, 2),
        "threads": encoder.thread_counts(),
        "batch": {"micro_batch_chunks": settings.batch_max_chunks, "encode_batch_size": settings.encode_batch_size},
    }


def dense_rankings(
    query_ids: Sequence[str], query_vectors: np.ndarray, chunk_vectors: np.ndarray, chunks: Sequence[tuple[str, str]]
) -> dict[str, list[str]]:
    """Top 100 documents per query, each scored by its best chunk (exact cosine: the vectors are unit length)."""
    owners = np.array([corpus_id for corpus_id, _ in chunks])
    rankings: dict[str, list[str]] = {}
    for query_id, scores in zip(query_ids, query_vectors @ chunk_vectors.T, strict=True):
        best: dict[str, float] = {}
        for position in np.argsort(-scores)[:1000]:
            best.setdefault(str(owners[position]), float(scores[position]))
        rankings[query_id] = list(best)[:100]
    return rankings


def run_child(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        command = [sys.executable, __file__, "--measure", backend, "--out", str(out), "--dataset", str(args.dataset)]
        command += ["--split", args.split] + (["--limit", str(args.limit)] if args.limit else [])
        subprocess.run(command, check=True)
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def summarise(results: dict[str, dict[str, Any]], default: str) -> dict[str, Any]:
    base, best = results.get("torch"), results.get(default)
    summary: dict[str, Any] = {
        name: {
            "docs_chunks_per_s": r["docs_chunks_per_s"],
            "query_p50_ms": r["query"]["p50_ms"],
            "query_p99_ms": r["query"]["p99_ms"],
            "peak_rss_mb": r["peak_rss_mb"],
            "ndcg@10": r["ndcg@10"],
        }
        for name, r in results.items()
    }
    summary["default"] = default
    if base and best:
        summary["speedup_docs"] = round(best["docs_chunks_per_s"] / base["docs_chunks_per_s"], 2)
        summary["speedup_query"] = round(base["query"]["p50_ms"] / best["query"]["p50_ms"], 2)
        summary["ndcg_loss"] = round(base["ndcg@10"] - best["ndcg@10"], 4)
    return summary


def print_report(results: dict[str, dict[str, Any]]) -> None:
    print(f"\nEmbedding backends ({next(iter(results.values()))['chunks']} chunks)")
    print(f"{'backend':<11}{'chunks/s':>10}{'q p50 ms':>10}{'q p99 ms':>10}{'nDCG@10':>9}{'RSS MB':>8}{'load s':>8}")
    for name, r in results.items():
        q = r["query"]
        print(
            f"{name:<11}{r['docs_chunks_per_s']:>10}{q['p50_ms']:>10}{q['p99_ms']:>10}"
            f"{r['ndcg@10']:>9}{r['peak_rss_mb']:>8}{r['load_s']:>8}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:
        args.out.write_text(json.dumps(asyncio.run(measure(args.measure, args))))
        return
    from ragstream_embed.config import EmbedSettings

    results = {}
    for backend in args.backends.split(","):
        log(f"measuring {backend}")
        results[backend] = run_child(backend, args)
    print_report(results)
    finish("embed-backends", summarise(results, EmbedSettings().backend), {"backends": results})


if __name__ == "__main__":
    main()

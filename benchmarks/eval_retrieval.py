"""Retrieval quality of the running system on a BEIR dataset: nDCG@10, recall@10, recall@100, MRR@10 per mode.

    uv run python benchmarks/eval_retrieval.py --dataset ../shared/datasets/scifact --split train
    uv run python benchmarks/eval_retrieval.py --limit-corpus 50 --limit-queries 20     # a quick smoke run

The corpus is indexed through the gateway (POST /v1/documents, ids `<dataset>-<corpus id>`, so a re-run against
a persistent system finds it indexed: identical content is a no-op), then every query with judgements in the
split goes through POST /v1/search with top_k 100 in each retrieval mode. Chunk results become documents at the
rank of their best chunk.

`--modes agent` (not among the defaults) asks POST /v1/query in mode "agent" instead ({"question", "top_k": 10,
"mode": "agent", "max_steps"}) and ranks the documents of the steps' sources in step order, each at its first
occurrence: step 1 is the pipeline's own hybrid retrieval of 10 chunks, later steps add what the planner's
follow-up searches found. Its @10 figures compare with hybrid's (only the first 10 documents of either ranking
count); its recall@100 covers at most max_steps x 10 chunks, not 100, so it is not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from corpus import Document, index_dataset, load_corpus, load_qrels, load_queries
from harness import DEFAULT_DATASET, SystemUnderTest, api_client, finish, log, send, system_under_test
from metrics import documents_in_rank_order, evaluate

MODES = ("dense", "lexical", "hybrid")
AGENT_MODE = "agent"  # on request only: one agent run costs several searches
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="BEIR folder")
    parser.add_argument("--split", default="train", help="qrels/<split>.tsv")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of dense,lexical,hybrid,agent")
    parser.add_argument("--limit-queries", type=int, default=None, help="evaluate only the first N judged queries")
    parser.add_argument(
        "--limit-corpus",
        type=int,
        default=None,
        help="index only the first N documents (judgements outside them are dropped; smoke runs)",
    )
    parser.add_argument("--top-k", type=int, default=100, help="chunks per search (the API allows at most 100)")
    parser.add_argument("--agent-top-k", type=int, default=10, help="chunks per step in agent mode")
    parser.add_argument("--max-steps", type=int, default=4, help="the agent's step budget in agent mode")
    parser.add_argument("--concurrency", type=int, default=4, help="searches in flight")
    parser.add_argument("--upload-concurrency", type=int, default=8)
    parser.add_argument("--skip-index", action="store_true", help="assume the corpus is indexed already")
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if unknown := set(args.modes) - {*MODES, AGENT_MODE}:
        parser.error(f"unknown modes: {sorted(unknown)}")
    return args


def judged_queries(
    dataset: Path, split: str, corpus: Sequence[Document], limit_corpus: bool, limit_queries: int | None
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries with judgements in the split (in queries.jsonl order) and their qrels."""
    queries = load_queries(dataset)
    qrels = load_qrels(dataset, split)
    if limit_corpus:
        indexed = {document.corpus_id for document in corpus}
        qrels = {q: {d: g for d, g in judged.items() if d in indexed} for q, judged in qrels.items()}
        qrels = {q: judged for q, judged in qrels.items() if any(g > 0 for g in judged.values())}
    chosen = [query_id for query_id in queries if query_id in qrels][:limit_queries]
    return {q: queries[q] for q in chosen}, {q: qrels[q] for q in chosen}


async def search_all(
    client: httpx.AsyncClient, queries: dict[str, str], mode: str, id_prefix: str, top_k: int, concurrency: int
) -> tuple[dict[str, list[str]], list[str], list[float]]:
    """Per query the corpus ids in rank order; also the failures and each search's latency in ms."""
    rankings: dict[str, list[str]] = {}
    failures: list[str] = []
    latencies: list[float] = []
    limit = asyncio.Semaphore(concurrency)
    strip = len(id_prefix) + 1

    async def one(query_id: str, text: str) -> None:
        async with limit:
            started = time.perf_counter()
            response = await send(client, "POST", "/v1/search", json={"query": text, "top_k": top_k, "retrieval": mode})
            latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures.append(f"{query_id}: {response.status_code} {response.text[:200]}")
            return
        ids = [hit["document_id"] for hit in response.json()["results"]]
        rankings[query_id] = [d[strip:] for d in documents_in_rank_order(ids) if d.startswith(f"{id_prefix}-")]

    await asyncio.gather(*(one(query_id, text) for query_id, text in queries.items()))
    return rankings, failures, latencies


def documents_from_steps(steps: Sequence[dict[str, Any]], id_prefix: str) -> list[str]:
    """Corpus ids of an agent reply's sources, in step order, each at its first occurrence."""
    ids = [source["document_id"] for step in steps for source in step.get("sources") or []]
    strip = len(id_prefix) + 1
    return [d[strip:] for d in documents_in_rank_order(ids) if d.startswith(f"{id_prefix}-")]


async def ask_agent_all(
    client: httpx.AsyncClient, queries: dict[str, str], id_prefix: str, args: argparse.Namespace
) -> tuple[dict[str, list[str]], list[str], list[float]]:
    """As search_all, through POST /v1/query in agent mode: the documents its steps found, in step order."""
    rankings: dict[str, list[str]] = {}
    failures: list[str] = []
    latencies: list[float] = []
    limit = asyncio.Semaphore(args.concurrency)
    body = {"top_k": args.agent_top_k, "mode": AGENT_MODE, "max_steps": args.max_steps}

    async def one(query_id: str, text: str) -> None:
        async with limit:
            started = time.perf_counter()
            response = await send(client, "POST", "/v1/query", json={"question": text, **body})
            latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures.append(f"{query_id}: {response.status_code} {response.text[:200]}")
            return
        rankings[query_id] = documents_from_steps(response.json().get("steps") or [], id_prefix)

    await asyncio.gather(*(one(query_id, text) for query_id, text in queries.items()))
    return rankings, failures, latencies


def print_table(results: dict[str, dict[str, float]], queries: int, dataset: str, split: str) -> None:
    print(f"\nRetrieval quality on {dataset} ({split} split, {queries} judged queries)")
    print(f"{'mode':<10}" + "".join(f"{name:>12}" for name in METRICS))
    for mode, scores in results.items():
        print(f"{mode:<10}" + "".join(f"{scores[name]:>12.4f}" for name in METRICS))


async def run(args: argparse.Namespace, system: SystemUnderTest) -> None:
    dataset_name = args.dataset.resolve().name
    corpus = load_corpus(args.dataset, args.limit_corpus)
    queries, qrels = judged_queries(args.dataset, args.split, corpus, args.limit_corpus is not None, args.limit_queries)
    log(f"{system.describe()}; {len(corpus)} documents, {len(queries)} judged queries")
    results: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {
        "dataset": str(args.dataset),
        "split": args.split,
        "queries": len(queries),
        "documents": len(corpus),
        "limit_corpus": args.limit_corpus,
        "modes": {},
    }
    async with api_client(system) as client:
        if not args.skip_index:
            views = await index_dataset(client, corpus, dataset_name, concurrency=args.upload_concurrency)
            details["not_indexed"] = sorted(d for d, view in views.items() if view["status"] != "indexed")[:50]
        for mode in args.modes:
            started = time.perf_counter()
            if mode == AGENT_MODE:
                rankings, failures, latencies = await ask_agent_all(client, queries, dataset_name, args)
            else:
                rankings, failures, latencies = await search_all(
                    client, queries, mode, dataset_name, args.top_k, args.concurrency
                )
            results[mode] = {name: round(value, 4) for name, value in evaluate(rankings, qrels).items()}
            log(f"  {mode}: {len(queries)} searches in {time.perf_counter() - started:.1f}s, {len(failures)} failed")
            if failures:
                log(f"    e.g. {failures[:3]}")
            details["modes"][mode] = {
                "failures": len(failures),
                "failure_examples": failures[:5],
                "mean_search_ms": round(sum(latencies) / max(len(latencies), 1), 1),
            }
    print_table(results, len(queries), dataset_name, args.split)
    if args.limit_corpus is not None or args.limit_queries is not None:
        print(
            f"(partial run: --limit-corpus {args.limit_corpus}, --limit-queries {args.limit_queries}; "
            "not comparable with full-dataset figures)"
        )
    finish("eval_retrieval", results, details)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with system_under_test() as system:
        asyncio.run(run(args, system))


if __name__ == "__main__":
    main()

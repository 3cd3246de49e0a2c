"""Multi-hop questions through the running system: single-shot answers against the agent (mode "agent").

    uv run python benchmarks/eval_multihop.py                          # make eval-multihop (development set)
    uv run python benchmarks/eval_multihop.py --heldout                # the held-out set (another company)
    uv run python benchmarks/eval_multihop.py --limit 10               # a quick smoke run
    uv run python benchmarks/eval_multihop.py --url http://host:8080 --api-key KEY

The set in benchmarks/multihop/ (how it is made: README.md there) is indexed through the gateway (POST
/v1/documents, ids `multihop-<id>` with their metadata; identical content is a no-op on a re-run), then every
question goes through POST /v1/query twice: mode "answer" (single-shot hybrid retrieval, --top-k chunks) and mode
"agent" (the same first retrieval, then follow-up searches, at most --max-steps steps of --top-k chunks).
--heldout asks the held-out set (benchmarks/multihop/heldout/, never used to tune the planner) in a fresh tenant
of its own when the harness has an admin token, so neither company's documents are the other's distractors.

Per system: support_recall (share of questions whose supporting documents are all among the cited ones),
answer_accuracy (share whose answer contains every expected string, case-insensitive), answer_precision (share
whose answer is accurate and states no rival: another value of the kind asked for, from the question's `rivals`,
e.g. a second project lead's name next to the right one), client-side p50/p95 ms; for the agent also
mean_steps, found_recall (supporting documents all among the steps' sources, cited or not) and the exit reasons.
A failed request scores 0 on every measure. Breakdown by question type. The details record the embedding
model and backend the system was started with (EMBED_* as the harness sees them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from corpus import wait_until_final
from harness import SystemUnderTest, api_client, finish, fresh_tenant, log, run_id, send, system_under_test
from metrics import percentile

DATASET_DIR = Path(__file__).resolve().parent / "multihop"
HELDOUT_DIR = DATASET_DIR / "heldout"
ID_PREFIX = "multihop"
# System name in the report -> the query mode it asks for.
SYSTEMS = {"single": "answer", "agent": "agent"}
TYPES = ("bridge", "comparison", "conjunction", "single")


@dataclass(frozen=True)
class Outcome:
    """One question asked of one system: the reply body when it was 200."""

    question_id: str
    status: int
    latency_ms: float
    body: dict[str, Any] | None
    error: str = ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="folder with corpus.jsonl, questions.jsonl")
    parser.add_argument("--heldout", action="store_true", help=f"the held-out set ({HELDOUT_DIR.name}/), own tenant")
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    parser.add_argument("--top-k", type=int, default=5, help="chunks per search, in both systems")
    parser.add_argument("--max-steps", type=int, default=4, help="the agent's step budget (first retrieval included)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of single,agent")
    parser.add_argument("--concurrency", type=int, default=1, help="questions in flight (1: clean latencies)")
    parser.add_argument("--upload-concurrency", type=int, default=8)
    parser.add_argument("--skip-index", action="store_true", help="assume the set is indexed already")
    parser.add_argument("--url", default=None, help="gateway of a running system (else $GATEWAY_URL, see harness)")
    parser.add_argument("--api-key", default=None, help="its API key (else $GATEWAY_API_KEY, default dev-key)")
    args = parser.parse_args(argv)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if unknown := set(args.systems) - set(SYSTEMS):
        parser.error(f"unknown systems: {sorted(unknown)}")
    if args.top_k < 1 or args.max_steps < 1:
        parser.error("--top-k and --max-steps must be at least 1")
    if args.heldout and args.dataset is not None:
        parser.error("--heldout names its own dataset; drop --dataset")
    args.dataset = args.dataset or (HELDOUT_DIR if args.heldout else DATASET_DIR)
    return args


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def query_body(question: str, system: str, top_k: int, max_steps: int) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "top_k": top_k, "mode": SYSTEMS[system]}
    if system == "agent":
        body["max_steps"] = max_steps
    return body


def strip_prefix(document_id: str) -> str:
    return document_id.removeprefix(f"{ID_PREFIX}-")


def cited_documents(body: dict[str, Any]) -> set[str]:
    return {strip_prefix(citation["document_id"]) for citation in body.get("citations") or []}


def found_documents(body: dict[str, Any]) -> set[str]:
    """Every document any agent step found (cited or not)."""
    steps = body.get("steps") or []
    return {strip_prefix(source["document_id"]) for step in steps for source in step.get("sources") or []}


def answer_is_correct(answer: str, expected: Sequence[str]) -> bool:
    folded = " ".join(answer.casefold().split())
    return all(" ".join(text.casefold().split()) in folded for text in expected)


def rivals_stated(answer: str, rivals: Sequence[str]) -> list[str]:
    """The rivals the answer names, whole words only ("2015" is not in "20151"; "Ana Duarte" not in "Ana
    Duartes"), case- and spacing-insensitive."""
    folded = " ".join(answer.casefold().split())
    found = []
    for rival in rivals:
        pattern = r"\s+".join(re.escape(word) for word in rival.casefold().split())
        if re.search(rf"(?<![\w.]){pattern}(?![\w]|\.\d)", folded):
            found.append(rival)
    return found


def answer_is_precise(answer: str, expected: Sequence[str], rivals: Sequence[str]) -> bool:
    """Accurate, and no competing value of the kind asked for beside the expected one(s)."""
    return answer_is_correct(answer, expected) and not rivals_stated(answer, rivals)


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def score(questions: Sequence[dict[str, Any]], outcomes: Sequence[Outcome], agent: bool) -> dict[str, Any]:
    """The measures of one system over these questions (a missing or failed reply scores 0)."""
    by_id = {outcome.question_id: outcome for outcome in outcomes}
    rows: list[tuple[str, bool, bool, bool, bool]] = []  # (type, supported, correct, found, precise)
    steps: list[int] = []
    exits: Counter[str] = Counter()
    for question in questions:
        outcome = by_id.get(question["id"])
        body = outcome.body if outcome is not None and outcome.body is not None else None
        if body is None:
            rows.append((question["type"], False, False, False, False))
            continue
        supporting, answer = set(question["supporting"]), str(body.get("answer") or "")
        rows.append(
            (
                question["type"],
                supporting <= cited_documents(body),
                answer_is_correct(answer, question["expected"]),
                supporting <= found_documents(body),
                answer_is_precise(answer, question["expected"], question.get("rivals") or []),
            )
        )
        steps.append(len(body.get("steps") or []))
        exits[str(body.get("exit_reason") or "")] += 1
    latencies = [outcome.latency_ms for outcome in outcomes if outcome.body is not None]
    result: dict[str, Any] = {
        "n": len(rows),
        "support_recall": _share([row[1] for row in rows]),
        "answer_accuracy": _share([row[2] for row in rows]),
        "answer_precision": _share([row[4] for row in rows]),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "failures": sum(1 for outcome in outcomes if outcome.body is None),
    }
    if agent:
        result["mean_steps"] = round(sum(steps) / len(steps), 2) if steps else 0.0
        result["found_recall"] = _share([row[3] for row in rows])
        result["exit_reasons"] = dict(sorted(exits.items()))
    result["by_type"] = {
        kind: {
            "n": len(of_kind),
            "support_recall": _share([row[1] for row in of_kind]),
            "answer_accuracy": _share([row[2] for row in of_kind]),
            "answer_precision": _share([row[4] for row in of_kind]),
        }
        for kind in TYPES
        if (of_kind := [row for row in rows if row[0] == kind])
    }
    return result


async def ask_all(
    client: httpx.AsyncClient, questions: Sequence[dict[str, Any]], system: str, args: argparse.Namespace
) -> list[Outcome]:
    limit = asyncio.Semaphore(args.concurrency)

    async def one(question: dict[str, Any]) -> Outcome:
        body = query_body(question["question"], system, args.top_k, args.max_steps)
        async with limit:
            started = time.perf_counter()
            try:
                response = await send(client, "POST", "/v1/query", json=body)
            except httpx.HTTPError as error:  # a timeout scores 0 like any failure
                return Outcome(question["id"], 0, (time.perf_counter() - started) * 1000, None, repr(error))
            latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            return Outcome(question["id"], response.status_code, latency_ms, None, response.text[:200])
        return Outcome(question["id"], 200, latency_ms, response.json())

    return list(await asyncio.gather(*(one(question) for question in questions)))


async def index_multihop(
    client: httpx.AsyncClient, documents: Sequence[dict[str, Any]], concurrency: int
) -> dict[str, dict[str, Any]]:
    """Upload every document (with its metadata) as `multihop-<id>`; wait until each is final."""
    limit = asyncio.Semaphore(concurrency)
    statuses: Counter[int] = Counter()
    accepted: list[str] = []

    async def upload(document: dict[str, Any]) -> None:
        body = {
            "id": f"{ID_PREFIX}-{document['id']}",
            "title": document["title"],
            "text": document["text"],
            "metadata": document.get("metadata") or {},
        }
        async with limit:
            response = await send(client, "POST", "/v1/documents", json=body)
        statuses[response.status_code] += 1
        if response.status_code in (200, 202):
            accepted.append(body["id"])
        else:
            log(f"  {body['id']} refused: {response.status_code} {response.text[:200]}")

    log(f"uploading {len(documents)} documents as {ID_PREFIX}-<id> ...")
    await asyncio.gather(*(upload(document) for document in documents))
    log(f"  uploads: {dict(statuses)} (200 = unchanged)")
    return await wait_until_final(client, accepted, timeout_s=1800)


def print_table(results: dict[str, dict[str, Any]], questions: int) -> None:
    print(f"\nMulti-hop set: {questions} questions")
    print(
        f"{'system':<8}{'support_recall':>16}{'answer_acc':>12}{'precision':>11}{'p50_ms':>10}{'p95_ms':>10}"
        f"{'steps':>8}{'failed':>8}"
    )
    for system, scores in results.items():
        steps = f"{scores['mean_steps']:.2f}" if "mean_steps" in scores else "-"
        print(
            f"{system:<8}{scores['support_recall']:>16.4f}{scores['answer_accuracy']:>12.4f}"
            f"{scores['answer_precision']:>11.4f}{scores['p50_ms'] or 0:>10.1f}{scores['p95_ms'] or 0:>10.1f}"
            f"{steps:>8}{scores['failures']:>8}"
        )
    print(f"\n{'type':<13}{'n':>4}" + "".join(f"{system + ' sup/acc':>22}" for system in results))
    for kind in TYPES:
        cells = [scores["by_type"].get(kind) for scores in results.values()]
        if not any(cells):
            continue
        count = next(cell["n"] for cell in cells if cell)
        line = "".join(
            f"{cell['support_recall']:>13.2f} / {cell['answer_accuracy']:.2f}" if cell else f"{'-':>22}"
            for cell in cells
        )
        print(f"{kind:<13}{count:>4}{line}")


def embedding_backend() -> dict[str, str]:
    """The embedding model and backends as EMBED_* set them here: what a system the harness starts runs (one
    already running was started with its own environment)."""
    from ragstream_embed.config import EmbedSettings

    settings = EmbedSettings()
    return {
        "model": settings.model,
        "backend": settings.backend,
        "query_backend": settings.query_backend or settings.backend,
    }


async def heldout_system(system: SystemUnderTest) -> SystemUnderTest:
    """A fresh tenant for the held-out set: its documents share ids ("travel-policy-2024") with the
    development set's, and each company's documents must not be the other's distractors."""
    made = await fresh_tenant(system, f"multihop-heldout-{run_id()}")
    if made is None:
        raise SystemExit("--heldout needs an admin token (GATEWAY_ADMIN_TOKEN) to create a tenant of its own")
    tenant, api_key = made
    return dataclasses.replace(system, tenant=tenant, api_key=api_key)


async def run(args: argparse.Namespace, system: SystemUnderTest) -> None:
    documents = load_jsonl(args.dataset / "corpus.jsonl")
    questions = load_jsonl(args.dataset / "questions.jsonl")[: args.limit]
    if args.heldout:
        system = await heldout_system(system)
    embedding = embedding_backend()
    log(f"{system.describe()}; {len(documents)} documents, {len(questions)} questions; embedding {embedding}")
    details: dict[str, Any] = {
        "dataset": str(args.dataset),
        "set": "heldout" if args.heldout else "dev",
        "tenant": system.tenant,
        "embedding": embedding,
        "system_started_here": system.started_here,
        "top_k": args.top_k,
        "max_steps": args.max_steps,
    }
    results: dict[str, dict[str, Any]] = {}
    async with api_client(system) as client:
        if not args.skip_index:
            views = await index_multihop(client, documents, args.upload_concurrency)
            details["not_indexed"] = sorted(d for d, view in views.items() if view["status"] != "indexed")
        for name in args.systems:
            started = time.perf_counter()
            outcomes = await ask_all(client, questions, name, args)
            results[name] = score(questions, outcomes, agent=name == "agent")
            log(f"  {name}: {len(outcomes)} questions in {time.perf_counter() - started:.1f}s")
            if failed := [o for o in outcomes if o.body is None]:
                log(f"    {len(failed)} failed, e.g. {[(o.question_id, o.status, o.error) for o in failed[:3]]}")
            details[name] = [
                {"id": o.question_id, "status": o.status, "latency_ms": round(o.latency_ms, 1), "reply": o.body}
                for o in outcomes
            ]
    print_table(results, len(questions))
    if args.limit is not None:
        print(f"(partial run: --limit {args.limit}; not comparable with full-set figures)")
    finish("eval_multihop", results, details)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # The harness reads the system under test from the environment; the options only set it.
    if args.url:
        os.environ["GATEWAY_URL"] = args.url
    if args.api_key:
        os.environ["GATEWAY_API_KEY"] = args.api_key
    with system_under_test() as system:
        asyncio.run(run(args, system))


if __name__ == "__main__":
    main()

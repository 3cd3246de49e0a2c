"""Question-answering latency through the running system against the same work done in one Python process.

    uv run python benchmarks/query_latency.py                   # indexes SciFact first (a no-op once indexed)
    uv run python benchmarks/query_latency.py --skip-index      # the corpus is indexed already

1. End to end: POST /v1/query (answer mode, hybrid retrieval, the system's generate backend: extractive by
   default) for --questions SciFact claims, sequentially and then --concurrency at a time; p50/p95/p99, and the
   per-stage breakdown from each reply's `timings` (embed, retrieve, generate, transport, total).
2. Sustainable throughput: closed loops of 1, 2, 4, 8 clients, --step-requests each; the highest queries/s whose
   p99 stays under --p99-target-ms (250) with no errors.
3. In-process baseline: the same questions, sequentially, in this process: the embed service's Encoder (its backend),
   the retrieve service's hybrid_search over PostgresSearchIndex (its settings, as its gRPC Search does) against
   DATABASE_URL, then ExtractiveBackend().answer. Ratio e2e_p50 / inproc_p50.
4. Transport floor (transport_floor.py): a bare Kafka hop, gRPC and HTTP round trip on the same machine, and the
   best ratio they leave room for (floor_ratio_p50).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from corpus import index_dataset, load_corpus, load_queries
from harness import DEFAULT_DATASET, SystemUnderTest, api_client, finish, log, system_under_test
from inprocess import inprocess_latencies
from metrics import latency_summary, percentile
from transport_floor import transport_floor

STAGES = ("embed", "retrieve", "generate", "transport", "total")
WARMUP_QUERIES = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="BEIR folder (corpus, queries)")
    parser.add_argument("--questions", type=int, default=300, help="questions per latency run (at least 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="the fixed-concurrency run")
    parser.add_argument("--steps", default="1,2,4,8", help="concurrency steps of the throughput search")
    parser.add_argument("--step-requests", type=int, default=200, help="requests per concurrency step")
    parser.add_argument("--p99-target-ms", type=float, default=250.0)
    parser.add_argument("--top-k", type=int, default=5, help="sources per answer (the API's default)")
    parser.add_argument("--skip-index", action="store_true", help="assume the corpus is indexed already")
    parser.add_argument("--limit-corpus", type=int, default=None, help="index only the first N documents (smoke runs)")
    parser.add_argument("--skip-inproc", action="store_true", help="no in-process baseline")
    parser.add_argument(
        "--query-threads",
        type=int,
        default=None,
        help="intra-op threads of the baseline's query encode (default: EMBED_QUERY_THREADS)",
    )
    args = parser.parse_args(argv)
    args.steps = [int(step) for step in args.steps.split(",") if step.strip()]
    if args.questions < 300:
        log(f"note: --questions {args.questions} is below the 300 the published figures use")
    return args


@dataclass
class Batch:
    latencies_ms: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    backends: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


async def timed_queries(client: httpx.AsyncClient, questions: Sequence[str], concurrency: int, top_k: int) -> Batch:
    """Closed loop: `concurrency` clients, each sending its next question when the previous answer is in.
    No retries: a refusal (429 included) is an error of the run, not a slow answer."""
    batch = Batch()
    pending = iter(questions)

    async def client_loop() -> None:
        for question in pending:  # one shared iterator: each question is asked once
            started = time.perf_counter()
            try:
                response = await client.post("/v1/query", json={"question": question, "top_k": top_k})
            except httpx.HTTPError as exc:
                batch.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latency_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                batch.errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            body = response.json()
            batch.latencies_ms.append(latency_ms)
            batch.timings.append(body.get("timings", {}))
            batch.backends.add(body.get("backend", ""))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    batch.elapsed_s = time.perf_counter() - started
    return batch


def stage_breakdown(timings: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    stages = {}
    for stage in STAGES:
        values = [t[stage] for t in timings if stage in t]
        if values:
            stages[stage] = {"mean_ms": round(sum(values) / len(values), 1), "p50_ms": round(percentile(values, 50), 1)}
    return stages


async def throughput_steps(
    client: httpx.AsyncClient, questions: Sequence[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], float | None]:
    steps = []
    cycle = itertools.cycle(questions)
    for concurrency in args.steps:
        batch = await timed_queries(client, list(itertools.islice(cycle, args.step_requests)), concurrency, args.top_k)
        p99 = percentile(batch.latencies_ms, 99)
        step = {
            "concurrency": concurrency,
            "qps": round(batch.throughput, 2),
            "p50_ms": round(percentile(batch.latencies_ms, 50), 1),
            "p99_ms": round(p99, 1),
            "errors": len(batch.errors),
        }
        steps.append(step)
        log(f"  step concurrency {concurrency}: {step['qps']} q/s, p99 {step['p99_ms']} ms, {step['errors']} errors")
    sustainable = [s["qps"] for s in steps if s["p99_ms"] < args.p99_target_ms and not s["errors"]]
    return steps, max(sustainable) if sustainable else None


async def run_e2e(system: SystemUnderTest, questions: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    async with api_client(system) as client:
        if not args.skip_index:
            corpus = load_corpus(args.dataset, args.limit_corpus)
            await index_dataset(client, corpus, args.dataset.resolve().name)
        await timed_queries(client, questions[-WARMUP_QUERIES:], 1, args.top_k)
        log(f"sequential: {len(questions)} questions ...")
        sequential = await timed_queries(client, questions, 1, args.top_k)
        log(f"concurrency {args.concurrency}: {len(questions)} questions ...")
        concurrent = await timed_queries(client, questions, args.concurrency, args.top_k)
        log("throughput steps ...")
        steps, sustainable = await throughput_steps(client, questions, args)
        floor = None
        if system.kafka:
            log("transport floor: bare Kafka hop, gRPC and HTTP round trips ...")
            floor = await transport_floor(system.kafka, client)
        else:
            log("transport floor skipped: set KAFKA_BOOTSTRAP_SERVERS to the system's Kafka")
    for name, batch in (("sequential", sequential), ("concurrent", concurrent)):
        if batch.errors:
            log(f"  {name}: {len(batch.errors)} errors, e.g. {batch.errors[:3]}")
    return {
        "sequential": {
            **latency_summary(sequential.latencies_ms),
            "errors": len(sequential.errors),
            "qps": round(sequential.throughput, 2),
        },
        "concurrent": {
            **latency_summary(concurrent.latencies_ms),
            "errors": len(concurrent.errors),
            "qps": round(concurrent.throughput, 2),
            "concurrency": args.concurrency,
        },
        "stages": stage_breakdown(sequential.timings),
        "steps": steps,
        "qps_at_p99_target": sustainable,
        "transport_floor": floor,
        "backends": sorted(sequential.backends | concurrent.backends),
    }


def print_report(e2e: dict[str, Any], inproc: dict[str, Any] | None, args: argparse.Namespace) -> None:
    print(
        "\nQuery latency (POST /v1/query, answer mode, hybrid retrieval, backend "
        f"{', '.join(e2e['backends']) or '?'}; top_k {args.top_k})"
    )
    rows = [("e2e sequential", e2e["sequential"]), (f"e2e concurrency {args.concurrency}", e2e["concurrent"])]
    if inproc is not None:
        rows.append(("in-process sequential", inproc["latency"]))
    print(f"  {'run':<24}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'q/s':>8}")
    for name, row in rows:
        print(
            f"  {name:<24}{row['n']:>6}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}{row['p99_ms']:>10.1f}"
            f"{row.get('qps', float('nan')):>8.1f}"
        )
    print("  stages of the sequential run (from the replies' timings), mean / p50 ms:")
    for stage, values in e2e["stages"].items():
        inproc_stage = inproc["stages"].get(stage) if inproc else None
        extra = f"   in-process {inproc_stage['mean_ms']:.1f} / {inproc_stage['p50_ms']:.1f}" if inproc_stage else ""
        print(f"    {stage:<10}{values['mean_ms']:>8.1f} / {values['p50_ms']:<8.1f}{extra}")
    print(f"  throughput steps (p99 target {args.p99_target_ms:.0f} ms):")
    for step in e2e["steps"]:
        print(
            f"    concurrency {step['concurrency']}: {step['qps']:.1f} q/s, p50 {step['p50_ms']:.0f} ms, "
            f"p99 {step['p99_ms']:.0f} ms, {step['errors']} errors"
        )
    print(f"  sustainable q/s at p99 < {args.p99_target_ms:.0f} ms: {e2e['qps_at_p99_target']}")
    floor = e2e["transport_floor"]
    if floor:
        print(
            f"  transport floor (p50): Kafka hop {floor['kafka_hop_p50_ms']:.2f} ms x 3 + gRPC "
            f"{floor['grpc_roundtrip_p50_ms']:.2f} + HTTP {floor['http_roundtrip_p50_ms']:.2f} = "
            f"{floor['floor_ms']:.1f} ms"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    asked = list(load_queries(args.dataset).values())
    questions = list(itertools.islice(itertools.cycle(asked), args.questions))
    with system_under_test() as system:
        log(system.describe())
        e2e = asyncio.run(run_e2e(system, questions, args))
        inproc = None
        if args.skip_inproc:
            log("in-process baseline skipped (--skip-inproc)")
        elif not system.database_url:
            log("in-process baseline skipped: set DATABASE_URL to the system's database")
        else:
            log(f"in-process baseline: {len(questions)} questions ...")
            inproc = asyncio.run(
                inprocess_latencies(system.database_url, system.tenant, questions, args.top_k, args.query_threads)
            )
    print_report(e2e, inproc, args)
    inproc_p50 = inproc["latency"]["p50_ms"] if inproc else None
    summary = {
        "e2e_p50_ms": e2e["sequential"]["p50_ms"],
        "e2e_p95_ms": e2e["sequential"]["p95_ms"],
        "e2e_p99_ms": e2e["sequential"]["p99_ms"],
        "inproc_p50_ms": inproc_p50,
        "ratio_p50": round(e2e["sequential"]["p50_ms"] / inproc_p50, 2) if inproc_p50 else None,
        "qps_at_p99_250ms": e2e["qps_at_p99_target"],
        "stages": e2e["stages"],
        "p99_over_p50": round(e2e["sequential"]["p99_ms"] / e2e["sequential"]["p50_ms"], 2),
    }
    floor = e2e["transport_floor"]
    if floor and inproc_p50:
        summary["transport_floor_ms"] = floor["floor_ms"]
        summary["floor_ratio_p50"] = round((inproc_p50 + floor["floor_ms"]) / inproc_p50, 2)
    finish(
        "query_latency", summary, {"args": vars(args) | {"dataset": str(args.dataset)}, "e2e": e2e, "inproc": inproc}
    )


if __name__ == "__main__":
    main()

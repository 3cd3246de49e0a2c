"""CPU each component spends per question, through the running system: where sustainable throughput goes.

    uv run python benchmarks/query_cpu.py               # make bench-query-cpu; indexes SciFact (no-op once indexed)
    uv run python benchmarks/query_cpu.py --skip-index --questions 300 --rounds 2
    uv run python benchmarks/query_cpu.py --skip-index --clients 8 --pause-ms 0 --questions 2400 --rounds 2

On two shared cores a question's CPU bounds the queries per second more than its latency does. The system's
idle CPU (consumers long-polling, timers) is measured first for `--idle-s` seconds and taken out of each round,
so the figures are what one more question costs: per service, Postgres, Kafka and Redis, in milliseconds of
CPU per question, next to the round's latency and queries per second. With `--clients N` the questions are asked
by N clients at once (a closed loop, each question once): the CPU a question costs under load, where batches
amortise commits and fetches. Side-by-side runs of two commits (each in its own checkout, one after the other)
show what a change did to each component.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corpus import index_dataset, load_corpus, load_queries
from harness import DEFAULT_DATASET, CpuAccount, SystemUnderTest, api_client, finish, log, send, system_under_test
from metrics import latency_summary

WARMUP_QUERIES = 20


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="BEIR folder (corpus, queries)")
    parser.add_argument("--questions", type=int, default=300, help="questions per round")
    parser.add_argument("--clients", type=int, default=1, help="clients asking at once (1: one at a time)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=15.0, help="seconds of idle CPU measured first")
    parser.add_argument("--pause-ms", type=float, default=10.0, help="between two questions, as a lone user")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--skip-index", action="store_true", help="assume the corpus is indexed already")
    parser.add_argument("--limit-corpus", type=int, default=None, help="index only the first N documents")
    return parser.parse_args(argv)


async def ask(system: SystemUnderTest, questions: Sequence[str], args: argparse.Namespace) -> list[float]:
    """Client-side milliseconds of each question, `args.clients` of them in flight at a time."""
    latencies = []
    unasked = iter(questions)  # shared: each question is asked once, by whichever client is free
    async with api_client(system) as client:

        async def one_client() -> None:
            for question in unasked:
                started = time.perf_counter()
                reply = await send(client, "POST", "/v1/query", json={"question": question, "top_k": args.top_k})
                reply.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(args.pause_ms / 1000)

        await asyncio.gather(*(one_client() for _ in range(args.clients)))
    return latencies


def cpu_round(system: SystemUnderTest, questions: Sequence[str], idle: dict[str, float], args: argparse.Namespace):
    """One round: per-question CPU milliseconds by component (idle CPU over the round's wall time taken out)."""
    started = time.monotonic()
    with CpuAccount(rounding=3) as cpu:
        latencies = asyncio.run(ask(system, questions, args))
    wall_s = time.monotonic() - started
    per_question = {
        group: round((seconds - idle.get(group, 0.0) * wall_s) * 1000 / len(questions), 2)
        for group, seconds in cpu.seconds.items()
    }
    return {
        "latency": latency_summary(latencies),
        "cpu_ms_per_question": per_question,
        "wall_s": round(wall_s, 1),
        "q_per_s": round(len(questions) / wall_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    asked = list(load_queries(args.dataset).values())
    with system_under_test() as system:
        log(system.describe())
        if not args.skip_index:

            async def index() -> None:
                async with api_client(system) as client:
                    await index_dataset(client, load_corpus(args.dataset, args.limit_corpus), args.dataset.name)

            asyncio.run(index())
        asyncio.run(ask(system, asked[:WARMUP_QUERIES], args))
        with CpuAccount(rounding=3) as idle:
            time.sleep(args.idle_s)
        idle_per_s = {group: seconds / args.idle_s for group, seconds in idle.seconds.items()}
        log(f"idle CPU, % of a core: { {g: round(v * 100, 1) for g, v in idle_per_s.items()} }")
        cycle = itertools.cycle(asked[WARMUP_QUERIES:])
        rounds = []
        for number in range(args.rounds):
            questions = list(itertools.islice(cycle, args.questions))
            rounds.append(cpu_round(system, questions, idle_per_s, args))
            log(f"round {number + 1}: {rounds[-1]}")
    summary = summarise(rounds)
    finish(
        "query_cpu",
        summary,
        {"args": vars(args) | {"dataset": str(args.dataset)}, "rounds": rounds, "idle": idle_per_s},
    )


def summarise(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each component's CPU per question as the mean over rounds, the total, and the rounds' latency p50s."""
    groups = sorted({group for r in rounds for group in r["cpu_ms_per_question"]})
    mean = {g: round(sum(r["cpu_ms_per_question"].get(g, 0.0) for r in rounds) / len(rounds), 2) for g in groups}
    positive = {g: v for g, v in sorted(mean.items(), key=lambda kv: -kv[1]) if v > 0.05}
    return {
        "cpu_ms_per_question": positive,
        "cpu_ms_total": round(sum(positive.values()), 1),
        "p50_ms": [r["latency"]["p50_ms"] for r in rounds],
        "q_per_s": [r["q_per_s"] for r in rounds],
    }


if __name__ == "__main__":
    main()

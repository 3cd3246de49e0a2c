"""Soak: mixed questions and uploads at half capacity for --minutes, watching latency drift, memory and errors.

    uv run python benchmarks/soak.py --minutes 10                     # make soak MINUTES=10
    uv run python benchmarks/soak.py --minutes 3 --capacity-qps 12 --capacity-uploads 1.2

Capacity is --capacity-qps / --capacity-uploads, else the capacity of the latest `make bench-load` result in
benchmarks/results/, else the same capacity search as load.py. Open-loop Poisson arrivals at half of it (see
loadgen.py) run for --minutes while the RSS of every service's process tree is sampled every 5 s.
Criteria (each reported pass/fail):
- p99 drift: question p99 of the last minute over the first minute's, as a signed change, <= +20 %.
- RSS growth per service: median RSS over the last minute against the median over the first minute after the
  warm-up (--warmup-minutes, 1), < 5 %.
- zero errors: every request answered 2xx, and every uploaded document `indexed` afterwards (waited for up to
  --index-wait-s; a document still pending then, or failed, counts as an error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

from corpus import summarise_views, wait_until_final
from harness import RESULTS_DIR, SERVICES, SystemUnderTest, finish, log, system_under_test
from load import add_traffic_args, parse_search_rates, prepared_traffic
from loadgen import UPLOAD, Rates, RssSeries, Traffic, describe, errors_in, query_p99, summarise

MAX_P99_DRIFT_PCT = 20.0
MAX_RSS_GROWTH_PCT = 5.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_traffic_args(parser)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--warmup-minutes", type=int, default=1)
    parser.add_argument("--load-factor", type=float, default=0.5, help="fraction of capacity offered")
    parser.add_argument("--index-wait-s", type=float, default=300.0)
    args = parse_search_rates(parser.parse_args(argv))
    if args.minutes < args.warmup_minutes + 2:
        parser.error("--minutes must leave at least two minutes after the warm-up (a baseline and a last minute)")
    if args.capacity_qps is None:
        latest = latest_load_capacity()
        if latest:
            args.capacity_qps, args.capacity_uploads = latest
            log(f"capacity from the latest load result: {latest[0]} questions/s, {latest[1]} uploads/s")
    return args


def latest_load_capacity() -> tuple[float, float] | None:
    results = sorted(RESULTS_DIR.glob("load-*.json"))
    if not results:
        return None
    capacity = json.loads(results[-1].read_text())["summary"]["capacity"]
    return float(capacity["queries_per_s"]), float(capacity["uploads_per_s"])


def per_minute(traffic: Traffic, start: float, minutes: int, rates: Rates) -> list[dict[str, Any]]:
    return [summarise(traffic.samples, start + 60 * m, start + 60 * (m + 1), rates) for m in range(minutes)]


def rss_growth(rss: RssSeries, start: float, args: argparse.Namespace) -> dict[str, dict[str, float | None]]:
    baseline_from = start + 60 * args.warmup_minutes
    last_from = start + 60 * (args.minutes - 1)
    growth: dict[str, dict[str, float | None]] = {}
    for name in SERVICES:
        baseline = rss.median_between(name, baseline_from, baseline_from + 60)
        last = rss.median_between(name, last_from, last_from + 60)
        pct = round((last - baseline) / baseline * 100, 2) if baseline and last else None
        growth[name] = {"baseline_mb": _round(baseline), "last_mb": _round(last), "growth_pct": pct}
    return growth


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def documents_indexed(traffic: Traffic, timeout_s: float) -> dict[str, int]:
    """Final status counts of every document the soak uploaded with a 2xx answer; `pending` if still in flight."""
    accepted = [s.document_id for s in traffic.samples if s.kind == UPLOAD and s.outcome == "ok"]
    try:
        views = await wait_until_final(traffic.upload_client, accepted, timeout_s)
    except TimeoutError as exc:
        log(f"  {exc}")
        views = {}
    counts = dict(summarise_views(views))
    counts["pending"] = len(accepted) - len(views)
    return counts


async def run(system: SystemUnderTest, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    async with prepared_traffic(system, args, "soak") as (traffic, _, capacity):
        rates = capacity.scaled(args.load_factor)
        log(f"soak: {rates.as_dict()} for {args.minutes} min")
        rss = RssSeries()
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(rss.run(traffic, stop))
        try:
            start, end = await traffic.run(rates, args.minutes * 60)
        finally:
            stop.set()
            await sampler
        documents = await documents_indexed(traffic, args.index_wait_s)
    minutes = per_minute(traffic, start, args.minutes, rates)
    whole = summarise(traffic.samples, start, end, rates)
    return report(capacity, rates, minutes, whole, rss_growth(rss, start, args), documents, system, args)


def report(
    capacity: Rates,
    rates: Rates,
    minutes: list[dict[str, Any]],
    whole: dict[str, Any],
    rss: dict[str, dict[str, float | None]],
    documents: dict[str, int],
    system: SystemUnderTest,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    print(f"Soak: {system.describe()}; capacity {capacity.as_dict()}, offered {rates.as_dict()}")
    for number, minute in enumerate(minutes, 1):
        print(describe(f"minute {number}", minute))
    print(describe("whole soak", whole))
    first, last = query_p99(minutes[0]), query_p99(minutes[-1])
    drift = round((last - first) / first * 100, 1) if first and not math.isnan(first + last) else None
    errors = errors_in(whole) + sum(n for status, n in documents.items() if status != "indexed")
    growths = [g["growth_pct"] for g in rss.values() if g["growth_pct"] is not None]
    verdict = {
        "p99_drift": drift is not None and drift <= MAX_P99_DRIFT_PCT,
        "rss_growth": bool(growths) and max(growths) < MAX_RSS_GROWTH_PCT,
        "zero_errors": errors == 0,
    }
    for name, growth in rss.items():
        print(f"  RSS {name}: {growth['baseline_mb']} -> {growth['last_mb']} MB ({growth['growth_pct']} %)")
    print(f"p99 first minute {first} ms, last minute {last} ms: drift {drift} %; documents {documents}")
    print(f"pass: {verdict}")
    summary = {
        "minutes": args.minutes,
        "offered": rates.as_dict(),
        "capacity": capacity.as_dict(),
        "p99_first_minute_ms": None if math.isnan(first) else first,
        "p99_last_minute_ms": None if math.isnan(last) else last,
        "p99_drift_pct": drift,
        "rss_growth_pct": {name: growth["growth_pct"] for name, growth in rss.items()},
        "errors": errors,
        "documents": documents,
        "pass": verdict,
    }
    arguments = {k: v for k, v in vars(args).items() if k != "search_steps"}
    details = {"minutes": minutes, "whole": whole, "rss": rss, "args": arguments, "search_steps": args.search_steps}
    return summary, details


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with system_under_test() as system:
        log(f"soak: {system.describe()}")
        summary, details = asyncio.run(run(system, args))
    finish("soak", summary, details)


if __name__ == "__main__":
    main()

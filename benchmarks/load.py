"""Load and stress: mixed questions and uploads at capacity, then 10x that, then back to capacity.

    uv run python benchmarks/load.py                                   # make bench-load
    uv run python benchmarks/load.py --capacity-qps 12 --capacity-uploads 1.2   # skip the capacity search

1. Index: the first --index-limit SciFact abstracts under the benchmark's key (stable ids: a no-op once indexed),
   so questions find something. Uploads during the run go to a fresh tenant when an admin token is known.
2. Capacity: open-loop Poisson arrivals of questions (POST /v1/query) and uploads (POST /v1/documents, at
   --upload-ratio x the question rate) at each --search-rates step (questions/s) for --step-s;
   capacity is the highest step whose question p99 < --p99-target-ms with every request answered 2xx
   (or --capacity-qps / --capacity-uploads as given). Then --sustain-s at capacity, checked the same way.
3. Overload: --overload-factor (10) x capacity for --overload-s. Passes when nothing times out and every refusal
   is a 429 or 503 carrying Retry-After (no other 5xx).
4. Recovery: capacity again for --recovery-s, in --window-s windows by send time, /readyz polled each second.
   Recovery time = start of the first window from which every window meets the p99 target with no refusals and
   /readyz ready; passes when <= --recovery-limit-s (60).
The report ends with one JSON line (see benchmarks/README.md, "Load, stress and soak").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from corpus import index_dataset, load_corpus, load_queries
from harness import DEFAULT_DATASET, SystemUnderTest, finish, fresh_tenant, log, run_id, system_under_test
from loadgen import Rates, Traffic, describe, errors_in, query_p99, readiness, summarise

CLIENT_IN_FLIGHT = 512
WARMUP_QUESTIONS = 10


def add_traffic_args(parser: argparse.ArgumentParser) -> None:
    """Options the load and soak benchmarks share: corpus, capacity (given or searched), target, client timeout."""
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="BEIR folder (corpus, queries)")
    parser.add_argument("--index-limit", type=int, default=300, help="abstracts indexed before the run")
    parser.add_argument("--skip-index", action="store_true", help="assume the corpus is indexed already")
    parser.add_argument("--capacity-qps", type=float, default=None, help="skip the search: questions/s at capacity")
    parser.add_argument("--capacity-uploads", type=float, default=None, help="uploads/s at capacity (with the above)")
    parser.add_argument("--search-rates", default="2,4,8,12,16,20,24,28,32", help="questions/s steps of the search")
    parser.add_argument("--upload-ratio", type=float, default=0.1, help="uploads per question in the mix")
    parser.add_argument("--step-s", type=float, default=15.0)
    parser.add_argument("--step-retries", type=int, default=1, help="tries again before a failed step ends it")
    parser.add_argument("--p99-target-ms", type=float, default=250.0)
    parser.add_argument("--request-timeout-s", type=float, default=10.0, help="client timeout: beyond it, a timeout")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_traffic_args(parser)
    parser.add_argument("--sustain-s", type=float, default=30.0)
    parser.add_argument("--overload-factor", type=float, default=10.0)
    parser.add_argument("--overload-s", type=float, default=15.0)
    parser.add_argument("--recovery-s", type=float, default=75.0, help="how long capacity load runs after overload")
    parser.add_argument("--recovery-limit-s", type=float, default=60.0)
    parser.add_argument("--window-s", type=float, default=5.0)
    return parse_search_rates(parser.parse_args(argv))


def parse_search_rates(args: argparse.Namespace) -> argparse.Namespace:
    args.search_rates = [float(rate) for rate in args.search_rates.split(",") if rate.strip()]
    return args


def load_client(system: SystemUnderTest, api_key: str, timeout_s: float) -> httpx.AsyncClient:
    """Enough connections that an open-loop arrival never waits for one inside the client."""
    return httpx.AsyncClient(
        base_url=system.gateway_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=CLIENT_IN_FLIGHT, max_keepalive_connections=CLIENT_IN_FLIGHT),
    )


def meets_target(summary: dict[str, Any], p99_target_ms: float) -> bool:
    p99 = query_p99(summary)
    return not math.isnan(p99) and p99 < p99_target_ms and errors_in(summary) == 0


async def find_capacity(traffic: Traffic, args: argparse.Namespace) -> tuple[Rates | None, list[dict[str, Any]]]:
    steps: list[dict[str, Any]] = []
    best: Rates | None = None
    for rate in args.search_rates:
        rates = Rates(rate, rate * args.upload_ratio)
        passed = False
        for _ in range(1 + args.step_retries):  # a shared machine's bad minute should not end the search
            start, end = await traffic.run(rates, args.step_s)
            summary = summarise(traffic.samples, start, end, rates)
            passed = meets_target(summary, args.p99_target_ms)
            steps.append({"offered": rates.as_dict(), "passed": passed, **summary})
            log(describe(f"search step {rate} q/s: {'pass' if passed else 'FAIL'}", summary))
            if passed:
                break
        if not passed:
            break
        best = rates
    return best, steps


async def recovery_phase(
    traffic: Traffic, client: httpx.AsyncClient, rates: Rates, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]], float | None]:
    """Capacity load after the overload, with /readyz polled every second; (phase summary, windows, recovery s)."""
    probes: list[tuple[float, bool]] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            probes.append((traffic.now(), await readiness(client)))
            await asyncio.sleep(1.0)

    poller = asyncio.ensure_future(poll())
    try:
        start, end = await traffic.run(rates, args.recovery_s)
    finally:
        done.set()
        await poller
    windows = []
    at = start
    while at + args.window_s <= end + 1e-6:
        summary = summarise(traffic.samples, at, at + args.window_s, rates)
        ready = [ok for when, ok in probes if at <= when < at + args.window_s]
        ok = meets_target(summary, args.p99_target_ms) and bool(ready) and all(ready)
        windows.append({"from_s": round(at - start, 1), "ok": ok, "ready": all(ready), **summary})
        at += args.window_s
    first_good = next((i for i in range(len(windows)) if all(w["ok"] for w in windows[i:])), None)
    recovery_s = windows[first_good]["from_s"] if first_good is not None else None
    return summarise(traffic.samples, start, end, rates), windows, recovery_s


def overload_verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """Under overload every request is answered: 2xx, or 429/503 with Retry-After; no timeouts, no other 5xx."""
    kinds = (summary["query"], summary["upload"])
    other = sum(
        n for part in kinds for outcome, n in part["outcomes"].items() if outcome not in ("ok", "shed", "client_cap")
    )
    verdict = {
        "timeouts": sum(part["timeouts"] for part in kinds),
        "shed": sum(part["outcomes"].get("shed", 0) for part in kinds),
        "shed_without_retry_after": sum(part["shed_without_retry_after"] for part in kinds),
        "other_5xx": sum(part["other_5xx"] for part in kinds),
        "other_failures": other,
        "client_cap": sum(part["outcomes"].get("client_cap", 0) for part in kinds),
    }
    verdict["passed"] = other == 0 and verdict["shed_without_retry_after"] == 0 and verdict["client_cap"] == 0
    return verdict


@contextlib.asynccontextmanager
async def prepared_traffic(
    system: SystemUnderTest, args: argparse.Namespace, name: str
) -> AsyncIterator[tuple[Traffic, httpx.AsyncClient, Rates]]:
    """Index the corpus, open the clients (uploads under a fresh tenant when possible) and know the capacity:
    (traffic, the questions' client, capacity rates); the capacity search's steps land in `args.search_steps`."""
    dataset = args.dataset.resolve()
    questions = list(load_queries(dataset).values())
    corpus = load_corpus(dataset)  # uploads cycle through all of it: few repeats for the tenant's embedding cache
    run = run_id()
    tenant = await fresh_tenant(system, f"{name}-{run}")
    upload_key = tenant[1] if tenant else system.api_key
    async with (
        load_client(system, system.api_key, args.request_timeout_s) as queries,
        load_client(system, upload_key, args.request_timeout_s) as uploads,
    ):
        if not args.skip_index:
            await index_dataset(queries, corpus[: args.index_limit], dataset.name)
        for question in questions[-WARMUP_QUESTIONS:]:  # cold caches and first-call costs stay out of the figures
            await queries.post("/v1/query", json={"question": question, "top_k": 5})
        traffic = Traffic(queries, uploads, questions, corpus, f"{name}-{run}", max_in_flight=CLIENT_IN_FLIGHT)
        args.search_steps = []
        if args.capacity_qps is not None:
            capacity: Rates | None = Rates(args.capacity_qps, args.capacity_uploads or 0.0)
        else:
            capacity, args.search_steps = await find_capacity(traffic, args)
        if capacity is None:
            raise SystemExit("no search step met the p99 target without errors: no capacity to load the system at")
        yield traffic, queries, capacity


async def run(system: SystemUnderTest, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    async with prepared_traffic(system, args, "load") as (traffic, queries, capacity):
        phases: dict[str, Any] = {}
        start, end = await traffic.run(capacity, args.sustain_s)
        phases["sustain"] = summarise(traffic.samples, start, end, capacity)
        log(describe("sustain", phases["sustain"]))
        overload = capacity.scaled(args.overload_factor)
        # No pause after the overload: capacity load follows at once, while its requests are still in flight.
        start, end = await traffic.run(overload, args.overload_s, drain=False)
        log("overload sent; back to capacity")
        recovery, windows, recovery_s = await recovery_phase(traffic, queries, capacity, args)
        phases["overload"] = summarise(traffic.samples, start, end, overload)
        phases["recovery"] = recovery
    return report(capacity, args.search_steps, phases, windows, recovery_s, system, args)


def report(
    capacity: Rates,
    steps: list[dict[str, Any]],
    phases: dict[str, Any],
    windows: list[dict[str, Any]],
    recovery_s: float | None,
    system: SystemUnderTest,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    print(f"Load, stress and recovery: {system.describe()}")
    print(f"capacity: {capacity.as_dict()} ({'measured' if steps else 'given'})")
    for name, summary in phases.items():
        print(describe(name, summary))
    print("recovery windows (from overload end, by send time):")
    for window in windows:
        query = window["query"]
        print(
            f"  +{window['from_s']:>5} s  {'ok ' if window['ok'] else 'NOT'}  ready={window['ready']}  "
            f"q p99 {query['latency_ok']['p99_ms']} ms  outcomes q {query['outcomes']} u {window['upload']['outcomes']}"
        )
    sustain_ok = meets_target(phases["sustain"], args.p99_target_ms)
    verdict = overload_verdict(phases["overload"])
    recovered = recovery_s is not None and recovery_s <= args.recovery_limit_s
    summary = {
        "capacity": {**capacity.as_dict(), "measured": bool(steps)},
        "sustain": _brief(phases["sustain"]),
        "overload": {**_brief(phases["overload"]), **verdict},
        "recovery": {**_brief(phases["recovery"]), "recovery_s": recovery_s},
        "pass": {"sustain": sustain_ok, "overload_sheds": verdict["passed"], "recovery": recovered},
    }
    print(f"pass: {summary['pass']}; recovery time {recovery_s} s (limit {args.recovery_limit_s} s)")
    arguments = {k: v for k, v in vars(args).items() if k != "search_steps"}
    details = {"search_steps": steps, "phases": phases, "recovery_windows": windows, "args": arguments}
    return summary, details


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    brief: dict[str, Any] = {}
    for kind in ("query", "upload"):
        part = summary[kind]
        brief[kind] = {
            "offered_per_s": part["offered_per_s"],
            "achieved_per_s": part["achieved_per_s"],
            "statuses": part["statuses"],
            "timeouts": part["timeouts"],
            **{key: _number(part["latency_ok"][key]) for key in ("p50_ms", "p95_ms", "p99_ms")},
        }
    return brief


def _number(value: float) -> float | None:
    """NaN (no 2xx answer to take a percentile of) becomes null in the JSON line."""
    return None if math.isnan(value) else value


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with system_under_test() as system:
        log(f"load: {system.describe()}")
        summary, details = asyncio.run(run(system, args))
    finish("load", summary, details)


if __name__ == "__main__":
    main()

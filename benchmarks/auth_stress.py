"""Authentication under attack: a valid tenant's question latency with and without a flood of wrong credentials.

    uv run python benchmarks/auth_stress.py                                  # make bench-auth
    uv run python benchmarks/auth_stress.py --phase-s 5 --attack-rps 40      # smoke run

1. Baseline: --concurrency closed-loop clients of the valid tenant (the harness's key) ask questions
   (POST /v1/query) for --phase-s seconds.
2. Under attack: the same clients for the same time, while --addresses attackers send --attack-rps requests/s in
   total (open loop): half with random API keys (GET /v1/documents), half with random admin tokens
   (GET /v1/admin/tenants/<id>). Each attacker has its own client address: a local source address 127.0.0.<n>
   (default; the gateway must listen on loopback), or with --forwarded-hops H an `X-Forwarded-For` chain naming
   198.18.<n>.1 behind a forged prefix, for a gateway with GATEWAY_TRUSTED_PROXY_HOPS=H.
The report puts both phases' p50/p95/p99 side by side (their ratio: the attack's cost to a valid tenant) with the
valid tenant's errors, and the attackers' status mix: 401 until an address has spent its failure budget
(GATEWAY_UNKNOWN_KEY_RATE_LIMIT, wrong keys and admin credentials together), 429 after; never 2xx, never 5xx.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from harness import SystemUnderTest, api_client, finish, log, system_under_test
from metrics import latency_summary

QUESTIONS = (
    "What does the paper conclude?",
    "Which method works best?",
    "How was the study designed?",
    "What are the limitations?",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-s", type=float, default=30.0, help="duration of each phase")
    parser.add_argument("--concurrency", type=int, default=4, help="the valid tenant's closed-loop clients")
    parser.add_argument("--attack-rps", type=float, default=400.0, help="wrong credentials per second, in total")
    parser.add_argument("--addresses", type=int, default=16, help="attacker client addresses")
    parser.add_argument("--forwarded-hops", type=int, default=0, help="attack through X-Forwarded-For (H hops)")
    parser.add_argument("--request-timeout-s", type=float, default=30.0)
    return parser.parse_args(argv)


@dataclass
class Phase:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        errors = sum(n for status, n in self.statuses.items() if status != 200)
        return {**latency_summary(self.latencies_ms), "errors": errors, "statuses": dict(self.statuses)}


async def valid_load(client: httpx.AsyncClient, phase: Phase, until: float) -> None:
    """One closed-loop client of the valid tenant: a question, its answer, the next question."""
    n = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = await client.post("/v1/query", json={"question": QUESTIONS[n % len(QUESTIONS)]})
            status = response.status_code
        except httpx.TransportError:
            status = 0
        phase.statuses[status] += 1
        if status == 200:
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)
        n += 1


def attacker_client(system: SystemUnderTest, n: int, hops: int, timeout_s: float) -> httpx.AsyncClient:
    """Attacker `n`'s client: its own loopback source address, or its own forwarded address behind a forged one."""
    if hops > 0:
        chain = [f"203.0.113.{n % 250 + 1}", f"198.18.{n % 250}.1", *["10.0.0.1"] * (hops - 1)]
        return httpx.AsyncClient(
            base_url=system.gateway_url, headers={"X-Forwarded-For": ", ".join(chain)}, timeout=timeout_s
        )
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{n % 250 + 2}")
    return httpx.AsyncClient(base_url=system.gateway_url, transport=transport, timeout=timeout_s)


async def attacker(client: httpx.AsyncClient, rate: float, statuses: Counter[str], until: float) -> None:
    """Open loop at `rate`/s: requests are sent on schedule, whether or not earlier ones were answered."""
    pending: set[asyncio.Task[None]] = set()
    start, n = time.monotonic(), 0
    while (due := start + n / rate) < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(_guess(client, n, statuses))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    await asyncio.gather(*pending)


async def _guess(client: httpx.AsyncClient, n: int, statuses: Counter[str]) -> None:
    admin = n % 2 == 1
    path = "/v1/admin/tenants/default" if admin else "/v1/documents"
    secret = secrets.token_urlsafe(32) if admin else f"rsk_{secrets.token_urlsafe(32)}"
    try:
        response = await client.get(path, headers={"Authorization": f"Bearer {secret}"})
        outcome = str(response.status_code)
    except httpx.TransportError as exc:
        outcome = type(exc).__name__
    statuses[f"{'admin' if admin else 'api_key'}:{outcome}"] += 1


async def run_phase(system: SystemUnderTest, args: argparse.Namespace, attack: bool) -> tuple[Phase, Counter[str]]:
    phase, attack_statuses = Phase(), Counter[str]()
    until = time.monotonic() + args.phase_s
    async with contextlib.AsyncExitStack() as stack:
        valid = await stack.enter_async_context(api_client(system, timeout_s=args.request_timeout_s))
        tasks = [valid_load(valid, phase, until) for _ in range(args.concurrency)]
        if attack:
            rate = args.attack_rps / args.addresses
            for n in range(args.addresses):
                client = attacker_client(system, n, args.forwarded_hops, args.request_timeout_s)
                await stack.enter_async_context(client)
                tasks.append(attacker(client, rate, attack_statuses, until))
        await asyncio.gather(*tasks)
    return phase, attack_statuses


def check_loopback(system: SystemUnderTest, args: argparse.Namespace) -> None:
    host = urlsplit(system.gateway_url).hostname or ""
    if args.forwarded_hops == 0 and not host.startswith("127."):
        raise SystemExit(f"{host} is not on loopback: use --forwarded-hops with GATEWAY_TRUSTED_PROXY_HOPS set")


def report(baseline: Phase, attacked: Phase, attack: Counter[str], args: argparse.Namespace) -> dict[str, Any]:
    before, during = baseline.summary(), attacked.summary()
    sent = sum(attack.values())
    admitted = sum(n for outcome, n in attack.items() if outcome.split(":")[1].startswith("2"))
    print(f"{'valid tenant':<14}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, row in (("baseline", before), ("under attack", during)):
        print(f"{name:<14}{row['n']:>7}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['p99_ms']:>10}{row['errors']:>8}")
    print(
        f"attack: {sent} wrong credentials in {args.phase_s:.0f} s ({sent / args.phase_s:.0f}/s) from "
        f"{args.addresses} addresses; outcomes {dict(sorted(attack.items()))}"
    )
    return {
        "baseline": before,
        "under_attack": during,
        "p50_ratio": round(during["p50_ms"] / before["p50_ms"], 2) if before["n"] and during["n"] else None,
        "p99_ratio": round(during["p99_ms"] / before["p99_ms"], 2) if before["n"] and during["n"] else None,
        "attack": {
            "sent": sent,
            "per_s": round(sent / args.phase_s, 1),
            "addresses": args.addresses,
            "forwarded_hops": args.forwarded_hops,
            "outcomes": dict(sorted(attack.items())),
            "admitted": admitted,
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with system_under_test() as system:
        log(system.describe())
        check_loopback(system, args)
        log(f"baseline: {args.concurrency} clients for {args.phase_s:.0f} s")
        baseline, _ = asyncio.run(run_phase(system, args, attack=False))
        log(f"under attack: the same, plus {args.attack_rps:.0f} wrong credentials/s from {args.addresses} addresses")
        attacked, attack = asyncio.run(run_phase(system, args, attack=True))
    summary = report(baseline, attacked, attack, args)
    finish("auth-stress", summary)


if __name__ == "__main__":
    main()

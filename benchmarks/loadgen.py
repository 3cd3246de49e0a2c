"""Open-loop mixed traffic (questions and document uploads) for the load and soak benchmarks.

Arrivals are Poisson (seeded), sent whatever the system's state: a slow system faces the same offered load as a
fast one, which is what "offered rate" means, unlike a closed loop whose clients wait for each answer. Every
request is recorded (kind, send time, latency, status, Retry-After); percentiles are over answered 2xx requests.
Loops are bounded by count and time, and requests in flight from this client are capped (an arrival beyond the cap
is recorded as `client_cap`, never sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from corpus import Document
from harness import SERVICES, service_trees, tree_rss_mb
from metrics import latency_summary

QUERY, UPLOAD = "query", "upload"
SHED_STATUSES = (429, 503)


@dataclass(frozen=True)
class Rates:
    """Offered load: questions and document uploads per second."""

    queries_per_s: float
    uploads_per_s: float

    def scaled(self, factor: float) -> Rates:
        return Rates(self.queries_per_s * factor, self.uploads_per_s * factor)

    def as_dict(self) -> dict[str, float]:
        return {"queries_per_s": round(self.queries_per_s, 2), "uploads_per_s": round(self.uploads_per_s, 2)}


@dataclass(frozen=True)
class Sample:
    kind: str
    sent_s: float  # seconds since the traffic's clock started (time.monotonic based)
    latency_ms: float
    status: int | None  # None: no HTTP answer (timeout, transport error, client cap)
    outcome: str  # ok | shed | http_<status> | timeout | transport | client_cap
    retry_after: bool = False
    document_id: str = ""  # uploads only


class Traffic:
    """Sends `Rates` worth of requests through two clients (one per tenant key) and records every answer."""

    def __init__(
        self,
        queries: httpx.AsyncClient,
        uploads: httpx.AsyncClient,
        questions: Sequence[str],
        documents: Sequence[Document],
        id_prefix: str,
        *,
        max_in_flight: int = 512,
        seed: int = 7,
    ) -> None:
        self._clients = {QUERY: queries, UPLOAD: uploads}
        self.upload_client = uploads  # under the uploading tenant: where their status can be read
        self._questions = questions
        self._documents = documents
        self._id_prefix = id_prefix
        self._max_in_flight = max_in_flight
        self._random = random.Random(seed)
        self._sent = Counter[str]()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.samples: list[Sample] = []
        self.clock_start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.clock_start

    async def run(self, rates: Rates, duration_s: float, *, drain: bool = True) -> tuple[float, float]:
        """Offer `rates` for `duration_s` (at most 1.2x the expected count per kind); (start, end) on the clock.
        With `drain`, returns once every request sent has been answered or has timed out; without, as soon as
        the last arrival is sent (the next phase's arrivals then follow without a pause)."""
        start = self.now()
        await asyncio.gather(
            self._arrivals(QUERY, rates.queries_per_s, duration_s),
            self._arrivals(UPLOAD, rates.uploads_per_s, duration_s),
        )
        await asyncio.sleep(max(0.0, start + duration_s - self.now()))  # the phase lasts its duration
        end = self.now()
        if drain:
            await self.drain()
        return start, end

    async def drain(self) -> None:
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight))

    async def _arrivals(self, kind: str, rate: float, duration_s: float) -> None:
        if rate <= 0:
            return
        bound = int(rate * duration_s * 1.2) + 1
        start = time.monotonic()
        next_at = start
        for _ in range(bound):
            next_at += self._random.expovariate(rate)
            if next_at - start > duration_s:
                break
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if len(self._in_flight) >= self._max_in_flight:
                self.samples.append(Sample(kind, self.now(), 0.0, None, "client_cap"))
                continue
            task = asyncio.ensure_future(self._send(kind))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _request(self, kind: str) -> tuple[str, dict[str, Any]]:
        number = self._sent[kind]
        self._sent[kind] += 1
        if kind == QUERY:
            return "/v1/query", {"question": self._questions[number % len(self._questions)], "top_k": 5}
        document = self._documents[number % len(self._documents)]
        return "/v1/documents", {"id": f"{self._id_prefix}-{number}", "title": document.title, "text": document.text}

    async def _send(self, kind: str) -> None:
        path, body = self._request(kind)
        document_id = str(body.get("id", ""))
        sent = self.now()
        started = time.perf_counter()
        try:
            response = await self._clients[kind].post(path, json=body)
        except httpx.TimeoutException:
            self.samples.append(Sample(kind, sent, _ms_since(started), None, "timeout", document_id=document_id))
            return
        except httpx.HTTPError:
            self.samples.append(Sample(kind, sent, _ms_since(started), None, "transport", document_id=document_id))
            return
        status = response.status_code
        outcome = "ok" if status < 300 else "shed" if status in SHED_STATUSES else f"http_{status}"
        retry_after = "retry-after" in response.headers
        self.samples.append(Sample(kind, sent, _ms_since(started), status, outcome, retry_after, document_id))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def summarise(samples: Sequence[Sample], start_s: float, end_s: float, offered: Rates) -> dict[str, Any]:
    """Per kind, over the requests sent in [start_s, end_s): offered and achieved rates, outcome and status counts,
    latency percentiles of the 2xx answers, timeouts, sheds without Retry-After and other 5xx."""
    span = max(end_s - start_s, 1e-9)
    offered_rates = {QUERY: offered.queries_per_s, UPLOAD: offered.uploads_per_s}
    summary: dict[str, Any] = {"duration_s": round(span, 1)}
    for kind in (QUERY, UPLOAD):
        mine = [s for s in samples if s.kind == kind and start_s <= s.sent_s < end_s]
        ok = [s.latency_ms for s in mine if s.outcome == "ok"]
        summary[kind] = {
            "offered_per_s": round(offered_rates[kind], 2),
            "sent_per_s": round(len(mine) / span, 2),
            "achieved_per_s": round(len(ok) / span, 2),
            "outcomes": dict(Counter(s.outcome for s in mine)),
            "statuses": {str(k): v for k, v in sorted(Counter(s.status for s in mine if s.status).items())},
            "latency_ok": latency_summary(ok),
            "timeouts": sum(s.outcome == "timeout" for s in mine),
            "shed_without_retry_after": sum(s.outcome == "shed" and not s.retry_after for s in mine),
            "other_5xx": sum(s.status is not None and s.status >= 500 and s.status != 503 for s in mine),
        }
    return summary


def errors_in(summary: dict[str, Any]) -> int:
    """Requests of a phase that did not get a 2xx answer (sheds included)."""
    return sum(n for kind in (QUERY, UPLOAD) for outcome, n in summary[kind]["outcomes"].items() if outcome != "ok")


def query_p99(summary: dict[str, Any]) -> float:
    return float(summary[QUERY]["latency_ok"]["p99_ms"])


def describe(name: str, summary: dict[str, Any]) -> str:
    lines = [f"{name} ({summary['duration_s']} s)"]
    for kind in (QUERY, UPLOAD):
        part = summary[kind]
        latency = part["latency_ok"]
        lines.append(
            f"  {kind:6} offered {part['offered_per_s']}/s sent {part['sent_per_s']}/s achieved "
            f"{part['achieved_per_s']}/s | statuses {part['statuses']} outcomes {part['outcomes']} | "
            f"p50/p95/p99 {latency['p50_ms']}/{latency['p95_ms']}/{latency['p99_ms']} ms | timeouts "
            f"{part['timeouts']}, shed w/o Retry-After {part['shed_without_retry_after']}, other 5xx "
            f"{part['other_5xx']}"
        )
    return "\n".join(lines)


class RssSeries:
    """Resident memory per service over time: every `interval_s`, the RSS (MB) of each process tree whose command
    line holds `ragstream_<name>.app` (counted once from its topmost match, as harness.RssSampler does)."""

    def __init__(self, services: Sequence[str] = SERVICES, interval_s: float = 5.0) -> None:
        self._markers = {name: f"ragstream_{name}.app" for name in services}
        self._interval_s = interval_s
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in services}

    async def run(self, clock: Traffic, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, mb in (await asyncio.to_thread(self._sample)).items():
                self.samples[name].append((clock.now(), mb))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    def median_between(self, name: str, start_s: float, end_s: float) -> float | None:
        values = [mb for at, mb in self.samples[name] if start_s <= at < end_s]
        return statistics.median(values) if values else None

    def _sample(self) -> dict[str, float]:
        return {name: tree_rss_mb(roots) for name, roots in service_trees(self._markers).items()}


async def readiness(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz", timeout=5)).status_code == 200
    except httpx.HTTPError:
        return False

"""Admission control: a bound on the questions in flight through this gateway.

A question holds its HTTP request open until the pipeline answers (up to its deadline, 30 s by default). Past
the pipeline's capacity, admitting more only lengthens the Kafka queue in front of the workers: every question
then waits, and most reach their deadline (504) or the client's timeout, long after the overload ended. Refusing
the excess at once with `503` + `Retry-After` keeps the latency of admitted questions bounded (about
`max_in_flight` / throughput) and tells clients when to come back; the work queue never grows past the bound.

One gateway event loop serves every request, so a plain counter is exact (no lock between check and increment).
"""

from __future__ import annotations

import json

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from ragstream_gateway.problems import PROBLEM_JSON, PROBLEM_TYPE_PREFIX, problem_body

# Questions in flight per gateway process. At this machine's measured 20-35 questions/s, an admitted question
# then waits at most about one second in the queue.
DEFAULT_MAX_IN_FLIGHT = 32
QUESTION_PATHS = frozenset({"/v1/query", "/v1/search"})
REFUSED = Counter(
    "ragstream_gateway_admission_refused_total", "Requests refused because too many were in flight", ["path"]
)


class AdmissionLimit:
    """ASGI middleware: at most `max_in_flight` requests on `paths` at a time; beyond, 503 with Retry-After."""

    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        paths: frozenset[str] = QUESTION_PATHS,
        retry_after_s: int = 1,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.app = app
        self.max_in_flight = max_in_flight
        self.paths = paths
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            REFUSED.labels(scope["path"]).inc()
            await self._refuse(scope["path"], send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, path: str, send: Send) -> None:
        body = problem_body(
            503,
            instance=path,
            detail=f"more than {self.max_in_flight} requests in flight; retry after {self.retry_after_s} s",
            type_=f"{PROBLEM_TYPE_PREFIX}overloaded",
        )
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(payload)).encode()),
            (b"retry-after", str(self.retry_after_s).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

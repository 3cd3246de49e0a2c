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
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from ragstream_gateway.problems import PROBLEM_JSON, PROBLEM_TYPE_PREFIX, problem_body

QUESTION_PATHS = frozenset({"/v1/query", "/v1/search"})
REFUSED = Counter(
    "ragstream_gateway_admission_refused_total", "Requests refused because too many were in flight", ["path"]
)


class AdmissionSettings(BaseSettings):
    """GATEWAY_ADMISSION_MAX_IN_FLIGHT: questions in flight per gateway process. Size it to about one second of
    the pipeline's throughput (an admitted question then waits about a second at most): 32 suits the 20-35
    questions/s measured on the 2-core development machine."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_ADMISSION_", extra="ignore")

    max_in_flight: int = Field(default=32, ge=1)
    retry_after_s: int = Field(default=1, ge=1)


class AdmissionLimit:
    """ASGI middleware: at most `max_in_flight` requests on `paths` at a time; beyond, 503 with Retry-After."""

    def __init__(
        self,
        app: ASGIApp,
        settings: AdmissionSettings | None = None,
        paths: frozenset[str] = QUESTION_PATHS,
    ) -> None:
        settings = settings or AdmissionSettings()
        self.app = app
        self.max_in_flight = settings.max_in_flight
        self.retry_after_s = settings.retry_after_s
        self.paths = paths
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

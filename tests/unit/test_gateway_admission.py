"""Admission control: questions beyond the in-flight bound are refused at once with 503 + Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError
from ragstream_gateway.admission import AdmissionLimit, AdmissionSettings
from ragstream_gateway.problems import PROBLEM_JSON
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp

pytestmark = pytest.mark.unit


class SlowApp:
    """Every request waits until `release` is set, so the test controls how many are in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def answer(self, request: Request) -> PlainTextResponse:
        self.entered += 1
        if request.url.path == "/v1/query" and request.query_params.get("fail"):
            raise RuntimeError("handler failed")
        await self.release.wait()
        return PlainTextResponse("ok")

    def build(self, max_in_flight: int) -> tuple[Starlette, AdmissionLimit]:
        routes = [Route(path, self.answer, methods=["POST", "GET"]) for path in ("/v1/query", "/v1/documents")]
        app = Starlette(routes=routes)
        settings = AdmissionSettings(max_in_flight=max_in_flight)
        app.add_middleware(AdmissionLimit, settings=settings)
        return app, AdmissionLimit(app.router, settings)


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_refuses_beyond_the_bound_with_retry_after_then_admits_again() -> None:
    slow = SlowApp()
    _, limit = slow.build(max_in_flight=2)
    async with _client(limit) as client:
        held = [asyncio.ensure_future(client.post("/v1/query")) for _ in range(2)]
        await _until(lambda: slow.entered == 2)
        refused = await client.post("/v1/query")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == PROBLEM_JSON
        body = refused.json()
        assert body["type"] == "urn:ragstream:problem:overloaded" and body["instance"] == "/v1/query"
        slow.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert limit.in_flight == 0
        assert (await client.post("/v1/query")).status_code == 200


async def test_other_paths_are_not_counted_or_limited() -> None:
    slow = SlowApp()
    _, limit = slow.build(max_in_flight=1)
    async with _client(limit) as client:
        held = asyncio.ensure_future(client.post("/v1/query"))
        await _until(lambda: slow.entered == 1)
        uploads = [asyncio.ensure_future(client.post("/v1/documents")) for _ in range(3)]
        await _until(lambda: slow.entered == 4)
        assert limit.in_flight == 1
        slow.release.set()
        assert [r.status_code for r in await asyncio.gather(held, *uploads)] == [200] * 4


async def test_a_failing_request_frees_its_slot() -> None:
    slow = SlowApp()
    _, limit = slow.build(max_in_flight=1)
    slow.release.set()
    async with _client(limit) as client:
        with pytest.raises(RuntimeError):
            await client.post("/v1/query", params={"fail": "1"})
        assert limit.in_flight == 0
        assert (await client.post("/v1/query")).status_code == 200


async def test_mounted_as_middleware_it_guards_the_app() -> None:
    slow = SlowApp()
    app, _ = slow.build(max_in_flight=1)
    async with _client(app) as client:
        held = asyncio.ensure_future(client.post("/v1/query"))
        await _until(lambda: slow.entered == 1)
        assert (await client.post("/v1/query")).status_code == 503
        slow.release.set()
        assert (await held).status_code == 200


def test_the_bound_comes_from_the_environment_and_must_admit_something(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMISSION_MAX_IN_FLIGHT", "7")
    assert AdmissionLimit(Starlette()).max_in_flight == 7
    with pytest.raises(ValidationError):
        AdmissionSettings(max_in_flight=0)

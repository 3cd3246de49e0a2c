"""The gateway's edges against real Postgres and Kafka: client addresses behind proxies, allowlists as written,
errors that hide their cause, security headers, closed surfaces and request bounds."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.apidocs import DOCS_CSP
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.query.replies import FailureEvent, PendingQueries, ReplyEvent
from ragstream_gateway.query.service import QueryDispatcher
from structlog.testing import capture_logs

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ADMIN_TOKEN = secrets.token_urlsafe(32)
SIDECAR = "127.0.0.6"  # the socket peer behind Istio
ALB = "10.0.12.34"
SECRET_TEXT = "password=hunter2 host=10.9.8.7"
Gateway = tuple[GatewaySettings, GatewayDeps]


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[Gateway]:
    urls = service_database_urls
    settings = GatewaySettings(
        DATABASE_URL=urls["gateway"],
        admin_database_url=urls["gateway-admin"],
        kafka=kafka_principals["gateway"],
        admin_token=ADMIN_TOKEN,
        db_pool_size=2,
        trusted_proxy_hops=2,  # the ALB and the Istio ingress
        publish_timeout_s=2,
    )
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


class WorkerFails(PendingQueries):
    """Stands in for a worker whose DeliverFailure arrives at once, with its exception text as the reason."""

    def open(self, query_id: str, tenant_id: str = "") -> asyncio.Queue[ReplyEvent]:
        queue = super().open(query_id, tenant_id)
        failure: ReplyEvent = FailureEvent("generate", f"OperationalError: {SECRET_TEXT}")
        queue.put_nowait(failure)
        return queue


def _failing_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/test/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError(f"cannot connect: {SECRET_TEXT}")

    return router


def _client(gateway: Gateway, *, peer: str = SIDECAR, key: str | None = None, **changes: Any) -> httpx.AsyncClient:
    settings, deps = gateway
    queries = QueryDispatcher(RoutedEventSink(deps.publisher, GATEWAY_ROUTES), WorkerFails(), "127.0.0.1:1")
    app = create_app(settings.model_copy(update=changes), deps, routers=[_failing_router()], queries=queries)
    transport = httpx.ASGITransport(app=app, client=(peer, 40000), raise_app_exceptions=False)
    headers = {"X-API-Key": key} if key else {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)


def _problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    if slug:
        assert body["type"] == f"urn:ragstream:problem:{slug}", body
    return body


async def _tenant_with_key(gateway: Gateway, **tenant: Any) -> tuple[str, str]:
    tenant_id = f"hard-{RUN}-{uuid.uuid4().hex[:6]}"
    async with _client(gateway) as admin:
        created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Hardening", **tenant})
        assert created.status_code == 201, created.text
        key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "k"})
        assert key.status_code == 201, key.text
    return tenant_id, key.json()["api_key"]


async def test_the_allowlist_judges_the_client_two_proxies_back_not_a_spoofed_prefix(gateway: Gateway) -> None:
    tenant_id, key = await _tenant_with_key(gateway, ip_allowlist=["203.0.113.0/24"])
    chains = {
        f"203.0.113.7, {ALB}": 200,  # the ALB appended the client, the ingress appended the ALB
        f"203.0.113.99, 198.51.100.9, {ALB}": 403,  # the client sent an allowed address first: never read
        f"198.51.100.9, 203.0.113.7, {ALB}": 200,  # a forged prefix cannot lock the real client out either
        "203.0.113.7": 403,  # fewer entries than hops (not through the proxies): the peer is judged
    }
    async with _client(gateway, key=key) as client:
        for chain, status in chains.items():
            response = await client.get("/v1/documents", headers={"X-Forwarded-For": chain})
            assert response.status_code == status, (chain, response.text)
            if status == 403:
                assert _problem(response, 403, "address-not-allowed")["detail"].count("203.0.113") == 0
    async with _client(gateway) as admin:
        audit = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    addresses = {e["client_ip"] for e in audit if e["action"] == "auth.refused"}
    assert "198.51.100.9" in addresses and SIDECAR in addresses and "203.0.113.99" not in addresses


@pytest.mark.parametrize(
    ("allowlist", "why"),
    [
        (["0.0.0.0/0"], "admits every address"),
        (["::/0"], "admits every"),
        (["10.0.0.0/8", "4.0.0.0/6"], "wider than /8"),
    ],
)
async def test_allowlists_that_admit_too_much_are_refused_unless_forced(
    gateway: Gateway, allowlist: list[str], why: str
) -> None:
    tenant_id = f"wide-{RUN}-{uuid.uuid4().hex[:6]}"
    body = {"tenant_id": tenant_id, "name": "Wide", "ip_allowlist": allowlist}
    async with _client(gateway) as admin:
        refused = _problem(await admin.post("/v1/admin/tenants", json=body), 422, "allowlist-refused")
        assert why in refused["detail"]
        assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).status_code == 404  # nothing was created
        forced = await admin.post("/v1/admin/tenants", json={**body, "force_allowlist": True})
    assert forced.status_code == 201, forced.text
    assert forced.json()["ip_allowlist"] == allowlist


async def test_an_internal_error_answers_a_correlation_id_and_logs_the_exception_under_it(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        with capture_logs() as logs:
            response = await client.get("/v1/test/boom")
    body = _problem(response, 500, "internal")
    reference = body["correlation_id"]
    assert len(reference) == 32 and reference in body["detail"]
    assert response.headers["x-correlation-id"] == reference
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["cache-control"] == "no-store"
    (logged,) = [entry for entry in logs if entry["event"] == "unhandled error"]
    assert logged["correlation_id"] == reference and "hunter2" in logged["error"] and logged["exc_info"]


@pytest.fixture(scope="module")
async def key(gateway: Gateway) -> str:
    return (await _tenant_with_key(gateway))[1]


async def test_a_failed_pipeline_stage_hides_the_workers_reason(gateway: Gateway, key: str) -> None:
    async with _client(gateway, key=key) as client:
        with capture_logs() as logs:
            answer = await client.post("/v1/query", json={"question": "Why?"})
            stream = await client.post("/v1/query", json={"question": "Why?"}, headers={"Accept": "text/event-stream"})
    body = _problem(answer, 502, "query-failed")
    assert "hunter2" not in answer.text and "OperationalError" not in answer.text
    assert body["detail"].startswith("the generate stage could not answer the query") and body["query_id"]
    assert "event: error" in stream.text and "hunter2" not in stream.text and "correlation_id" in stream.text
    failures = [entry for entry in logs if entry["event"] == "request failed"]
    assert body["correlation_id"] in {entry["correlation_id"] for entry in failures}
    assert all("hunter2" in entry["cause"] for entry in failures) and len(failures) == 2


async def test_every_response_carries_the_security_headers(gateway: Gateway) -> None:
    async with _client(gateway, key="not-a-key") as client:
        responses = [
            await client.get("/healthz"),
            await client.get("/v1/documents"),  # 401 problem
            await client.get("/nowhere"),  # 404 problem
            await client.get("/openapi.json"),
        ]
        docs = await client.get("/docs")
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"] == "no-referrer"
        assert len(response.headers["x-correlation-id"]) == 32
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert docs.headers["content-security-policy"] == DOCS_CSP
    assert docs.headers["x-frame-options"] == "DENY" and docs.headers["x-content-type-options"] == "nosniff"


async def test_metrics_are_not_on_the_api_port_and_docs_can_be_turned_off(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        assert (await client.get("/metrics")).status_code == 404
    async with _client(gateway, docs_enabled=False) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            _problem(await client.get(path), 404)
        assert (await client.get("/healthz")).status_code == 200
    assert gateway[0].metrics_port == 9100 and gateway[0].metrics_port != gateway[0].port


LONG = "x" * 4097
BOUNDS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/documents", {"text": "t", "metadata": {f"k{n}": "v" for n in range(65)}}),
    ("POST", "/v1/documents", {"text": "t", "metadata": {"k" * 129: "v"}}),
    ("POST", "/v1/documents", {"text": "t", "metadata": {"k": LONG}}),
    ("POST", "/v1/documents", {"text": "t", "metadata": {"k": "nul\u0000"}}),
    ("POST", "/v1/documents", {"text": "t", "title": "x" * 1025}),
    ("POST", "/v1/documents", {"text": "t", "title": "nul\u0000"}),
    ("POST", "/v1/query", {"question": "q" * 4001}),
    ("POST", "/v1/query", {"question": "nul\u0000"}),
    ("POST", "/v1/query", {"question": "q", "top_k": 101}),
    ("POST", "/v1/query", {"question": "q", "top_k": 0}),
    ("POST", "/v1/query", {"question": "q", "filters": {"metadata": {f"k{n}": "v" for n in range(65)}}}),
    ("POST", "/v1/query", {"question": "q", "filters": {"metadata": {"k": LONG}}}),
    ("POST", "/v1/query", {"question": "q", "filters": {"document_ids": [f"d{n}" for n in range(1001)]}}),
    ("POST", "/v1/query", {"question": "q", "filters": {"document_ids": ["../../etc/passwd"]}}),
    ("POST", "/v1/search", {"query": "q" * 4001}),
    ("POST", "/v1/search", {"query": "q", "filters": {"metadata": {"": "v"}}}),
]


@pytest.mark.parametrize(("method", "path", "body"), BOUNDS, ids=[f"{p}-{n}" for n, (_, p, _) in enumerate(BOUNDS)])
async def test_request_bounds_are_422_problems(
    gateway: Gateway, key: str, method: str, path: str, body: dict[str, Any]
) -> None:
    async with _client(gateway, key=key) as client:
        response = await client.request(method, path, json=body)
    problem = _problem(response, 422, "validation")
    assert problem["errors"] and "\u0000" not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/admin/tenants", {"tenant_id": "t-nul", "name": "nul\u0000"}),
        (
            "/v1/admin/tenants",
            {"tenant_id": "t-many", "name": "n", "ip_allowlist": [f"10.0.{n}.0/24" for n in range(257)]},
        ),
        ("/v1/admin/tenants", {"tenant_id": "t-rate", "name": "n", "rate_limit": "1/minute;" * 100}),
    ],
)
async def test_admin_request_bounds_are_422_problems(gateway: Gateway, path: str, body: dict[str, Any]) -> None:
    async with _client(gateway) as admin:
        _problem(await admin.post(path, json=body), 422, "validation")

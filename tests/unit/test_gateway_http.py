"""The HTTP layer over stand-in collaborators: problem+json everywhere, authentication, limits, body checks."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from unittest.mock import AsyncMock

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest
from pydantic import SecretStr
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import KeyGrant
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.ratelimit import TenantRateLimiter
from ragstream_gateway.security import ALL_SCOPES, hash_api_key

pytestmark = pytest.mark.unit
KEY = "test-key"


def _grant(**changes: object) -> KeyGrant:
    fields: dict[str, object] = {
        "key_id": "key_1",
        "tenant_id": "acme",
        "scopes": ALL_SCOPES,
        "revoked": False,
        "expires_at": None,
        "rate_limit": None,
        "ip_allowlist": (),
    }
    fields.update(changes)
    return KeyGrant(**fields)  # type: ignore[arg-type]


def _deps(grant: KeyGrant | None) -> GatewayDeps:
    tenants = AsyncMock()
    tenants.find_key.side_effect = lambda digest: grant if digest == hash_api_key(KEY) else None
    registry = AsyncMock()
    registry.get.return_value = None
    readiness = AsyncMock()
    readiness.checks.return_value = {"kafka_producer": True, "database": True}
    return GatewayDeps(
        registry=registry,
        blobs=AsyncMock(),
        publisher=AsyncMock(),
        audit=AsyncMock(),
        tenants=tenants,
        limiter=TenantRateLimiter("async+memory://", "1000/minute"),
        readiness=readiness,
    )


def _client(deps: GatewayDeps, client_ip: str = "127.0.0.1", **settings: object) -> httpx.AsyncClient:
    settings.setdefault("admin_token", None)  # whatever the environment says
    app = create_app(GatewaySettings(**settings), deps)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_deps(_grant())) as c:
        yield c


def _assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    return body


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    body = _assert_problem(await client.get("/nope"), 404)
    assert body["type"] == "about:blank" and body["title"] == "Not Found"


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.put("/healthz"), 405)


async def test_validation_errors_are_problems(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/documents", params={"limit": 0}, headers={"X-API-Key": KEY})
    body = _assert_problem(response, 422)
    assert body["type"] == "urn:ragstream:problem:validation"
    assert body["errors"][0]["loc"] == ["query", "limit"]  # type: ignore[index]


async def test_invalid_document_id_is_422(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.get("/v1/documents/bad%20id", headers={"X-API-Key": KEY}), 422)


async def test_missing_key_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/documents")
    _assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.get("/v1/documents", headers={"Authorization": "Bearer other"}), 401)


async def test_both_key_headers_authenticate(client: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        response = await client.get("/v1/documents/doc-1", headers=headers)
        _assert_problem(response, 404)  # authenticated; the stand-in registry knows no documents


async def test_revoked_key_is_401_and_audited() -> None:
    deps = _deps(_grant(revoked=True))
    async with _client(deps) as client:
        _assert_problem(await client.get("/v1/documents", headers={"X-API-Key": KEY}), 401)
    entry = deps.audit.record.call_args.args[0]  # type: ignore[attr-defined]
    assert (entry.tenant_id, entry.action, entry.details["reason"]) == ("acme", "auth.refused", "revoked")


async def test_address_outside_allowlist_is_403() -> None:
    grant = _grant(ip_allowlist=(ipaddress.ip_network("10.0.0.0/8"),))
    async with _client(_deps(grant), client_ip="192.168.1.5") as client:
        body = _assert_problem(await client.get("/v1/documents", headers={"X-API-Key": KEY}), 403)
    assert body["type"] == "urn:ragstream:problem:address-not-allowed"
    async with _client(_deps(grant), client_ip="10.9.8.7") as client:
        _assert_problem(await client.get("/v1/documents/x", headers={"X-API-Key": KEY}), 404)


async def test_missing_scope_is_403() -> None:
    async with _client(_deps(_grant(scopes=("documents:read",)))) as client:
        response = await client.post("/v1/documents", json={"text": "hi"}, headers={"X-API-Key": KEY})
    assert _assert_problem(response, 403)["type"] == "urn:ragstream:problem:missing-scope"


async def test_rate_limit_is_429_with_retry_after() -> None:
    async with _client(_deps(_grant(rate_limit="2/minute"))) as client:
        statuses = [(await client.get("/v1/documents/x", headers={"X-API-Key": KEY})) for _ in range(3)]
    assert [r.status_code for r in statuses] == [404, 404, 429]
    _assert_problem(statuses[-1], 429)
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60


async def test_declared_oversize_body_is_413_before_reading(client: httpx.AsyncClient) -> None:
    async with _client(_deps(_grant()), max_upload_bytes=1000) as small:
        response = await small.post(
            "/v1/documents", content=b"x" * 400_000, headers={"X-API-Key": KEY, "Content-Type": "application/json"}
        )
    _assert_problem(response, 413)


async def test_streamed_oversize_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 10_000

    async with _client(_deps(_grant()), max_upload_bytes=1000) as small:
        response = await small.post(
            "/v1/documents", content=chunks(), headers={"X-API-Key": KEY, "Content-Type": "application/json"}
        )
    _assert_problem(response, 413)


async def test_unsupported_media_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/documents", content=b"hi", headers={"X-API-Key": KEY, "Content-Type": "text/csv"})
    _assert_problem(response, 415)


async def test_bad_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/documents", content=b"{not json", headers={"X-API-Key": KEY, "Content-Type": "application/json"}
    )
    _assert_problem(response, 422)


async def test_admin_api_without_credentials_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/admin/tenants", json={"tenant_id": "t", "name": "T"})
    _assert_problem(response, 401)


async def test_admin_token_is_checked() -> None:
    async with _client(_deps(None), admin_token=SecretStr("r" * 32)) as client:
        response = await client.get("/v1/admin/tenants/acme", headers={"Authorization": "Bearer wrong"})
    _assert_problem(response, 401)


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    # Prometheus scrapes its own listener (GATEWAY_METRICS_PORT, prometheus_client's REGISTRY), not the API port.
    assert (await client.get("/metrics")).status_code == 404
    metrics = generate_latest(REGISTRY).decode()
    assert "ragstream_gateway_http_requests_total" in metrics
    assert "/v1/documents/{document_id}" in metrics or "route=" in metrics
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/documents" in spec["paths"] and "ProblemDetails" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


async def test_not_ready_is_503_problem() -> None:
    deps = _deps(_grant())
    deps.readiness.checks.return_value = {"kafka_producer": True, "database": False}  # type: ignore[attr-defined]
    async with _client(deps) as client:
        body = _assert_problem(await client.get("/readyz"), 503)
    assert body["checks"] == {"kafka_producer": True, "database": False}


async def test_database_outage_is_503_problem() -> None:
    import psycopg

    deps = _deps(_grant())
    deps.registry.get.side_effect = psycopg.OperationalError("connection refused")  # type: ignore[attr-defined]
    async with _client(deps) as client:
        response = await client.get("/v1/documents/doc-1", headers={"X-API-Key": KEY})
    assert _assert_problem(response, 503)["type"] == "urn:ragstream:problem:unavailable"
    assert response.headers["retry-after"] == "5"


def test_no_route_runs_a_dependency_or_endpoint_in_a_worker_thread() -> None:
    """FastAPI runs plain `def` dependencies and endpoints in a thread pool: a thread handoff per request."""
    import inspect

    from fastapi.routing import APIRoute
    from ragstream_gateway.routes import query as query_routes

    app = create_app(GatewaySettings(admin_token=None), _deps(_grant()), routers=[query_routes.router])

    def sync_calls(dependant: object) -> list[str]:
        found = []
        call = getattr(dependant, "call", None)
        if call is not None:
            target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
            if not inspect.iscoroutinefunction(target) and not inspect.isasyncgenfunction(target):
                found.append(getattr(call, "__qualname__", repr(call)))
        for child in getattr(dependant, "dependencies", ()):
            found += sync_calls(child)
        return found

    def api_routes(routes: list[object]) -> list[APIRoute]:
        found = []
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            included = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
            found += api_routes(list(getattr(included, "routes", ())))
        return found

    routes = api_routes(list(app.routes))
    assert len(routes) > 10 and any(route.path.endswith("/query") for route in routes)
    offenders = {route.path: sync_calls(route.dependant) for route in routes}
    assert {path: calls for path, calls in offenders.items() if calls} == {}

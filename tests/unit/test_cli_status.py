"""`ragstream status` over httpx.MockTransport: the gateway's readiness plus, with the admin token, every
service's health (GET /v1/admin/health); exit 1 when anything is not ready or not SERVING."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ragstream_cli.main import app
from ragstream_cli.session import Session
from typer.testing import CliRunner

pytestmark = pytest.mark.unit
runner = CliRunner()
ADMIN = "admin-token-for-tests-32-characters"
READY = {"status": "ready", "checks": {"database": True, "kafka_producer": True}}


def service(name: str, status: str = "SERVING", detail: str | None = None) -> dict[str, Any]:
    return {"name": name, "address": f"{name}:5005", "status": status, "latency_ms": 1.5, "detail": detail}


def gateway(services: list[dict[str, Any]], seen: list[httpx.Request] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/readyz":
            return httpx.Response(200, json=READY)
        assert request.url.path == "/v1/admin/health"
        ok = all(s["status"] == "SERVING" for s in services)
        return httpx.Response(200, json={"status": "ok" if ok else "degraded", "services": services, "gateway": READY})

    return handler


def invoke(handler: Any, *args: str, admin: bool = True) -> Any:
    env = {"RAGSTREAM_CONFIG": "/nonexistent/config.toml", "COLUMNS": "200"}
    if admin:
        env["RAGSTREAM_ADMIN_TOKEN"] = ADMIN
    return runner.invoke(app, list(args), obj=Session(transport=httpx.MockTransport(handler)), env=env)


def test_every_service_serving_is_a_table_and_exit_0() -> None:
    seen: list[httpx.Request] = []
    result = invoke(gateway([service("embed"), service("ingest")], seen), "status")
    assert result.exit_code == 0, result.output
    assert "ready" in result.output and "every service SERVING" in result.output
    for name in ("embed", "ingest"):
        assert any(name in line and "SERVING" in line for line in result.output.splitlines()), result.output
    (admin_call,) = [r for r in seen if r.url.path == "/v1/admin/health"]
    assert admin_call.headers["authorization"] == f"Bearer {ADMIN}"
    assert all("authorization" not in r.headers for r in seen if r.url.path in ("/healthz", "/readyz"))


def test_a_service_not_serving_exits_1_and_says_which() -> None:
    services = [service("embed", "UNREACHABLE", "UNAVAILABLE: connection refused"), service("ingest")]
    result = invoke(gateway(services), "status")
    assert result.exit_code == 1
    assert "not serving: embed UNREACHABLE" in result.output and "connection refused" in result.output


def test_json_has_readiness_and_services() -> None:
    services = [service("embed"), service("retrieve", "NOT_SERVING", "draining")]
    result = invoke(gateway(services), "status", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ready"] is True and report["checks"] == READY["checks"]
    assert report["services"] == services and report["healthy"] is False


def test_without_an_admin_token_only_the_gateway_is_judged() -> None:
    seen: list[httpx.Request] = []
    result = invoke(gateway([], seen), "status", "--json", admin=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["services"] is None and "admin token" in report["services_error"]
    assert [r.url.path for r in seen] == ["/healthz", "/readyz"]
    plain = invoke(gateway([]), "status", admin=False)
    assert plain.exit_code == 0 and "worker health: needs the admin token" in plain.output


def test_a_refused_admin_token_fails_the_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/admin/health":
            body = {"type": "urn:ragstream:problem:unauthorized", "status": 401, "detail": "not valid"}
            return httpx.Response(401, json=body, headers={"content-type": "application/problem+json"})
        return gateway([])(request)

    result = invoke(handler, "status")
    assert result.exit_code == 1
    assert "worker health: 401 urn:ragstream:problem:unauthorized: not valid" in result.output

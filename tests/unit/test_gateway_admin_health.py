"""GET /v1/admin/health: the survey's logic over a scripted probe (unit), then the real gRPC probe against a real
grpc.health.v1 server and a closed port (integration: loopback sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_deps import gateway_deps
from pydantic import SecretStr
from ragstream_common.grpc_server import GrpcServer
from ragstream_common.registry import SERVICES
from ragstream_devstack.processes import free_port
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.service_health import (
    ServiceHealthSettings,
    ServiceUnreachable,
    registry_addresses,
    survey,
)

ADMIN = "a" * 32
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
unit = pytest.mark.unit


class ScriptedProbe:
    """Answers per service name: a status, an exception to raise, or None to hang past any deadline."""

    def __init__(self, answers: dict[str, str | Exception | None]) -> None:
        self.answers = answers

    async def status(self, name: str, address: str, timeout_s: float) -> str:
        answer = self.answers[name]
        if answer is None:
            await asyncio.sleep(3600)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, str)
        return answer


def ready_deps(**overrides: object) -> GatewayDeps:
    deps = gateway_deps(**overrides)
    deps.readiness.checks.return_value = {"database": True, "kafka_producer": True}  # type: ignore[attr-defined]
    return deps


def client_for(deps: GatewayDeps, addresses: dict[str, str], timeout_s: float = 0.5) -> httpx.AsyncClient:
    health = ServiceHealthSettings(addresses=addresses, timeout_s=timeout_s)
    settings = GatewaySettings(admin_token=SecretStr(ADMIN), service_health=health)
    app = create_app(settings, deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@unit
def test_default_addresses_are_every_worker_of_the_registry() -> None:
    addresses = ServiceHealthSettings().addresses
    workers = {name for name, spec in SERVICES.items() if name != "gateway"}
    assert addresses == registry_addresses() and set(addresses) == workers
    assert addresses["embed"] == f"127.0.0.1:{SERVICES['embed'].grpc_port}"


@unit
def test_addresses_and_plaintext_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVICE_HEALTH_ADDRESSES", "ingest=ingest:50051, embed=embed:50052")
    monkeypatch.setenv("GATEWAY_SERVICE_HEALTH_PLAINTEXT", "ingest,metering")
    monkeypatch.setenv("GATEWAY_SERVICE_HEALTH_TIMEOUT_S", "0.75")
    settings = GatewaySettings(admin_token=None).service_health
    assert settings.addresses == {"ingest": "ingest:50051", "embed": "embed:50052"}
    assert settings.plaintext == frozenset({"ingest", "metering"}) and settings.timeout_s == 0.75
    monkeypatch.setenv("GATEWAY_SERVICE_HEALTH_ADDRESSES", '{"retrieve": "retrieve:50053"}')
    assert ServiceHealthSettings().addresses == {"retrieve": "retrieve:50053"}
    monkeypatch.setenv("GATEWAY_SERVICE_HEALTH_ADDRESSES", "ingest=nowhere")
    with pytest.raises(ValueError, match="name=host:port"):
        ServiceHealthSettings()


@unit
async def test_survey_checks_concurrently_and_bounds_each_check() -> None:
    probe = ScriptedProbe(
        {"a": "SERVING", "b": "NOT_SERVING", "c": ServiceUnreachable("UNAVAILABLE: connection refused"), "d": None}
    )
    started = time.perf_counter()
    report = await survey(probe, {name: f"{name}:1" for name in "dcba"}, timeout_s=0.3)
    assert time.perf_counter() - started < 1.5  # one deadline (plus grace), not four
    assert [(s.name, s.status) for s in report] == [
        ("a", "SERVING"),
        ("b", "NOT_SERVING"),
        ("c", "UNREACHABLE"),
        ("d", "UNREACHABLE"),
    ]
    assert report[0].detail is None and report[0].serving
    assert "dependency" in (report[1].detail or "")
    assert report[2].detail == "UNAVAILABLE: connection refused"
    assert report[3].detail == "no answer within 0.3 s" and report[3].latency_ms >= 300


@unit
async def test_report_is_ok_when_every_service_serves_and_the_gateway_is_ready() -> None:
    deps = ready_deps(health_probe=ScriptedProbe({"ingest": "SERVING", "embed": "SERVING"}))
    async with client_for(deps, {"ingest": "ingest:1", "embed": "embed:2"}) as client:
        response = await client.get("/v1/admin/health", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["gateway"] == {"status": "ready", "checks": {"database": True, "kafka_producer": True}}
    assert [(s["name"], s["status"], s["address"]) for s in body["services"]] == [
        ("embed", "SERVING", "embed:2"),
        ("ingest", "SERVING", "ingest:1"),
    ]
    assert all(s["latency_ms"] >= 0 and s["detail"] is None for s in body["services"])


@unit
async def test_one_service_down_or_the_gateway_unready_is_degraded() -> None:
    probe = ScriptedProbe({"ingest": "SERVING", "embed": ServiceUnreachable("UNAVAILABLE: refused")})
    async with client_for(ready_deps(health_probe=probe), {"ingest": "i:1", "embed": "e:2"}) as client:
        body = (await client.get("/v1/admin/health", headers=ADMIN_HEADERS)).json()
    assert body["status"] == "degraded"
    assert {s["name"]: s["status"] for s in body["services"]} == {"embed": "UNREACHABLE", "ingest": "SERVING"}

    deps = ready_deps(health_probe=ScriptedProbe({"ingest": "SERVING"}))
    deps.readiness.checks.return_value = {"database": False}  # type: ignore[attr-defined]
    async with client_for(deps, {"ingest": "i:1"}) as client:
        body = (await client.get("/v1/admin/health", headers=ADMIN_HEADERS)).json()
    assert body["status"] == "degraded" and body["gateway"]["status"] == "not_ready"


@unit
async def test_needs_admin_credentials_and_is_in_the_openapi_document() -> None:
    async with client_for(ready_deps(health_probe=ScriptedProbe({})), {}) as client:
        missing = await client.get("/v1/admin/health")
        wrong = await client.get("/v1/admin/health", headers={"Authorization": "Bearer " + "b" * 32})
        spec = (await client.get("/openapi.json")).json()
    for refused in (missing, wrong):
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM_JSON
    operation = spec["paths"]["/v1/admin/health"]["get"]
    assert operation["security"] == [{"AdminToken": []}]
    assert {"200", "401", "403", "429"} <= operation["responses"].keys()
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SystemHealth")


@pytest.fixture
async def serving_worker() -> AsyncIterator[str]:
    """A real grpc.health.v1 server (the workers' own GrpcServer), SERVING."""
    server = GrpcServer("127.0.0.1", 0, ["rag.v1.EmbedService"])
    await server.start()
    await server.mark_serving()
    yield server.address
    await server.stop(grace_s=0)


@pytest.mark.integration
async def test_grpc_probe_reports_a_closed_port_unreachable(serving_worker: str) -> None:
    addresses = {"embed": serving_worker, "ingest": f"127.0.0.1:{free_port()}"}  # nothing listens there
    async with client_for(ready_deps(), addresses, timeout_s=2.0) as client:
        response = await client.get("/v1/admin/health", headers=ADMIN_HEADERS)
    body = response.json()
    services = {s["name"]: s for s in body["services"]}
    assert services["embed"]["status"] == "SERVING", body
    assert services["ingest"]["status"] == "UNREACHABLE" and "UNAVAILABLE" in services["ingest"]["detail"], body
    assert body["status"] == "degraded"

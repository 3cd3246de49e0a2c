"""pytest plugin: the whole system, started once per session (real Kafka, Postgres, Redis, model and every
service), for every tier that drives it from outside: tests/e2e and tests/browser.

Registered in tests/conftest.py (`pytest_plugins`), so both directories see the same fixture definitions and
pytest's own session cache starts the system once however the tiers are combined. A directory may still override
a name (tests/chaos has a `system` of its own). Heavy imports happen inside the fixtures, so collecting the unit
tier does not pay for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.system import LocalServices
    from standins.box_server import BoxStandin
    from standins.drive_server import DriveStandin
    from standins.graph_server import GraphStandin

    from support.otlp_receiver import OtlpReceiver

DEV_TENANT, DEV_KEY = "default", "dev-key"
OTHER_TENANT, OTHER_KEY = "other", "other-key"
ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    from support.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def metrics_ports() -> dict[str, int]:
    """Every service's /metrics listener (the gateway's apart from its API), on free ports."""
    from ragstream_devstack.processes import free_port
    from ragstream_devstack.system import DEFAULT_METRICS_PORTS

    return {name: free_port() for name in DEFAULT_METRICS_PORTS}


@pytest.fixture(scope="session")
def embed_metrics_port(metrics_ports: dict[str, int]) -> int:
    return metrics_ports["embed"]


# The document management systems the connectors worker talks to: stand-ins speaking each provider's protocol
# (tests/standins), up for the whole session because the worker's endpoints are fixed when it starts.
@pytest.fixture(scope="session")
def graph() -> Iterator[GraphStandin]:
    from standins.graph_server import GraphStandin

    with GraphStandin(page_size=50) as standin:
        yield standin


@pytest.fixture(scope="session")
def box() -> Iterator[BoxStandin]:
    from standins.box_server import BoxStandin

    with BoxStandin() as standin:
        yield standin


@pytest.fixture(scope="session")
def drive() -> Iterator[DriveStandin]:
    from standins.drive_server import DriveStandin

    with DriveStandin() as standin:
        yield standin


def connectors_env(graph: GraphStandin, box: BoxStandin, drive: DriveStandin) -> dict[str, str]:
    """The worker pointed at the stand-ins, polling every 10 s so a dropped notification heals within a test."""
    return {
        "CONNECTORS_ENDPOINTS__GRAPH_API_URL": graph.api_url,
        "CONNECTORS_ENDPOINTS__MICROSOFT_LOGIN_URL": graph.login_url,
        "CONNECTORS_ENDPOINTS__BOX_API_URL": box.api_url,
        "CONNECTORS_ENDPOINTS__BOX_TOKEN_URL": box.token_url,
        "CONNECTORS_ENDPOINTS__DRIVE_API_URL": drive.api_url,
        "CONNECTORS_ENDPOINTS__GOOGLE_TOKEN_URL": drive.token_url,
        "CONNECTORS_POLL_INTERVAL_S": "10",
        "CONNECTORS_SCHEDULER_INTERVAL_S": "1",
        "CONNECTORS_BATCH_WAIT_MS": "50",
    }


@pytest.fixture(scope="session")
async def system(
    metrics_ports: dict[str, int],
    graph: GraphStandin,
    box: BoxStandin,
    drive: DriveStandin,
    kafka_topics: str,
    migrated_database: str,
    otlp_receiver: OtlpReceiver,
    redis_url: str,
    service_identities: LocalCredentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LocalServices]:
    from ragstream_devstack.system import LocalServices, SystemPorts

    log_dir = Path(tmp_path_factory.mktemp("e2e-logs"))
    ports = dataclasses.replace(SystemPorts.free(), metrics=metrics_ports)
    services = LocalServices(
        kafka_topics,
        migrated_database,
        log_dir,
        service_identities,
        ports=ports,
        redis_url=redis_url,  # the gateway's rate limits and quota counters, as deployed
        extra_env={
            "*": {
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "LOG_LEVEL": "INFO",
            },
            "gateway": {
                "GATEWAY_DEV_TENANT": DEV_TENANT,
                "GATEWAY_DEV_API_KEY": DEV_KEY,
                "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            },
            "ingest": {"INGEST_FETCH_ALLOW_PRIVATE_NETWORKS": "true"},
            "embed": {"EMBED_BATCH_MAX_WAIT_MS": "20"},
            "connectors": connectors_env(graph, box, drive),
        },
    )
    services.start()
    try:
        await services.wait_serving(timeout_s=240)
        async with httpx.AsyncClient(base_url=services.gateway_url) as client:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield services
    finally:
        codes = services.stop()
        print(f"service exit codes: {codes}; logs in {log_dir}")


@pytest.fixture
async def gateway(system: LocalServices) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {DEV_KEY}"}
    async with httpx.AsyncClient(base_url=system.gateway_url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
async def other_tenant_gateway(system: LocalServices) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second tenant, provisioned through the admin API."""
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=60) as client:
        await client.post("/v1/admin/tenants", json={"tenant_id": OTHER_TENANT, "name": "Other"}, headers=ADMIN_HEADERS)
        response = await client.post(
            f"/v1/admin/tenants/{OTHER_TENANT}/api-keys", json={"name": "e2e"}, headers=ADMIN_HEADERS
        )
        assert response.status_code in (200, 201), response.text
        client.headers["Authorization"] = f"Bearer {response.json()['api_key']}"
        yield client

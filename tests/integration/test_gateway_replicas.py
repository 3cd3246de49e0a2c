"""Two gateway processes over the session's Kafka and Postgres (as deployed: their own logins): a key revoked or
rotated through one is refused by the other within a second, however long its key cache would keep the grant
(GATEWAY_KEY_CACHE_TTL_S=300 here): the change is pushed by Postgres (LISTEN/NOTIFY), not waited out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.system import LocalServices

pytestmark = pytest.mark.integration
TOKEN = "bootstrap-admin-token-for-two-replica-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
async def replicas(
    kafka_topics: str,
    migrated_database: str,
    service_identities: LocalCredentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    log_dir = Path(tmp_path_factory.mktemp("replica-logs"))
    env = {"GATEWAY_ADMIN_TOKEN": TOKEN, "GATEWAY_KEY_CACHE_TTL_S": "300", "GATEWAY_METRICS_PORT": "0"}
    systems = [
        LocalServices(kafka_topics, migrated_database, log_dir / name, service_identities, extra_env={"gateway": env})
        for name in ("a", "b")
    ]
    async with contextlib.AsyncExitStack() as stack:
        for system in systems:
            system.start(("gateway",))
            stack.callback(system.stop)
        for system in systems:
            await system.wait_serving(timeout_s=120)
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=system.gateway_url, timeout=10))
            for system in systems
        ]
        for client in clients:
            await _eventually(lambda c=client: _status(c.get("/readyz")), 200, timeout_s=30)
        yield clients


async def _status(request: Awaitable[httpx.Response]) -> int:
    return (await request).status_code


async def _eventually(check: Callable[[], Awaitable[int]], expected: int, timeout_s: float) -> float:
    """Seconds until `check` answers `expected` (polled every 20 ms); fails after `timeout_s`."""
    started = time.monotonic()
    while (status := await check()) != expected:
        assert time.monotonic() - started < timeout_s, f"still {status} after {timeout_s} s, expected {expected}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _tenant_key(admin: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    tenant_id = f"rep-{uuid.uuid4().hex[:8]}"
    created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Replicas"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "r"}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return tenant_id, key.json()


def _documents(client: httpx.AsyncClient, key: str) -> Callable[[], Awaitable[int]]:
    return lambda: _status(client.get("/v1/documents", headers={"X-API-Key": key}))


async def test_a_revocation_through_one_replica_is_refused_by_the_other_within_a_second(
    replicas: list[httpx.AsyncClient],
) -> None:
    a, b = replicas
    tenant_id, key = await _tenant_key(a)
    for replica in (a, b):  # both hold the grant in their caches now
        assert await _documents(replica, key["api_key"])() == 200
    revoked = await a.delete(f"/v1/admin/tenants/{tenant_id}/api-keys/{key['key_id']}", headers=ADMIN)
    assert revoked.status_code == 204
    assert await _eventually(_documents(b, key["api_key"]), 401, timeout_s=1.0) < 1.0
    assert await _documents(a, key["api_key"])() == 401


async def test_a_rotated_key_works_on_both_replicas_during_its_grace_and_on_neither_after(
    replicas: list[httpx.AsyncClient],
) -> None:
    a, b = replicas
    tenant_id, old = await _tenant_key(a)
    for replica in (a, b):
        assert await _documents(replica, old["api_key"])() == 200
    rotated = await b.post(
        f"/v1/admin/tenants/{tenant_id}/api-keys/{old['key_id']}/rotate", json={"grace_seconds": 3}, headers=ADMIN
    )
    assert rotated.status_code == 201, rotated.text
    rotated_at, new = time.monotonic(), rotated.json()["api_key"]
    while time.monotonic() - rotated_at < 2.5:  # the grace period, on both replicas, with both keys
        for replica in (a, b):
            assert await _documents(replica, old["api_key"])() == 200
            assert await _documents(replica, new)() == 200
        await asyncio.sleep(0.25)
    for replica in (a, b):  # refused from the end of the grace period (3 s) on, within a second
        await _eventually(_documents(replica, old["api_key"]), 401, timeout_s=4.0 - (time.monotonic() - rotated_at))
        assert await _documents(replica, new)() == 200

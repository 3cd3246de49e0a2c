"""Quotas and limits through the gateway's HTTP API, over real Postgres, Kafka and a Redis of this module's own
(so it can be stopped): documents and bytes counted from the registry, uploads of two replicas at once never
overshooting, the usage view, unknown keys throttled per address before any lookup, fail closed and recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fakes import metric
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.redis import LocalRedis
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import TenantQuotas
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.quotas import quota_enforcer
from ragstream_gateway.ratelimit import rate_limiter

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ADMIN_TOKEN = secrets.token_urlsafe(32)
REDIS_PASSWORD = secrets.token_urlsafe(16)
Replica = tuple[GatewaySettings, GatewayDeps]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[LocalRedis]:
    redis = LocalRedis(password=REDIS_PASSWORD).start()
    yield redis
    redis.stop()


def _settings(urls: dict[str, str], kafka: KafkaSettings, redis: LocalRedis, **changes: Any) -> GatewaySettings:
    return GatewaySettings(
        DATABASE_URL=urls["gateway"],
        admin_database_url=urls["gateway-admin"],
        kafka=kafka,
        dev_tenant=f"quota-dev-{RUN}",
        dev_api_key=f"quota-dev-key-{RUN}",
        admin_token=ADMIN_TOKEN,
        inline_text_max_bytes=1024,
        db_pool_size=4,
        rate_limit_storage=redis.url,
        unknown_key_rate_limit="3/minute",
        **changes,
    )


@pytest.fixture(scope="module")
async def replicas(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings], own_redis: LocalRedis
) -> AsyncIterator[list[Replica]]:
    """Two gateways as two replicas would be: each its own pools, producer and Redis client."""
    settings = _settings(service_database_urls, kafka_principals["gateway"], own_redis)
    async with AsyncExitStack() as stack:
        yield [(settings, await open_deps(settings, stack)) for _ in range(2)]


def _client(replica: Replica, key: str | None = None, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*replica), client=(ip, 50000))
    headers = {"X-API-Key": key} if key else {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers, timeout=30)


async def _tenant(replica: Replica, quotas: TenantQuotas) -> tuple[str, str]:
    tenant_id = f"q-{uuid.uuid4().hex[:8]}"
    async with _client(replica) as admin:
        assert (await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Q"})).status_code == 201
        key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "q"})
        assert key.status_code == 201, key.text
    _, deps = replica
    assert deps.quotas is not None
    await deps.quotas.set_quotas(tenant_id, quotas)
    return tenant_id, key.json()["api_key"]


def _quota_problem(response: httpx.Response, quota: str, limit: int, used: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "urn:ragstream:problem:quota-exceeded"
    assert (body["quota"], body["limit"], body["used"]) == (quota, limit, used)


async def test_documents_past_the_quota_are_refused_and_deleting_frees_room(replicas: list[Replica]) -> None:
    tenant_id, key = await _tenant(replicas[0], TenantQuotas(max_documents=2))
    async with _client(replicas[0], key) as client:
        for doc in ("d1", "d2"):
            assert (await client.post("/v1/documents", json={"id": doc, "text": doc})).status_code == 202
        _quota_problem(await client.post("/v1/documents", json={"id": "d3", "text": "d3"}), "documents", 2, 2)
        again = await client.post("/v1/documents", json={"id": "d1", "text": "d1"})
        assert (again.status_code, again.json()["unchanged"]) == (200, True)  # a retry is never refused
        assert (await client.post("/v1/documents", json={"id": "d1", "text": "d1 v2"})).status_code == 202
        assert (await client.delete("/v1/documents/d2")).status_code == 202
        assert (await client.post("/v1/documents", json={"id": "d3", "text": "d3"})).status_code == 202
    async with _client(replicas[1]) as admin:
        usage = (await admin.get(f"/v1/admin/tenants/{tenant_id}/usage")).json()
    assert usage["documents"] == {"limit": 2, "used": 2, "source": "tenant"}
    assert usage["stored_bytes"] == {"limit": 10 * 1024**3, "used": len("d1 v2") + len("d3"), "source": "default"}
    assert usage["questions_per_day"]["used"] == 0


async def test_stored_bytes_count_the_current_version_of_each_document(replicas: list[Replica]) -> None:
    _, key = await _tenant(replicas[0], TenantQuotas(max_stored_bytes=100))
    async with _client(replicas[0], key) as client:
        assert (await client.post("/v1/documents", json={"id": "a", "text": "x" * 60})).status_code == 202
        _quota_problem(await client.post("/v1/documents", json={"id": "b", "text": "y" * 41}), "stored_bytes", 100, 60)
        # A new version replaces the old one's bytes: 60 -> 100 fits exactly.
        assert (await client.post("/v1/documents", json={"id": "a", "text": "z" * 100})).status_code == 202
        _quota_problem(await client.post("/v1/documents", json={"id": "b", "text": "y"}), "stored_bytes", 100, 100)


async def test_concurrent_uploads_through_two_replicas_never_overshoot(replicas: list[Replica]) -> None:
    tenant_id, key = await _tenant(replicas[0], TenantQuotas(max_documents=3))
    async with _client(replicas[0], key) as first, _client(replicas[1], key) as second:
        uploads = [
            (first, second)[i % 2].post("/v1/documents", json={"id": f"c{i}", "text": f"text {i}"}) for i in range(10)
        ]
        statuses = sorted(response.status_code for response in await asyncio.gather(*uploads))
    assert statuses == [202] * 3 + [429] * 7
    _, deps = replicas[1]
    assert deps.quotas is not None
    assert (await deps.quotas.usage(tenant_id)).quotas[0].used == 3


async def test_unknown_keys_from_one_address_are_refused_before_any_lookup(replicas: list[Replica]) -> None:
    _, key = await _tenant(replicas[0], TenantQuotas())
    address = f"203.0.113.{secrets.randbelow(200) + 1}"
    async with _client(replicas[0], key, ip=address) as valid, _client(replicas[1], "guess", ip=address) as guesser:
        assert (await valid.get("/v1/documents")).status_code == 200
        assert [(await guesser.get("/v1/documents")).status_code for _ in range(3)] == [401] * 3
        looked_up = metric("ragstream_gateway_auth_failures_total", reason="unknown")
        refused = await guesser.get("/v1/documents")
        assert refused.status_code == 429 and refused.json()["scope"] == "address"
        assert int(refused.headers["Retry-After"]) >= 1
        assert metric("ragstream_gateway_auth_failures_total", reason="unknown") == looked_up  # no lookup
        assert (await valid.get("/v1/documents")).status_code == 200  # a key seen valid is not caught by it
    async with _client(replicas[1], "guess", ip="198.51.100.77") as elsewhere:
        assert (await elsewhere.get("/v1/documents")).status_code == 401


async def test_while_redis_is_down_the_api_fails_closed_and_recovers(
    replicas: list[Replica], own_redis: LocalRedis
) -> None:
    _, key = await _tenant(replicas[0], TenantQuotas(max_documents=10))
    settings, deps = replicas[0]
    fail_open_settings = settings.model_copy(update={"rate_limit_fail_open": True})
    limiter = rate_limiter(fail_open_settings)
    assert deps.quotas is not None
    fail_open = (
        fail_open_settings,
        dataclasses.replace(
            deps, limiter=limiter, quotas=quota_enforcer(fail_open_settings, deps.quotas.store, limiter)
        ),
    )
    own_redis.stop()
    try:
        async with _client(replicas[0], key) as closed, _client(fail_open, key) as lenient:
            refused = await closed.get("/v1/documents")
            assert refused.status_code == 503 and refused.headers["content-type"] == PROBLEM_JSON
            assert refused.json()["type"] == "urn:ragstream:problem:rate-limit-unavailable"
            assert refused.headers["Retry-After"] == "2"
            assert (await closed.post("/v1/documents", json={"id": "x", "text": "x"})).status_code == 503
            assert (await lenient.get("/v1/documents")).status_code == 200
            assert (await lenient.post("/v1/documents", json={"id": "y", "text": "y"})).status_code == 202
    finally:
        restarted = LocalRedis(password=REDIS_PASSWORD, port=own_redis.port).start()
    try:
        async with _client(replicas[0], key) as closed:
            deadline = time.monotonic() + 10
            while (status := (await closed.get("/v1/documents")).status_code) != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert status == 200
            assert (await closed.post("/v1/documents", json={"id": "x", "text": "x"})).status_code == 202
    finally:
        restarted.stop()

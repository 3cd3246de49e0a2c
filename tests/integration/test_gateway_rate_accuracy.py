"""Rate-limit accuracy across replicas: two real gateway processes share one Redis, and a 60/minute tenant limit
hammered through both at once admits 60 (the issue asks for ±10 %: 54..66) within the window; every refusal is a
429 problem with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.system import LocalServices

pytestmark = pytest.mark.integration
LIMIT = 60
RUN = uuid.uuid4().hex[:8]
TENANT, KEY = f"rate-{RUN}", f"rate-key-{RUN}"


async def _ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {timeout_s} s")


@pytest.fixture(scope="module")
async def gateway_urls(
    kafka_topics: str,
    migrated_database: str,
    service_identities: LocalCredentials,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[list[str]]:
    """Two gateway processes (replicas: the same consumer groups, each its own ports) over one Redis."""
    env = {
        "GATEWAY_DEV_TENANT": TENANT,
        "GATEWAY_DEV_API_KEY": KEY,
        "GATEWAY_DEFAULT_RATE_LIMIT": f"{LIMIT}/minute",
        "GATEWAY_KEY_RATE_LIMIT": "10000/minute",  # the tenant's limit is the one measured
        "LOG_LEVEL": "WARNING",
    }
    log_dir = Path(tmp_path_factory.mktemp("rate-accuracy"))
    replicas = [
        LocalServices(
            kafka_topics,
            migrated_database,
            log_dir / f"gateway-{index}",
            service_identities,
            extra_env={"gateway": env},
            redis_url=redis_url,
        )
        for index in range(2)
    ]
    try:
        for replica in replicas:
            replica.start(("gateway",))
        for replica in replicas:
            await replica.wait_serving(timeout_s=120)
            await _ready(replica.gateway_url)
        yield [replica.gateway_url for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()


async def test_a_limit_shared_by_two_gateways_admits_its_rate(gateway_urls: list[str]) -> None:
    clients = [httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=30) for url in gateway_urls]
    gate = asyncio.Semaphore(16)

    async def one(index: int) -> tuple[int, httpx.Response]:
        async with gate:
            return index % 2, await clients[index % 2].get("/v1/documents", params={"limit": 1})

    try:
        started = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(3 * LIMIT)))
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            await client.aclose()
    admitted = [gateway for gateway, response in results if response.status_code == 200]
    refused = [response for _, response in results if response.status_code == 429]
    print(f"two gateways, {LIMIT}/minute: {len(admitted)} of {len(results)} admitted in {elapsed:.1f} s")
    assert elapsed < 50  # the whole burst inside one window
    assert len(admitted) + len(refused) == len(results)
    assert int(LIMIT * 0.9) <= len(admitted) <= int(LIMIT * 1.1)
    assert set(admitted) == {0, 1}  # both replicas admitted some: the count is shared, not split
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert {r.json()["type"] for r in refused} == {"urn:ragstream:problem:rate-limited"}

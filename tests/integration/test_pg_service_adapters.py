"""Each service's Postgres adapters under its own login: its grants suffice, and nothing beyond them works."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.blobs import PostgresBlobStore
from ragstream_common.db import create_pool
from ragstream_embed.adapters.cache_pg import PostgresEmbeddingCache

pytestmark = pytest.mark.integration
PoolOf = Callable[[str], Awaitable[AsyncConnectionPool]]


@pytest.fixture
async def pool_of(service_database_urls: dict[str, str]) -> AsyncIterator[PoolOf]:
    pools: list[AsyncConnectionPool] = []

    async def open_(identity: str) -> AsyncConnectionPool:
        pool = create_pool(service_database_urls[identity], max_size=1, name=f"test-{identity}")
        await pool.open(wait=True)
        pools.append(pool)
        return pool

    yield open_
    for pool in pools:
        await pool.close()


async def test_embedding_cache_under_the_embed_login(pool_of: PoolOf) -> None:
    cache = PostgresEmbeddingCache(await pool_of("embed"))
    tenant, vector = f"ec-{uuid.uuid4().hex[:8]}", np.array([0.5, 0.25, 1.0], dtype=np.float32)
    await cache.store(tenant, "model", {"h1": vector})
    await cache.store(tenant, "model", {"h1": vector})  # a repeat is a no-op
    found = await cache.lookup(tenant, "model", ["h1", "h2"])
    assert list(found) == ["h1"] and np.allclose(found["h1"], vector)
    assert await cache.lookup(f"{tenant}-other", "model", ["h1"]) == {}


async def test_blobs_are_written_by_the_gateway_and_read_by_ingest(pool_of: PoolOf) -> None:
    tenant, key = f"bl-{uuid.uuid4().hex[:8]}", f"key-{uuid.uuid4().hex[:8]}"
    gateway, ingest = PostgresBlobStore(await pool_of("gateway")), PostgresBlobStore(await pool_of("ingest"))
    assert await gateway.put(tenant, key, b"upload", "text/plain") == f"blob://{key}"
    assert await gateway.put(tenant, key, b"upload", "text/plain") == f"blob://{key}"  # idempotent
    blob = await ingest.get(tenant, key)
    assert blob is not None and blob.data == b"upload" and blob.content_type == "text/plain"
    assert await ingest.get(f"{tenant}-other", key) is None
    # Each side has only its half: the gateway cannot read uploads back, ingest cannot write or delete them.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await gateway.get(tenant, key)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await ingest.put(tenant, f"{key}-2", b"forged", "text/plain")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await ingest.delete(tenant, key)

"""The flush's SQL on real Postgres, as the metering login under row-level security: writing the same window
totals twice changes nothing, and a smaller total after a larger (a window recounted from less state) never
lowers it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import create_pool
from ragstream_metering.adapters.usage_pg import PostgresUsageWriter

pytestmark = pytest.mark.integration
MINUTE = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def metering_pool(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(service_database_urls["metering"], max_size=2, name="test-metering")
    await pool.open(wait=True)
    yield pool
    await pool.close()


def stored(admin_url: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT metric, value FROM usage_minutes WHERE tenant_id = %s AND window_start = %s", (tenant, MINUTE)
        ).fetchall()
    return dict(rows)


async def test_the_same_totals_twice_are_stored_once(
    metering_pool: AsyncConnectionPool, migrated_database: str
) -> None:
    tenant = f"mt-{uuid.uuid4().hex[:10]}"
    writer = PostgresUsageWriter(metering_pool)
    totals = {"questions": 10, "documents_ingested": 3, "bytes_ingested": 4096}
    await writer.write_window(tenant, MINUTE, totals)
    await writer.write_window(tenant, MINUTE, totals)
    assert stored(migrated_database, tenant) == totals


async def test_a_smaller_total_never_lowers_a_larger_one(
    metering_pool: AsyncConnectionPool, migrated_database: str
) -> None:
    tenant = f"mt-{uuid.uuid4().hex[:10]}"
    writer = PostgresUsageWriter(metering_pool)
    await writer.write_window(tenant, MINUTE, {"questions": 10, "tokens_in": 500})
    await writer.write_window(tenant, MINUTE, {"questions": 4, "tokens_in": 900, "tokens_out": 20})
    assert stored(migrated_database, tenant) == {"questions": 10, "tokens_in": 900, "tokens_out": 20}


async def test_row_level_security_keeps_the_rows_to_their_tenant(metering_pool: AsyncConnectionPool) -> None:
    tenant, other = (f"mt-{uuid.uuid4().hex[:10]}" for _ in range(2))
    await PostgresUsageWriter(metering_pool).write_window(tenant, MINUTE, {"questions": 1})
    async with metering_pool.connection() as connection, connection.transaction():
        await connection.execute("SELECT set_config('app.tenant_id', %s, true)", (other,))
        cursor = await connection.execute("SELECT count(*) FROM usage_minutes WHERE tenant_id = %s", (tenant,))
        assert await cursor.fetchone() == (0,)

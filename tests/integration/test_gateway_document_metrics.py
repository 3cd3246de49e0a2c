"""`ragstream_documents` over real Postgres: the gateway's login counts every tenant's documents by status only
through `ragstream_document_status_counts()` (migration 0013), while row-level security still hides the rows
themselves from it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import create_pool, tenant_transaction
from ragstream_gateway.adapters.document_counts_pg import PostgresDocumentCounts
from ragstream_gateway.document_metrics import OTHER_TENANTS, group_counts

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ACME, BETA = f"docs-{RUN}-acme", f"docs-{RUN}-beta"
STATUSES = {ACME: ["indexed", "indexed", "failed"], BETA: ["received", "indexed"]}


@pytest.fixture(scope="module")
def registered(migrated_database: str) -> None:
    """Documents as the gateway's projections write them (the owner login, not the login under test)."""
    with psycopg.connect(migrated_database, autocommit=True) as connection:
        for tenant_id, statuses in STATUSES.items():
            for number, status in enumerate(statuses):
                connection.execute(
                    "INSERT INTO documents (tenant_id, document_id, version, status) VALUES (%s, %s, 1, %s)",
                    (tenant_id, f"doc-{number}", status),
                )


@pytest.fixture
async def gateway_pool(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(service_database_urls["gateway"], max_size=1, name="gateway-metrics-test")
    await pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        await pool.close()


async def test_the_gateway_login_counts_every_tenants_documents_by_status(
    registered: None, gateway_pool: AsyncConnectionPool
) -> None:
    counts = await PostgresDocumentCounts(gateway_pool).status_counts()
    ours = {(row.tenant_id, row.status): row.count for row in counts if row.tenant_id in STATUSES}
    assert ours == {(ACME, "indexed"): 2, (ACME, "failed"): 1, (BETA, "received"): 1, (BETA, "indexed"): 1}

    grid = group_counts(counts, frozenset({ACME}))
    assert grid[ACME, "indexed"] == 2 and grid[ACME, "failed"] == 1 and grid[ACME, "received"] == 0
    assert grid[OTHER_TENANTS, "received"] >= 1  # BETA's, summed with whatever other tests registered


async def test_row_level_security_still_hides_the_documents_from_the_gateway_login(
    registered: None, gateway_pool: AsyncConnectionPool
) -> None:
    ours = "SELECT count(*) FROM documents WHERE tenant_id = ANY(%s)"
    async with gateway_pool.connection() as connection:
        cursor = await connection.execute(ours, ([ACME, BETA],))
        assert await cursor.fetchone() == (0,)  # no tenant in scope: no rows
    async with tenant_transaction(gateway_pool, ACME) as connection:
        cursor = await connection.execute(ours, ([ACME, BETA],))
        assert await cursor.fetchone() == (3,)  # its own tenant's only


def test_the_count_function_is_a_narrow_definer_function(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as admin:
        definer = admin.execute(
            "SELECT prosecdef, proconfig, proowner::regrole::text, provolatile FROM pg_proc"
            " WHERE oid = 'ragstream_document_status_counts()'::regprocedure"
        ).fetchone()
        callers = admin.execute(
            "SELECT grantee FROM information_schema.routine_privileges"
            " WHERE routine_name = 'ragstream_document_status_counts' AND grantee <> 'ragstream_owner'"
        ).fetchall()
    assert definer == (True, ["search_path=pg_catalog, pg_temp"], "ragstream_owner", "s")
    assert callers == [("ragstream_gateway",)]

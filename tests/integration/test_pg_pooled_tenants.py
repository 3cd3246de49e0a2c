"""Row-level security on pooled connections: tenants taking turns on one connection, errors mid-transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import create_pool, tenant_transaction

pytestmark = pytest.mark.integration
_INSERT = "INSERT INTO documents (tenant_id, document_id, version, status) VALUES (%s, %s, 1, 'received')"


@pytest.fixture
async def one_connection(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    """The gateway's own login, one pooled connection that every transaction reuses."""
    pool = create_pool(service_database_urls["gateway"], min_size=1, max_size=1, name="test-one-connection")
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def visible(pool: AsyncConnectionPool, tenant: str) -> tuple[int, set[tuple[str, str]]]:
    """(backend pid, every documents row the tenant's transaction sees, with no tenant predicate)."""
    async with tenant_transaction(pool, tenant) as connection:
        pid = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
        rows = await (await connection.execute("SELECT tenant_id, document_id FROM documents")).fetchall()
    assert pid is not None
    return pid[0], set(rows)


async def test_tenants_taking_turns_on_one_connection_see_only_their_rows(one_connection: AsyncConnectionPool) -> None:
    a, b = f"il-a-{uuid.uuid4().hex[:6]}", f"il-b-{uuid.uuid4().hex[:6]}"
    pids = set()
    for round_ in range(3):
        for tenant in (a, b):
            async with tenant_transaction(one_connection, tenant) as connection:
                await connection.execute(_INSERT, (tenant, f"doc-{round_}"))
            pid, rows = await visible(one_connection, tenant)
            pids.add(pid)
            assert rows == {(tenant, f"doc-{n}") for n in range(round_ + 1)}
    assert len(pids) == 1  # the same backend served both tenants throughout
    async with one_connection.connection() as connection:
        # Outside any tenant transaction the scope is gone: nothing is visible.
        scope = await (await connection.execute("SELECT current_setting('app.tenant_id', true)")).fetchone()
        count = await (await connection.execute("SELECT count(*) FROM documents")).fetchone()
    assert scope in ((None,), ("",)) and count == (0,)


@pytest.mark.parametrize("failure", ["database", "application"])
async def test_an_error_mid_transaction_leaves_no_scope_behind(
    one_connection: AsyncConnectionPool, failure: str
) -> None:
    a, b = f"er-a-{uuid.uuid4().hex[:6]}", f"er-b-{uuid.uuid4().hex[:6]}"
    async with tenant_transaction(one_connection, b) as connection:
        await connection.execute(_INSERT, (b, "kept"))
    with pytest.raises((psycopg.errors.DivisionByZero, RuntimeError)):
        async with tenant_transaction(one_connection, a) as connection:
            await connection.execute(_INSERT, (a, "rolled-back"))
            if failure == "database":
                await connection.execute("SELECT 1 / 0")
            raise RuntimeError("the handler failed half-way")
    # The next transaction, of the other tenant, on the same connection: only its own rows.
    _, rows = await visible(one_connection, b)
    assert rows == {(b, "kept")}
    _, rows = await visible(one_connection, a)
    assert rows == set()
    # A statement that tries the failed tenant's scope without setting it is refused, not admitted.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with one_connection.connection() as connection:
            await connection.execute(_INSERT, (a, "no-scope"))

"""Schema migrations and row-level security against real Postgres."""

from __future__ import annotations

import psycopg
import pytest
from ragstream_common.db import create_pool, tenant_transaction
from ragstream_common.migrate import apply_migrations, discover

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent(migrated_database: str) -> None:
    assert apply_migrations(migrated_database) == []
    with psycopg.connect(migrated_database) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        extension = connection.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert versions == [m.version for m in discover()]
    assert extension is not None


def test_every_table_carries_tenant_id(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as connection:
        tables = [
            r[0]
            for r in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'"
            )
        ]
        missing = [
            t
            for t in tables
            if not connection.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'tenant_id'", (t,)
            ).fetchone()
        ]
    assert tables and not missing


async def test_row_level_security_isolates_tenants(service_database_urls: dict[str, str]) -> None:
    # A service's own login (a superuser would bypass row-level security).
    pool = create_pool(service_database_urls["gateway"], max_size=2)
    await pool.open(wait=True)
    insert = "INSERT INTO documents (tenant_id, document_id, version, status) VALUES (%s, 'rls-check', 1, 'received')"
    try:
        async with tenant_transaction(pool, "tenant-a") as connection:
            await connection.execute(insert + " ON CONFLICT DO NOTHING", ("tenant-a",))
        async with tenant_transaction(pool, "tenant-b") as connection:
            cursor = await connection.execute("SELECT count(*) FROM documents WHERE document_id = 'rls-check'")
            assert (await cursor.fetchone())[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await connection.execute(insert, ("tenant-a",))
        async with tenant_transaction(pool, "tenant-a") as connection:
            cursor = await connection.execute("SELECT count(*) FROM documents WHERE document_id = 'rls-check'")
            assert (await cursor.fetchone())[0] == 1
    finally:
        await pool.close()

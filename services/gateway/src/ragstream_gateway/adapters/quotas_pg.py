"""Tenant quota overrides (`tenant_quotas`, migration 0007) and stored usage counted from the registry.

Reads run on the gateway's own pool (`ragstream_gateway` may read both tables); overrides are written on the
admin pool (`ragstream_gateway_admin`), like every other tenant setting. Both tables are tenant-scoped by
row-level security, so each statement runs in the tenant's transaction.
"""

from __future__ import annotations

from psycopg.errors import ForeignKeyViolation
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.ports import StoredUsage, TenantQuotas

_COLUMNS = "max_documents, max_stored_bytes, max_questions_per_day"
_UPSERT = f"""
INSERT INTO tenant_quotas (tenant_id, {_COLUMNS}) VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant_id) DO UPDATE SET max_documents = EXCLUDED.max_documents,
    max_stored_bytes = EXCLUDED.max_stored_bytes, max_questions_per_day = EXCLUDED.max_questions_per_day,
    updated_at = now()
RETURNING {_COLUMNS}
"""
# Live rows and their current version's size; an index-only scan of documents_live_usage (migration 0007).
_USAGE = "SELECT count(*), coalesce(sum(size_bytes), 0) FROM documents WHERE tenant_id = %s AND status <> 'deleted'"


class PostgresQuotaStore:
    def __init__(self, pool: AsyncConnectionPool, admin_pool: AsyncConnectionPool | None = None) -> None:
        self._pool = pool
        self._admin = admin_pool or pool

    async def overrides(self, tenant_id: str) -> TenantQuotas:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                f"SELECT {_COLUMNS} FROM tenant_quotas WHERE tenant_id = %s", (tenant_id,)
            )
            row = await cursor.fetchone()
        return TenantQuotas(*row) if row else TenantQuotas()

    async def set_overrides(self, tenant_id: str, quotas: TenantQuotas) -> TenantQuotas:
        values = (quotas.max_documents, quotas.max_stored_bytes, quotas.max_questions_per_day)
        try:
            async with tenant_transaction(self._admin, tenant_id) as connection:
                cursor = await connection.execute(_UPSERT, (tenant_id, *values))
                row = await cursor.fetchone()
        except ForeignKeyViolation:
            raise LookupError(f"no tenant {tenant_id!r}") from None
        assert row is not None
        return TenantQuotas(*row)

    async def usage(self, tenant_id: str) -> StoredUsage:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_USAGE, (tenant_id,))
            row = await cursor.fetchone()
        assert row is not None
        return StoredUsage(documents=int(row[0]), stored_bytes=int(row[1]))

"""The retention job's Postgres side (migration 0014), on the admin login (`ragstream_gateway_admin`).

Reads go through column grants in the tenant's transaction (row-level security confines them to it) or, for the
list of tenants, through `ragstream_purge_tenants`. Index rows, cached embeddings and a deleted tenant's rows go
only through the SECURITY DEFINER functions, which re-check under row locks that what they delete is deleted and
older than the cutoff; a purged document stays as a content-free tombstone (its registry row and index state keep
the version bookkeeping). Each purge appends its audit entry in its own transaction (no deletion without its record).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.adapters.audit_pg import append_audit
from ragstream_gateway.ports import AuditEntry
from ragstream_gateway.purge import TenantMarks

# Held for a whole run: a second run (an overlapping CronJob, an operator's manual run) skips instead of racing.
PURGE_LOCK_ID = 0x5241_4750  # "RAGP"; migrations hold "RAGS"
ACTOR = "system:purge"


class PostgresPurgeStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """Whether this run holds the job's advisory lock; held (on its own connection) until the block ends."""
        async with self._pool.connection() as connection:
            await connection.set_autocommit(True)
            row = await (await connection.execute("SELECT pg_try_advisory_lock(%s)", (PURGE_LOCK_ID,))).fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    await connection.execute("SELECT pg_advisory_unlock(%s)", (PURGE_LOCK_ID,))
                await connection.set_autocommit(False)

    async def cutoffs(self, document_grace_s: float, tenant_grace_s: float) -> tuple[datetime, datetime]:
        """now() less each grace period, on the database's clock (the one deleted_at and created_at use)."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT now() - make_interval(secs => %s), now() - make_interval(secs => %s)",
                (document_grace_s, tenant_grace_s),
            )
            row = await cursor.fetchone()
        assert row is not None
        return row[0], row[1]

    async def tenants(self) -> list[TenantMarks]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT tenant_id, deleted_at, purged_at FROM ragstream_purge_tenants()")
            return [TenantMarks(*row) for row in await cursor.fetchall()]

    async def deleted_documents(self, tenant_id: str, cutoff: datetime) -> list[str]:
        """Deleted before the cutoff and not yet purged (a purged document's tombstone is left alone)."""
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT document_id FROM documents WHERE tenant_id = %s AND status = 'deleted' AND deleted_at < %s"
                " AND purged_at IS NULL ORDER BY document_id",
                (tenant_id, cutoff),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def live_source_uris(self, tenant_id: str) -> list[str]:
        """The content URI of every document that is not deleted (its current version's)."""
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT source_uri FROM documents WHERE tenant_id = %s AND status <> 'deleted' AND source_uri <> ''",
                (tenant_id,),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def purge_document(self, tenant_id: str, document_id: str, cutoff: datetime) -> dict[str, int] | None:
        """The rows deleted per table (`documents`: the row turned tombstone), or None when the document is no
        longer deleted-and-old or was purged already (nothing done)."""
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT ragstream_purge_document(%s, %s, %s)", (tenant_id, document_id, cutoff)
            )
            counts = _counts(await cursor.fetchone())
            if counts is not None:
                await append_audit(connection, AuditEntry(tenant_id, ACTOR, "document.purge", document_id, "", counts))
        return counts

    async def purge_embedding_cache(self, tenant_id: str, cutoff: datetime, max_rows: int) -> int:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT ragstream_purge_embedding_cache(%s, %s, %s)", (tenant_id, cutoff, max_rows)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def purge_tenant(self, tenant_id: str, cutoff: datetime) -> dict[str, int] | None:
        """Rows deleted per table (the tenants row scrubbed, the audit chain kept), or None when not due."""
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute("SELECT ragstream_purge_tenant(%s, %s)", (tenant_id, cutoff))
            counts = _counts(await cursor.fetchone())
            if counts is not None:
                entry = AuditEntry(tenant_id, ACTOR, "tenant.purge", tenant_id, "", {"rows": counts})
                await append_audit(connection, entry)
        return counts


def _counts(row: tuple[Any, ...] | None) -> dict[str, int] | None:
    if row is None or row[0] is None:
        return None
    return {str(table): int(count) for table, count in dict(row[0]).items()}

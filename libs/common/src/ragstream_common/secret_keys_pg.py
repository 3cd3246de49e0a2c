"""Tenants' wrapped data keys in Postgres (`tenant_data_keys`, migration 0009), under row-level security.

Services read and create keys in their tenant's transaction (the gateway may insert, the connectors worker only
reads). The rotation command walks every tenant as the schema owner, which forced row-level security binds too,
so it scopes each tenant's rewrite the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ragstream_common.db import tenant_transaction
from ragstream_common.migrate import OWNER_ROLE


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as stored: encrypted by the master key named in `wrapping` ("local:<id>", "kms:<key id>")."""

    ciphertext: bytes
    wrapping: str


# (tenant, its key as stored) -> the key re-wrapped, or None to leave the row as it is.
Rewrap = Callable[[str, WrappedKey], Awaitable[WrappedKey | None]]


class PostgresDataKeys:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def read(self, tenant_id: str) -> WrappedKey | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            return await _select(connection, tenant_id)

    async def insert_or_read(self, tenant_id: str, key: WrappedKey) -> WrappedKey:
        """Store `key` unless the tenant has one already; return the one that is stored.

        Two replicas creating a tenant's first key race on the primary key: the second insert waits for the
        first to commit, does nothing, and the re-read (a new snapshot under read committed) returns the winner.
        """
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(
                "INSERT INTO tenant_data_keys (tenant_id, wrapped_key, wrapping) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id) DO NOTHING",
                (tenant_id, key.ciphertext, key.wrapping),
            )
            stored = await _select(connection, tenant_id)
        if stored is None:  # only if a policy hid the row just written; never with the migration's grants
            raise RuntimeError(f"tenant {tenant_id!r}: data key not readable after insert")
        return stored


async def rewrap_all(
    connection: psycopg.AsyncConnection[Any], rewrap: Rewrap, tenants: Sequence[str] | None = None
) -> int:
    """Apply `rewrap` to the data key of every tenant (or of `tenants`), one tenant per transaction; the number
    of keys rewritten.

    `connection` is an administrator's, acting as the schema owner (it lists tenants). A failure leaves the
    tenants done so far rewritten and the rest as they were, so the command can simply run again.
    """
    if tenants is None:
        cursor = await connection.execute("SELECT tenant_id FROM tenants ORDER BY tenant_id")
        tenants = [str(row[0]) for row in await cursor.fetchall()]
        await connection.commit()  # each tenant below in a transaction of its own
    rewritten = 0
    for tenant_id in tenants:
        async with connection.transaction():
            await connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
            stored = await _select(connection, tenant_id, lock=True)
            replaced = await rewrap(tenant_id, stored) if stored is not None else None
            if replaced is not None:
                await connection.execute(
                    "UPDATE tenant_data_keys SET wrapped_key = %s, wrapping = %s WHERE tenant_id = %s",
                    (replaced.ciphertext, replaced.wrapping, tenant_id),
                )
                rewritten += 1
    return rewritten


async def connect_as_owner(database_url: str) -> psycopg.AsyncConnection[Any]:
    """An administrator's connection acting as the schema owner, like the migrations (migrate.py)."""
    connection = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        await connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(OWNER_ROLE)))
    except BaseException:
        await connection.close()
        raise
    return connection


async def _select(connection: psycopg.AsyncConnection[Any], tenant_id: str, *, lock: bool = False) -> WrappedKey | None:
    query = "SELECT wrapped_key, wrapping FROM tenant_data_keys WHERE tenant_id = %s"
    cursor = await connection.execute(query + (" FOR UPDATE" if lock else ""), (tenant_id,))
    row = await cursor.fetchone()
    return WrappedKey(bytes(row[0]), str(row[1])) if row else None

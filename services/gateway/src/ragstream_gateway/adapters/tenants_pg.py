"""Tenants, API keys and the audit log in Postgres.

`tenants` and `api_keys` have no row-level security (a key is looked up before its tenant is known); the
audit log is tenant data and is only touched inside `tenant_transaction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.ports import ApiKeyRecord, AuditEntry, AuditRecord, KeyGrant, TenantRecord
from ragstream_gateway.security import ALL_SCOPES, IPNetwork, hash_api_key, key_preview, new_key_id

_TENANT_COLUMNS = "tenant_id, name, rate_limit, ip_allowlist, created_at"


class PostgresTenantDirectory:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT k.key_id, k.tenant_id, k.scopes, k.revoked_at, k.expires_at, t.rate_limit, t.ip_allowlist"
                " FROM api_keys k JOIN tenants t USING (tenant_id) WHERE k.key_sha256 = %s",
                (key_sha256,),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        key_id, tenant_id, scopes, revoked_at, expires_at, rate_limit, allowlist = row
        return KeyGrant(
            key_id=key_id,
            tenant_id=tenant_id,
            scopes=tuple(scopes),
            revoked=revoked_at is not None,
            expires_at=expires_at,
            rate_limit=rate_limit,
            ip_allowlist=tuple(allowlist or ()),
        )

    async def create_tenant(
        self, tenant_id: str, name: str, rate_limit: str | None, ip_allowlist: Sequence[IPNetwork]
    ) -> TenantRecord | None:
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO tenants (tenant_id, name, rate_limit, ip_allowlist) VALUES (%s, %s, %s, %s::cidr[])"
                f" ON CONFLICT (tenant_id) DO NOTHING RETURNING {_TENANT_COLUMNS}",
                (tenant_id, name, rate_limit, [str(network) for network in ip_allowlist]),
            )
            row = await cur.fetchone()
        return _tenant(row) if row else None

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE tenant_id = %s", (tenant_id,))
            row = await cur.fetchone()
        return _tenant(row) if row else None

    async def create_key(
        self, tenant_id: str, key: str, name: str, scopes: Sequence[str], expires_at: datetime | None
    ) -> ApiKeyRecord:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "INSERT INTO api_keys (key_id, tenant_id, key_sha256, key_prefix, name, scopes, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING key_id, created_at",
                (new_key_id(), tenant_id, hash_api_key(key), key_preview(key), name, list(scopes), expires_at),
            )
            row = await cursor.fetchone()
        assert row is not None
        return ApiKeyRecord(row[0], tenant_id, name, tuple(scopes), row[1], expires_at)

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s AND key_id = %s AND revoked_at IS NULL",
                (tenant_id, key_id),
            )
            return cursor.rowcount > 0

    async def ensure_tenant_key(self, tenant_id: str, key: str, *, key_id: str) -> None:
        """Provision a tenant and a known key idempotently (local development and tests)."""
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant_id, tenant_id)
            )
            await connection.execute(
                "INSERT INTO api_keys (key_id, tenant_id, key_sha256, key_prefix, name, scopes)"
                " VALUES (%s, %s, %s, %s, 'development key', %s) ON CONFLICT DO NOTHING",
                (key_id, tenant_id, hash_api_key(key), key_preview(key), list(ALL_SCOPES)),
            )


def _tenant(row: dict[str, Any]) -> TenantRecord:
    return TenantRecord(
        tenant_id=row["tenant_id"],
        name=row["name"],
        rate_limit=row["rate_limit"],
        ip_allowlist=tuple(row["ip_allowlist"] or ()),
        created_at=row["created_at"],
    )


class PostgresAuditLog:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def record(self, entry: AuditEntry) -> None:
        async with tenant_transaction(self._pool, entry.tenant_id) as connection:
            await connection.execute(
                "INSERT INTO audit_log (tenant_id, actor, action, resource, client_ip, details)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    entry.tenant_id,
                    entry.actor,
                    entry.action,
                    entry.resource,
                    entry.client_ip,
                    Jsonb(dict(entry.details)),
                ),
            )

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]:
        query = "SELECT audit_id, actor, action, resource, client_ip, details, at FROM audit_log WHERE tenant_id = %s"
        params: list[Any] = [tenant_id]
        if before is not None:
            query += " AND audit_id < %s"
            params.append(before)
        query += " ORDER BY audit_id DESC LIMIT %s"
        params.append(limit)
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(query, params)
            return [AuditRecord(*row) for row in await cursor.fetchall()]

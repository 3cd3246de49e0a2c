"""Tenants, API keys and the audit log in Postgres, under two logins (migration 0005).

The gateway's own pool (`ragstream_gateway`) finds keys through `ragstream_find_api_key`, a SECURITY DEFINER
function: the key's tenant is not known yet, and the role may not read `api_keys` itself. Everything the admin
API does (tenants, key creation and revocation, audit reads) goes through the admin pool
(`ragstream_gateway_admin`, GATEWAY_ADMIN_DATABASE_URL), the only login that may write tenants and keys.
Both tables are tenant-scoped by row-level security, so every admin statement runs in the tenant's transaction.
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
_FIND_KEY = (
    "SELECT key_id, tenant_id, scopes, revoked, expires_at, rate_limit, ip_allowlist FROM ragstream_find_api_key(%s)"
)


class PostgresTenantDirectory:
    """Key lookups on `pool`; tenant and key writes on `admin_pool` (the same pool when the gateway has one login)."""

    def __init__(self, pool: AsyncConnectionPool, admin_pool: AsyncConnectionPool | None = None) -> None:
        self._pool = pool
        self._admin = admin_pool or pool

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(_FIND_KEY, (key_sha256,))
            row = await cursor.fetchone()
        if row is None:
            return None
        key_id, tenant_id, scopes, revoked, expires_at, rate_limit, allowlist = row
        return KeyGrant(
            key_id=key_id,
            tenant_id=tenant_id,
            scopes=tuple(scopes),
            revoked=bool(revoked),
            expires_at=expires_at,
            rate_limit=rate_limit,
            ip_allowlist=tuple(allowlist or ()),
        )

    async def create_tenant(
        self, tenant_id: str, name: str, rate_limit: str | None, ip_allowlist: Sequence[IPNetwork]
    ) -> TenantRecord | None:
        async with (
            tenant_transaction(self._admin, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                "INSERT INTO tenants (tenant_id, name, rate_limit, ip_allowlist) VALUES (%s, %s, %s, %s::cidr[])"
                f" ON CONFLICT (tenant_id) DO NOTHING RETURNING {_TENANT_COLUMNS}",
                (tenant_id, name, rate_limit, [str(network) for network in ip_allowlist]),
            )
            row = await cur.fetchone()
        return _tenant(row) if row else None

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        async with (
            tenant_transaction(self._admin, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE tenant_id = %s", (tenant_id,))
            row = await cur.fetchone()
        return _tenant(row) if row else None

    async def create_key(
        self, tenant_id: str, key: str, name: str, scopes: Sequence[str], expires_at: datetime | None
    ) -> ApiKeyRecord:
        async with tenant_transaction(self._admin, tenant_id) as connection:
            cursor = await connection.execute(
                "INSERT INTO api_keys (key_id, tenant_id, key_sha256, key_prefix, name, scopes, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING key_id, created_at",
                (new_key_id(), tenant_id, hash_api_key(key), key_preview(key), name, list(scopes), expires_at),
            )
            row = await cursor.fetchone()
        assert row is not None
        return ApiKeyRecord(row[0], tenant_id, name, tuple(scopes), row[1], expires_at)

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        async with tenant_transaction(self._admin, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s AND key_id = %s AND revoked_at IS NULL",
                (tenant_id, key_id),
            )
            return cursor.rowcount > 0

    async def revoke_all_keys(self, tenant_id: str) -> int:
        """Revoke every active key of the tenant (offboarding); how many were active."""
        async with tenant_transaction(self._admin, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s AND revoked_at IS NULL", (tenant_id,)
            )
            return cursor.rowcount

    async def ensure_tenant_key(self, tenant_id: str, key: str, *, key_id: str) -> None:
        """Provision a tenant and a known key idempotently (local development and tests)."""
        async with tenant_transaction(self._admin, tenant_id) as connection:
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
    """Appends on `pool`; reads (admin API only) on `reader`. No login may change or delete an entry."""

    def __init__(self, pool: AsyncConnectionPool, reader: AsyncConnectionPool | None = None) -> None:
        self._pool = pool
        self._reader = reader or pool

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
        async with tenant_transaction(self._reader, tenant_id) as connection:
            cursor = await connection.execute(query, params)
            return [AuditRecord(*row) for row in await cursor.fetchall()]

"""Tenants and API keys in Postgres, under two logins (migration 0005); the audit log is in audit_pg.py.

The gateway's own pool (`ragstream_gateway`) finds keys through `ragstream_find_api_key`, a SECURITY DEFINER
function: the key's tenant is not known yet, and the role may not read `api_keys` itself. Everything the admin
API does (tenants, key creation and revocation, audit reads) goes through the admin pool
(`ragstream_gateway_admin`, GATEWAY_ADMIN_DATABASE_URL), the only login that may write tenants and keys.
Both tables are tenant-scoped by row-level security, so every admin statement runs in the tenant's transaction.
Writes given an `audit` entry append it in that same transaction (migration 0008): a key, a tenant or a
revocation never commits without its audit row, nor the row without the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.adapters import tenant_admin_pg
from ragstream_gateway.adapters.audit_pg import append_audit
from ragstream_gateway.adapters.tenant_admin_pg import TENANT_COLUMNS, insert_key, tenant_record
from ragstream_gateway.ports import (
    ApiKeyListing,
    ApiKeyRecord,
    AuditEntry,
    AuditFor,
    KeyGrant,
    RotatedKey,
    TenantListing,
    TenantRecord,
    TenantUpdate,
)
from ragstream_gateway.security import ALL_SCOPES, IPNetwork, hash_api_key, key_preview

_FIND_KEY = (
    "SELECT key_id, tenant_id, scopes, revoked, expires_at, rate_limit, ip_allowlist, tenant_disabled, replaced_by"
    " FROM ragstream_find_api_key(%s)"
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
        key_id, tenant_id, scopes, revoked, expires_at, rate_limit, allowlist, disabled, replaced_by = row
        return KeyGrant(
            key_id=key_id,
            tenant_id=tenant_id,
            scopes=tuple(scopes),
            revoked=bool(revoked),
            expires_at=expires_at,
            rate_limit=rate_limit,
            ip_allowlist=tuple(allowlist or ()),
            tenant_disabled=bool(disabled),
            replaced_by=replaced_by,
        )

    async def create_tenant(
        self,
        tenant_id: str,
        name: str,
        rate_limit: str | None,
        ip_allowlist: Sequence[IPNetwork],
        *,
        audit: AuditFor[TenantRecord] | None = None,
    ) -> TenantRecord | None:
        async with (
            tenant_transaction(self._admin, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                "INSERT INTO tenants (tenant_id, name, rate_limit, ip_allowlist) VALUES (%s, %s, %s, %s::cidr[])"
                f" ON CONFLICT (tenant_id) DO NOTHING RETURNING {TENANT_COLUMNS}",
                (tenant_id, name, rate_limit, [str(network) for network in ip_allowlist]),
            )
            row = await cur.fetchone()
            record = tenant_record(row) if row else None
            if record is not None and audit is not None:
                await append_audit(connection, audit(record))
        return record

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        async with (
            tenant_transaction(self._admin, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(f"SELECT {TENANT_COLUMNS} FROM tenants WHERE tenant_id = %s", (tenant_id,))
            row = await cur.fetchone()
        return tenant_record(row) if row else None

    async def list_tenants(self, *, limit: int, cursor: str | None, include_deleted: bool) -> TenantListing:
        return await tenant_admin_pg.list_tenants(
            self._admin, limit=limit, cursor=cursor, include_deleted=include_deleted
        )

    async def create_key(
        self,
        tenant_id: str,
        key: str,
        name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
        *,
        audit: AuditFor[ApiKeyRecord] | None = None,
    ) -> ApiKeyRecord:
        """`expires_at` capped by the tenant's maximum key lifetime (which also applies when it is None)."""
        async with tenant_transaction(self._admin, tenant_id) as connection:
            record = await insert_key(connection, tenant_id, key, name, list(scopes), expires_at)
            if audit is not None:  # a failed append rolls the key back: no secret without its audit row
                await append_audit(connection, audit(record))
            return record

    async def rotate_key(
        self,
        tenant_id: str,
        key_id: str,
        key: str,
        grace_s: int,
        expires_at: datetime | None,
        *,
        audit: AuditFor[RotatedKey] | None = None,
    ) -> RotatedKey | None:
        return await tenant_admin_pg.rotate_key(self._admin, tenant_id, key_id, key, grace_s, expires_at, audit)

    async def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> ApiKeyListing:
        return await tenant_admin_pg.list_keys(self._admin, tenant_id, limit=limit, cursor=cursor)

    async def update_tenant(
        self, tenant_id: str, update: TenantUpdate, *, audit: AuditFor[TenantRecord] | None = None
    ) -> TenantRecord | None:
        return await tenant_admin_pg.update_tenant(self._admin, tenant_id, update, audit)

    async def tenant_disabled(self, tenant_id: str) -> bool:
        return await tenant_admin_pg.tenant_disabled(self._pool, tenant_id)

    async def revoke_key(self, tenant_id: str, key_id: str, *, audit: AuditEntry | None = None) -> bool:
        async with tenant_transaction(self._admin, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s AND key_id = %s AND revoked_at IS NULL",
                (tenant_id, key_id),
            )
            revoked = cursor.rowcount > 0
            if revoked and audit is not None:
                await append_audit(connection, audit)
            return revoked

    async def revoke_all_keys(self, tenant_id: str, *, audit: AuditFor[int] | None = None) -> int:
        """Revoke every active key of the tenant (offboarding); how many were active."""
        async with tenant_transaction(self._admin, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s AND revoked_at IS NULL", (tenant_id,)
            )
            if audit is not None:
                await append_audit(connection, audit(cursor.rowcount))
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

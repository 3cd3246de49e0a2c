"""The admin path's newer statements on tenants and API keys (migration 0006): tenant updates, key listings,
rotation with a grace period, the maximum key lifetime, whether a tenant is disabled, and the tenant listing.

Everything but `tenant_disabled` runs on the admin pool (`ragstream_gateway_admin`), and all but `list_tenants`
inside the tenant's transaction, so row-level security confines it to that tenant; the listing crosses tenants, so
it reads them through a definer function (migration 0015) that returns nothing but the tenant rows' own columns.
Every change here fires the NOTIFY trigger in the same transaction (other gateways evict the key or tenant when it
commits), and appends its audit entry, when given one, in that transaction too.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.adapters.audit_pg import append_audit
from ragstream_gateway.ports import (
    ApiKeyListing,
    ApiKeyRecord,
    AuditFor,
    KeyAlreadyRotated,
    RotatedKey,
    TenantListing,
    TenantRecord,
    TenantUpdate,
)
from ragstream_gateway.security import hash_api_key, key_preview, new_key_id

TENANT_COLUMNS = "tenant_id, name, rate_limit, ip_allowlist, created_at, disabled_at, max_key_lifetime_s, deleted_at"
_KEY_COLUMNS = (
    "key_id, tenant_id, name, key_prefix, scopes, created_at, expires_at, last_used_at, revoked_at, replaced_by,"
    " rotated_at"
)
# A new key's expiry: the one asked for, capped by the tenant's maximum lifetime (which also applies when none
# was asked for). Used as `INSERT ... SELECT ... FROM tenants t`.
_CAPPED_EXPIRY = (
    "CASE WHEN t.max_key_lifetime_s IS NULL THEN %(expires_at)s::timestamptz"
    " ELSE least(coalesce(%(expires_at)s::timestamptz, 'infinity'::timestamptz),"
    " now() + make_interval(secs => t.max_key_lifetime_s)) END"
)
INSERT_KEY = (
    "INSERT INTO api_keys (key_id, tenant_id, key_sha256, key_prefix, name, scopes, expires_at)"
    " SELECT %(key_id)s, t.tenant_id, %(key_sha256)s, %(key_prefix)s, %(name)s, %(scopes)s, "
    f"{_CAPPED_EXPIRY} FROM tenants t WHERE t.tenant_id = %(tenant_id)s RETURNING {_KEY_COLUMNS}"
)
_LIST_TENANTS = f"SELECT {TENANT_COLUMNS} FROM ragstream_list_tenants(%s, %s, %s)"
_LOCK_FOR_ROTATION = (
    "SELECT k.name, k.scopes, k.replaced_by,"
    " CASE WHEN k.expires_at IS NULL THEN NULL ELSE now() + (k.expires_at - k.created_at) END AS same_lifetime"
    " FROM api_keys k WHERE k.tenant_id = %s AND k.key_id = %s AND k.revoked_at IS NULL"
    " AND (k.expires_at IS NULL OR k.expires_at > now()) FOR UPDATE"
)
_RETIRE = (
    "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'::timestamptz),"
    " now() + make_interval(secs => %(grace_s)s::integer)), replaced_by = %(new_key_id)s, rotated_at = now()"
    f" WHERE tenant_id = %(tenant_id)s AND key_id = %(key_id)s RETURNING {_KEY_COLUMNS}"
)


def tenant_record(row: dict[str, Any]) -> TenantRecord:
    return TenantRecord(
        tenant_id=row["tenant_id"],
        name=row["name"],
        rate_limit=row["rate_limit"],
        ip_allowlist=tuple(row["ip_allowlist"] or ()),
        created_at=row["created_at"],
        disabled=row["disabled_at"] is not None,
        max_key_lifetime_s=row["max_key_lifetime_s"],
        deleted=row["deleted_at"] is not None,
    )


def key_record(row: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        key_prefix=row["key_prefix"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        replaced_by=row["replaced_by"],
        rotated_at=row["rotated_at"],
    )


async def insert_key(
    connection: AsyncConnection[Any],
    tenant_id: str,
    key: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> ApiKeyRecord:
    params = {
        "key_id": new_key_id(),
        "tenant_id": tenant_id,
        "key_sha256": hash_api_key(key),
        "key_prefix": key_preview(key),
        "name": name,
        "scopes": scopes,
        "expires_at": expires_at,
    }
    async with connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(INSERT_KEY, params)
        row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no tenant {tenant_id!r}")
    return key_record(row)


async def rotate_key(
    pool: AsyncConnectionPool,
    tenant_id: str,
    key_id: str,
    key: str,
    grace_s: int,
    expires_at: datetime | None,
    audit: AuditFor[RotatedKey] | None = None,
) -> RotatedKey | None:
    async with tenant_transaction(pool, tenant_id) as connection, connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LOCK_FOR_ROTATION, (tenant_id, key_id))
        old = await cur.fetchone()
        if old is None:
            return None
        if old["replaced_by"] is not None:
            raise KeyAlreadyRotated(f"key {key_id!r} was already replaced by {old['replaced_by']!r}")
        expiry = expires_at or old["same_lifetime"]
        new = await insert_key(connection, tenant_id, key, old["name"], list(old["scopes"]), expiry)
        await cur.execute(
            _RETIRE, {"grace_s": grace_s, "new_key_id": new.key_id, "tenant_id": tenant_id, "key_id": key_id}
        )
        retired = await cur.fetchone()
        assert retired is not None  # locked above, in this transaction
        rotated = RotatedKey(new=new, old=key_record(retired))
        if audit is not None:  # in the rotation's transaction: no new secret without its audit row
            await append_audit(connection, audit(rotated))
    return rotated


async def list_keys(pool: AsyncConnectionPool, tenant_id: str, *, limit: int, cursor: str | None) -> ApiKeyListing:
    query = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = %s"
    params: list[Any] = [tenant_id]
    if cursor is not None:
        created_at, after_id = decode_cursor(cursor)
        query += " AND (created_at, key_id) < (%s, %s)"
        params += [created_at, after_id]
    query += " ORDER BY created_at DESC, key_id DESC LIMIT %s"
    params.append(limit + 1)
    async with tenant_transaction(pool, tenant_id) as connection, connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    items = [key_record(row) for row in rows[:limit]]
    more = len(rows) > limit
    return ApiKeyListing(items, encode_cursor(items[-1].created_at, items[-1].key_id) if more else None)


async def list_tenants(
    pool: AsyncConnectionPool, *, limit: int, cursor: str | None, include_deleted: bool
) -> TenantListing:
    """Through the definer function (migration 0015): row-level security keeps the admin role to one tenant."""
    after = decode_tenant_cursor(cursor) if cursor is not None else None
    async with pool.connection() as connection, connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LIST_TENANTS, (after, limit + 1, include_deleted))
        rows = await cur.fetchall()
    items = [tenant_record(row) for row in rows[:limit]]
    more = len(rows) > limit
    return TenantListing(items, encode_tenant_cursor(items[-1].tenant_id) if more else None)


def encode_tenant_cursor(tenant_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(["tenant", tenant_id]).encode()).decode()


def decode_tenant_cursor(cursor: str) -> str:
    """The last tenant_id of the previous page; ValueError for anything `encode_tenant_cursor` did not produce."""
    try:
        kind, tenant_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("not a cursor of this listing") from exc
    if kind != "tenant" or not isinstance(tenant_id, str):
        raise ValueError("not a cursor of this listing")
    return tenant_id


def encode_cursor(created_at: datetime, key_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), key_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """ValueError for anything `encode_cursor` did not produce."""
    try:
        created_at, key_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created_at), str(key_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a cursor of this listing") from exc


async def update_tenant(
    pool: AsyncConnectionPool, tenant_id: str, update: TenantUpdate, audit: AuditFor[TenantRecord] | None = None
) -> TenantRecord | None:
    sets, params = _assignments(update)
    params["tenant_id"] = tenant_id
    # A deleted tenant changes no more (a PATCH racing the DELETE finds no row); the DELETE itself is idempotent.
    live = "" if update.deleted else " AND deleted_at IS NULL"
    statement = f"UPDATE tenants SET {', '.join(sets)} WHERE tenant_id = %(tenant_id)s{live} RETURNING {TENANT_COLUMNS}"
    async with tenant_transaction(pool, tenant_id) as connection, connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params)
        row = await cur.fetchone()
        record = tenant_record(row) if row else None
        if record is not None and audit is not None:
            await append_audit(connection, audit(record))
    return record


def _assignments(update: TenantUpdate) -> tuple[list[str], dict[str, Any]]:
    """SET clauses for the fields the update names, from a fixed set of columns (never from input)."""
    sets: list[str] = ["updated_at = now()"]
    params: dict[str, Any] = {}
    if update.name is not None:
        sets.append("name = %(name)s")
        params["name"] = update.name
    if update.rate_limit is not None or "rate_limit" in update.reset:
        sets.append("rate_limit = %(rate_limit)s")
        params["rate_limit"] = update.rate_limit
    if update.ip_allowlist is not None:
        sets.append("ip_allowlist = %(ip_allowlist)s::cidr[]")
        params["ip_allowlist"] = [str(network) for network in update.ip_allowlist]
    if update.disabled is not None:
        sets.append("disabled_at = CASE WHEN %(disabled)s THEN coalesce(disabled_at, now()) END")
        params["disabled"] = update.disabled
    if update.max_key_lifetime_s is not None or "max_key_lifetime_s" in update.reset:
        sets.append("max_key_lifetime_s = %(max_key_lifetime_s)s")
        params["max_key_lifetime_s"] = update.max_key_lifetime_s
    if update.deleted:  # the first deletion's time stands: the grace period runs from it
        sets.append("deleted_at = coalesce(deleted_at, now())")
    return sets, params


async def tenant_disabled(pool: AsyncConnectionPool, tenant_id: str) -> bool:
    """On the gateway's own pool, through the definer function (the role may not read tenants)."""
    async with pool.connection() as connection:
        cursor = await connection.execute("SELECT ragstream_tenant_disabled(%s)", (tenant_id,))
        row = await cursor.fetchone()
    return bool(row and row[0])

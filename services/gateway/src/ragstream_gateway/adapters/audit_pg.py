"""The audit log in Postgres (migrations 0001, 0005, 0008): appends, reads, the hash chain and its export cursor.

Appends name only the content columns: the append trigger of migration 0008 sets `seq`, `prev_hash`, `at` and
`row_hash` under the tenant's chain lock. `append_audit` writes on a connection the caller already holds, so a
change and its audit row commit together (the tenant directory's writes, tenants_pg.py). Reads, verification
and the export relay use the admin login (`ragstream_gateway_admin`), the only one that may read the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import open_pool_at, tenant_transaction
from ragstream_common.events import RecordPublisher

from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.audit_chain import ChainHead, ChainRow
from ragstream_gateway.audit_export import SecurityEventRelay
from ragstream_gateway.audit_trail import CachedAuditStore, note_described
from ragstream_gateway.audit_writer import GroupCommitAuditLog
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.ports import AuditEntry, AuditRecord

_INSERT = (
    "INSERT INTO audit_log (tenant_id, actor, action, resource, client_ip, details, outcome, trace_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_CHAIN_COLUMNS = (
    "audit_id, tenant_id, seq, at, actor, action, resource, client_ip, outcome, trace_id, details::text,"
    " prev_hash, row_hash"
)


def _params(entry: AuditEntry) -> tuple[Any, ...]:
    return (
        entry.tenant_id,
        entry.actor,
        entry.action,
        entry.resource,
        entry.client_ip,
        Jsonb(dict(entry.details)),
        entry.outcome,
        entry.trace_id,
    )


async def append_audit(connection: psycopg.AsyncConnection[Any], entry: AuditEntry) -> None:
    """Append `entry` in the caller's transaction, which must be `entry.tenant_id`'s (tenant_transaction)."""
    await connection.execute(_INSERT, _params(entry))
    note_described()


class PostgresAuditLog:
    """Appends on `pool` (the gateway's login); reads on `reader` (the admin login). No login changes an entry."""

    def __init__(self, pool: AsyncConnectionPool, reader: AsyncConnectionPool | None = None) -> None:
        self._pool = pool
        self._reader = reader or pool

    async def record(self, entry: AuditEntry) -> None:
        await self.record_many([entry])

    async def record_many(self, entries: Sequence[AuditEntry]) -> None:
        """One transaction per tenant: the chain lock is taken once for all of that tenant's entries. Pipelined:
        every request waits for its entry's commit, so BEGIN, scope, inserts and COMMIT go in one round trip."""
        by_tenant: dict[str, list[AuditEntry]] = defaultdict(list)
        for entry in entries:
            by_tenant[entry.tenant_id].append(entry)
        for tenant_id, batch in by_tenant.items():
            async with (
                tenant_transaction(self._pool, tenant_id, pipelined=True) as connection,
                connection.cursor() as cursor,
            ):
                await cursor.executemany(_INSERT, [_params(entry) for entry in batch])

    async def chain_head(self, tenant_id: str) -> ChainHead | None:
        async with tenant_transaction(self._reader, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT seq, row_hash FROM audit_chain_heads WHERE tenant_id = %s", (tenant_id,)
            )
            row = await cursor.fetchone()
        return ChainHead(row[0], row[1]) if row else None

    async def chain_rows(self, tenant_id: str, *, after_seq: int, limit: int) -> list[ChainRow]:
        async with tenant_transaction(self._reader, tenant_id) as connection:
            cursor = await connection.execute(
                f"SELECT {_CHAIN_COLUMNS} FROM audit_log WHERE tenant_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (tenant_id, after_seq, limit),
            )
            return [ChainRow(*row) for row in await cursor.fetchall()]

    async def question_text(self, tenant_id: str) -> bool:
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT ragstream_audit_question_text(%s)", (tenant_id,))
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def set_question_text(self, tenant_id: str, enabled: bool, entry: AuditEntry) -> bool:
        """Set the opt-in and audit the change in one transaction; False when there is no such tenant."""
        async with tenant_transaction(self._reader, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE tenants SET audit_question_text = %s WHERE tenant_id = %s", (enabled, tenant_id)
            )
            if cursor.rowcount == 0:
                return False
            await append_audit(connection, entry)
        return True

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]:
        query = (
            "SELECT audit_id, actor, action, resource, client_ip, details, at, outcome, trace_id, seq"
            " FROM audit_log WHERE tenant_id = %s"
        )
        params: list[Any] = [tenant_id]
        if before is not None:
            query += " AND audit_id < %s"
            params.append(before)
        query += " ORDER BY audit_id DESC LIMIT %s"
        params.append(limit)
        async with tenant_transaction(self._reader, tenant_id) as connection:
            cursor = await connection.execute(query, params)
            return [AuditRecord(*row) for row in await cursor.fetchall()]


Publish = Callable[[Sequence[ChainRow]], Awaitable[None]]


class PostgresAuditOutbox:
    """The export relay's side of the log: claim unpublished rows, publish them, advance the cursor, commit."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def drain(self, limit: int, publish: Publish) -> int:
        """Publish up to `limit` rows through `publish` (acknowledged before the cursor moves); how many."""
        async with self._pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(
                "SELECT audit_id, tenant_id, seq, at, actor, action, resource, client_ip, outcome, trace_id,"
                " details, prev_hash, row_hash FROM ragstream_audit_export_claim(%s)",
                (limit,),
            )
            rows = [ChainRow(*row) for row in await cursor.fetchall()]
            if not rows:
                return 0
            await publish(rows)
            last: dict[str, int] = {}
            for row in rows:
                last[row.tenant_id] = max(row.seq, last.get(row.tenant_id, 0))
            for tenant_id, seq in last.items():
                await connection.execute("SELECT ragstream_audit_export_ack(%s, %s)", (tenant_id, seq))
        return len(rows)


async def open_audit_log(
    stack: AsyncExitStack, pool: AsyncConnectionPool, admin_pool: AsyncConnectionPool, trail_commit_window_s: float
) -> tuple[GroupCommitAuditLog, GroupCommitAuditLog, CachedAuditStore]:
    """The audit log as the gateway writes it (group commit, drained before `stack` closes the pools opened
    before it): the routes' writer, committing at once, and the audit trail's, whose rows gather for
    `trail_commit_window_s` (their responses went out already); and the log as the admin API reads it."""
    log = PostgresAuditLog(pool, admin_pool)
    writer = GroupCommitAuditLog(log)
    trail_writer = GroupCommitAuditLog(log, commit_window_s=trail_commit_window_s)
    for each in (writer, trail_writer):
        stack.push_async_callback(each.aclose)
    return writer, trail_writer, CachedAuditStore(log)


async def open_security_event_relay(
    stack: AsyncExitStack, settings: GatewaySettings, publisher: RecordPublisher
) -> SecurityEventRelay | None:
    """The export relay on a connection of its own (it holds it while Kafka acknowledges), on the admin login."""
    if not settings.audit_export_enabled:
        return None
    url = settings.admin_database_url.get_secret_value() if settings.admin_database_url else settings.database_url
    pool = await open_pool_at(stack, url, name="gateway-audit-export", max_size=1)
    return SecurityEventRelay(
        PostgresAuditOutbox(pool),
        publisher,
        GATEWAY_ROUTES,
        interval_s=settings.audit_export_interval_s,
        batch_rows=settings.audit_export_batch,
        publish_timeout_s=settings.publish_timeout_s,
    )

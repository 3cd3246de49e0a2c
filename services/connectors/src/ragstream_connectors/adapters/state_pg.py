"""Connector state in Postgres (migration 0009): connectors, connector_sync_state, connector_items and
connector_deliveries, each statement in its tenant's transaction under row-level security.

Every statement also names the tenant, so the adapter stays correct under a login that row-level security does
not bind (an administrator's, in tests). Timestamps that are compared with each other (`full_sync_started_at`,
`seen_at`) all come from the database's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_connectors.ports import ConnectorRecord, DueConnector, ItemRecord, PageWrite, SyncState
from ragstream_connectors.providers.base import Subscription

_ITEM_COLUMNS = "item_id, document_id, version, version_tag, content_sha256, title, deleted, pending"
_UPSERT_ITEM = """
INSERT INTO connector_items (connector_id, tenant_id, item_id, document_id, version, version_tag, content_sha256,
                             title, deleted, pending, seen_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), now())
ON CONFLICT (connector_id, item_id) DO UPDATE SET
    document_id = EXCLUDED.document_id, version = EXCLUDED.version, version_tag = EXCLUDED.version_tag,
    content_sha256 = EXCLUDED.content_sha256, title = EXCLUDED.title, deleted = EXCLUDED.deleted,
    pending = EXCLUDED.pending, seen_at = now(), updated_at = now()
"""
_SAVE_PAGE_STATE = """
UPDATE connector_sync_state SET
    cursor = COALESCE(%(cursor)s::text, cursor),
    items_synced = items_synced + %(listed)s,
    last_sync_at = now(),
    error_count = error_count + (%(error)s::text IS NOT NULL)::int,
    last_error = COALESCE(%(error)s::text, last_error),
    updated_at = now()
WHERE connector_id = %(connector)s AND tenant_id = %(tenant)s
"""

# The gateway recorded most deliveries on receipt; one it did not (a replayed event) is recorded now.
_MARK_PROCESSED = """
INSERT INTO connector_deliveries (connector_id, delivery_id, tenant_id, processed_at)
SELECT %s, d, %s, now() FROM unnest(%s::text[]) AS d
ON CONFLICT (connector_id, delivery_id) DO UPDATE SET processed_at = COALESCE(connector_deliveries.processed_at, now())
"""


def _item_values(item: ItemRecord) -> tuple[Any, ...]:
    return (
        item.item_id,
        item.document_id,
        item.version,
        item.version_tag,
        item.content_sha256,
        item.title,
        item.deleted,
        item.pending,
    )


def _item(row: Sequence[Any]) -> ItemRecord:
    return ItemRecord(
        str(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), str(row[5]), bool(row[6]), bool(row[7])
    )


class PostgresConnectorStore:
    """`ConnectorStore` and `ScheduleStore` over the connectors worker's login (`ragstream_connectors`)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def find(self, tenant_id: str, connector_id: str) -> ConnectorRecord | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT connector_id, tenant_id, provider, name, status, config, secrets_ciphertext"
                " FROM connectors WHERE connector_id = %s AND tenant_id = %s",
                (connector_id, tenant_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return ConnectorRecord(row[0], row[1], row[2], row[3], row[4], dict(row[5] or {}), bytes(row[6]))

    async def mark_removed(self, tenant_id: str, connector_id: str) -> None:
        await self._execute(
            tenant_id,
            "UPDATE connectors SET status = 'removed', removed_at = COALESCE(removed_at, now()), updated_at = now()"
            " WHERE connector_id = %s AND tenant_id = %s",
            (connector_id, tenant_id),
        )

    async def sync_state(self, tenant_id: str, connector_id: str) -> SyncState:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT cursor, subscription_id, subscription_resource, subscription_expires_at,"
                " full_sync_started_at, last_sync_at, items_synced, error_count, last_error, next_poll_at"
                " FROM connector_sync_state WHERE connector_id = %s AND tenant_id = %s",
                (connector_id, tenant_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return SyncState()
        subscription = Subscription(row[1], row[3], row[2] or "") if row[1] else None
        return SyncState(row[0], subscription, row[4], row[5], int(row[6]), int(row[7]), row[8], row[9])

    async def start_full_sync(self, tenant_id: str, connector_id: str) -> datetime:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE connector_sync_state SET cursor = NULL, full_sync_started_at = now(), updated_at = now()"
                " WHERE connector_id = %s AND tenant_id = %s RETURNING full_sync_started_at",
                (connector_id, tenant_id),
            )
            row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"connector {connector_id} has no sync state")
        started: datetime = row[0]
        return started

    async def items(self, tenant_id: str, connector_id: str, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                f"SELECT {_ITEM_COLUMNS} FROM connector_items"
                " WHERE connector_id = %s AND tenant_id = %s AND item_id = ANY(%s)",
                (connector_id, tenant_id, list(item_ids)),
            )
            rows = await cursor.fetchall()
        return {record.item_id: record for record in map(_item, rows)}

    async def save_page(self, tenant_id: str, connector_id: str, page: PageWrite) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            if page.items:
                async with connection.cursor() as cursor:
                    await cursor.executemany(
                        _UPSERT_ITEM,
                        [(connector_id, tenant_id, *_item_values(i)) for i in page.items],
                    )
            if page.seen:
                await connection.execute(
                    "UPDATE connector_items SET seen_at = now()"
                    " WHERE connector_id = %s AND tenant_id = %s AND item_id = ANY(%s)",
                    (connector_id, tenant_id, list(page.seen)),
                )
            if page.deliveries:
                await connection.execute(_MARK_PROCESSED, (connector_id, tenant_id, list(page.deliveries)))
            await connection.execute(
                _SAVE_PAGE_STATE,
                {
                    "cursor": page.cursor,
                    "listed": page.listed,
                    "error": page.error[:500] if page.error else None,
                    "connector": connector_id,
                    "tenant": tenant_id,
                },
            )

    async def unseen_live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]:
        columns = ", ".join(f"i.{c}" for c in _ITEM_COLUMNS.split(", "))
        return await self._items(
            tenant_id,
            f"SELECT {columns} FROM connector_items i JOIN connector_sync_state s ON s.connector_id = i.connector_id"
            " WHERE i.connector_id = %s AND i.tenant_id = %s AND NOT i.deleted"
            " AND s.full_sync_started_at IS NOT NULL AND i.seen_at < s.full_sync_started_at"
            " ORDER BY i.item_id LIMIT %s",
            (connector_id, tenant_id, limit),
        )

    async def live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]:
        return await self._items(
            tenant_id,
            f"SELECT {_ITEM_COLUMNS} FROM connector_items WHERE connector_id = %s AND tenant_id = %s AND NOT deleted"
            " ORDER BY item_id LIMIT %s",
            (connector_id, tenant_id, limit),
        )

    async def finish_sync(self, tenant_id: str, connector_id: str, poll_interval_s: float) -> None:
        await self._execute(
            tenant_id,
            "UPDATE connector_sync_state SET full_sync_started_at = NULL, last_sync_at = now(),"
            " next_poll_at = now() + make_interval(secs => %s), updated_at = now()"
            " WHERE connector_id = %s AND tenant_id = %s",
            (float(poll_interval_s), connector_id, tenant_id),
        )

    async def record_error(self, tenant_id: str, connector_id: str, message: str) -> None:
        await self._execute(
            tenant_id,
            "UPDATE connector_sync_state SET error_count = error_count + 1, last_error = %s, updated_at = now()"
            " WHERE connector_id = %s AND tenant_id = %s",
            (message[:500], connector_id, tenant_id),
        )

    async def poll_soon(self, tenant_id: str, connector_id: str, delay_s: float) -> None:
        await self._execute(
            tenant_id,
            "UPDATE connector_sync_state SET next_poll_at = LEAST(next_poll_at, now() + make_interval(secs => %s)),"
            " updated_at = now() WHERE connector_id = %s AND tenant_id = %s",
            (float(delay_s), connector_id, tenant_id),
        )

    async def save_subscription(self, tenant_id: str, connector_id: str, subscription: Subscription | None) -> None:
        values = (
            (subscription.subscription_id, subscription.resource or None, subscription.expires_at)
            if subscription is not None
            else (None, None, None)
        )
        await self._execute(
            tenant_id,
            "UPDATE connector_sync_state SET subscription_id = %s, subscription_resource = %s,"
            " subscription_expires_at = %s, updated_at = now() WHERE connector_id = %s AND tenant_id = %s",
            (*values, connector_id, tenant_id),
        )

    async def processed_deliveries(self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]) -> set[str]:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT delivery_id FROM connector_deliveries WHERE connector_id = %s AND tenant_id = %s"
                " AND delivery_id = ANY(%s) AND processed_at IS NOT NULL",
                (connector_id, tenant_id, list(delivery_ids)),
            )
            return {str(row[0]) for row in await cursor.fetchall()}

    async def mark_processed(self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]) -> None:
        await self._execute(tenant_id, _MARK_PROCESSED, (connector_id, tenant_id, list(delivery_ids)))

    async def due_connectors(self, renew_within_s: float, limit: int) -> list[DueConnector]:
        # Across tenants: the SECURITY DEFINER function returns only what the schedule needs.
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT tenant_id, connector_id, provider, next_poll_at, subscription_expires_at"
                " FROM ragstream_due_connectors(%s, %s)",
                (timedelta(seconds=renew_within_s), limit),
            )
            rows = await cursor.fetchall()
        return [DueConnector(*row) for row in rows]

    async def claim(self, due: DueConnector, poll_interval_s: float, keep_deliveries_s: float) -> bool:
        async with tenant_transaction(self._pool, due.tenant_id) as connection:
            cursor = await connection.execute(
                "UPDATE connector_sync_state SET next_poll_at = now() + make_interval(secs => %s), updated_at = now()"
                " WHERE connector_id = %s AND tenant_id = %s AND next_poll_at = %s RETURNING connector_id",
                (float(poll_interval_s), due.connector_id, due.tenant_id, due.next_poll_at),
            )
            if await cursor.fetchone() is None:
                return False
            await connection.execute(
                "DELETE FROM connector_deliveries WHERE connector_id = %s AND tenant_id = %s"
                " AND received_at < now() - make_interval(secs => %s)",
                (due.connector_id, due.tenant_id, float(keep_deliveries_s)),
            )
        return True

    async def _items(self, tenant_id: str, query: str, params: tuple[Any, ...]) -> list[ItemRecord]:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(query, params)
            return [_item(row) for row in await cursor.fetchall()]

    async def _execute(self, tenant_id: str, query: str, params: tuple[Any, ...]) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(query, params)

"""Window totals into usage_minutes (migration 0012_usage.sql), one tenant transaction per window.

Totals are absolute (a window's sum over its distinct usage ids), so a write is idempotent; GREATEST on conflict
means a window recounted from less state (its changelog replayed after expiry, a lagging copy) never lowers one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

_UPSERT = """
INSERT INTO usage_minutes (tenant_id, window_start, metric, value)
VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant_id, window_start, metric) DO UPDATE
    SET value = GREATEST(usage_minutes.value, EXCLUDED.value), updated_at = now()
    WHERE usage_minutes.value < EXCLUDED.value
"""


class PostgresUsageWriter:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def write_window(self, tenant_id: str, window_start: datetime, totals: Mapping[str, int]) -> None:
        if not totals:
            return
        rows = [(tenant_id, window_start, metric, value) for metric, value in sorted(totals.items())]
        async with tenant_transaction(self._pool, tenant_id) as connection, connection.cursor() as cursor:
            await cursor.executemany(_UPSERT, rows)

"""Documents by tenant and status for the `ragstream_documents` gauge (document_metrics.py), migration 0013.

Counting every tenant's documents crosses tenants, which row-level security forbids to the gateway's login: it
goes through `ragstream_document_status_counts()`, a SECURITY DEFINER function of the migrations that returns
counts and nothing else. While that function does not exist (migrations behind) the gauge is simply empty.
"""

from __future__ import annotations

from psycopg.errors import UndefinedFunction
from psycopg_pool import AsyncConnectionPool
from ragstream_common.logs import get_logger

from ragstream_gateway.document_metrics import StatusCount

log = get_logger(__name__)

_STATUS_COUNTS = "SELECT tenant_id, status, count FROM ragstream_document_status_counts()"


class PostgresDocumentCounts:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._function_missing_logged = False

    async def status_counts(self) -> list[StatusCount]:
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_STATUS_COUNTS)
                rows = await cursor.fetchall()
        except UndefinedFunction:
            if not self._function_missing_logged:
                log.warning("ragstream_document_status_counts() is missing (migrations); ragstream_documents is empty")
                self._function_missing_logged = True
            return []
        return [StatusCount(tenant_id, status, int(count)) for tenant_id, status, count in rows]

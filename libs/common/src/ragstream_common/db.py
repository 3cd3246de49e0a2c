"""Postgres access: one async pool per service, tenant-scoped transactions under row-level security.

Each service logs in as its own role (`ragstream_<service>`, migration 0005): not an owner, not a superuser,
member of no role, so row-level security binds every statement and no `SET ROLE`/`RESET ROLE` changes that.
`app.tenant_id` is set per transaction (`set_config(..., true)`), so a pooled connection never carries one
tenant's scope into the next transaction, committed or rolled back.

Every pool exports its connection gauges and the duration of its tenant transactions (db_metrics).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

from ragstream_common.db_metrics import QUERY_SECONDS, track_pool
from ragstream_common.logs import get_logger

log = get_logger(__name__)
_warned_superusers: set[str] = set()


async def _configure(connection: psycopg.AsyncConnection) -> None:
    await register_vector_async(connection)
    await connection.commit()
    user = connection.info.user
    # Reported by the server at login (no query): row-level security never binds a superuser.
    if connection.info.parameter_status("is_superuser") == "on" and user not in _warned_superusers:
        _warned_superusers.add(user)
        log.warning("database login is a superuser: row-level security does not apply to it", user=user)


def create_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 8, name: str = "ragstream"
) -> AsyncConnectionPool:
    """An unopened pool; call `await pool.open(wait=True)` in the composition root."""
    pool = AsyncConnectionPool(
        database_url, min_size=min_size, max_size=max_size, configure=_configure, name=name, open=False
    )
    track_pool(pool)
    return pool


async def open_pool_at(
    stack: AsyncExitStack, database_url: str, *, name: str, max_size: int = 2
) -> AsyncConnectionPool:
    """A second pool of a service under another login (the gateway's admin path), closed by `stack`."""
    pool = create_pool(database_url, max_size=max_size, name=name)
    await pool.open(wait=True, timeout=30)
    stack.push_async_callback(pool.close)
    return pool


@asynccontextmanager
async def tenant_transaction(
    pool: AsyncConnectionPool, tenant_id: str, *, pipelined: bool = False
) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction in which row-level security admits only `tenant_id`'s rows.

    `pipelined` sends BEGIN, the tenant's scope and the statements up to the first fetch in one round trip, and
    the COMMIT with the next (psycopg's pipeline mode): for short reads on the question path, where each round
    trip costs more CPU (here and in Postgres) than the query. Not for COPY, which pipeline mode refuses."""
    with QUERY_SECONDS.labels(pool.name).time():
        async with pool.connection() as connection:
            async with connection.pipeline() if pipelined else nullcontext(), connection.transaction():
                await connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
                yield connection

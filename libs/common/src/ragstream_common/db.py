"""Postgres access: one async pool per service, tenant-scoped transactions under row-level security."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

APP_ROLE = "ragstream_app"


async def _configure(connection: psycopg.AsyncConnection) -> None:
    await register_vector_async(connection)
    # Row-level security binds this role; superusers and table owners would bypass it.
    await connection.execute(f"SET ROLE {APP_ROLE}")
    await connection.commit()


def create_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 8, name: str = "ragstream"
) -> AsyncConnectionPool:
    """An unopened pool; call `await pool.open(wait=True)` in the composition root."""
    return AsyncConnectionPool(
        database_url, min_size=min_size, max_size=max_size, configure=_configure, name=name, open=False
    )


@asynccontextmanager
async def tenant_transaction(pool: AsyncConnectionPool, tenant_id: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction in which row-level security admits only `tenant_id`'s rows."""
    async with pool.connection() as connection, connection.transaction():
        await connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
        yield connection

"""Embedding-model generations in Postgres (migration 0016): the generations table, the chunks that lack a
model's vector (across tenants, through the owner's functions) and the switch transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_retrieve.generations_model import (
    Generation,
    GenerationError,
    Generations,
    GenerationState,
    check_activation,
    rollback_target,
)
from ragstream_retrieve.models import MissingChunk

_COLUMNS = "id, model, dimensions, state, chunks_total, chunks_done, created_at, live_at, retired_at"
_READ = f"SELECT {_COLUMNS} FROM embedding_generations ORDER BY id"
# FOR KEY SHARE: indexers share it; only the switch's and activation's FOR UPDATE waits for them.
_READ_SHARED = f"SELECT {_COLUMNS} FROM embedding_generations ORDER BY id FOR KEY SHARE"
_READ_LOCKED = f"SELECT {_COLUMNS} FROM embedding_generations ORDER BY id FOR UPDATE"
_CREATE = f"""
INSERT INTO embedding_generations (model, dimensions, state) VALUES (%(model)s, %(dimensions)s, 'building')
ON CONFLICT DO NOTHING RETURNING {_COLUMNS}
"""
_PROGRESS = "SELECT total, missing FROM ragstream_generation_progress(%(model)s)"
_RECORD_PROGRESS = "UPDATE embedding_generations SET chunks_total = %(total)s, chunks_done = %(done)s WHERE id = %(id)s"
_MISSING = "SELECT tenant_id, chunk_key, text FROM ragstream_chunks_missing_vector(%(model)s, %(after)s, %(limit)s)"
# Only chunks still there: one deleted since it was listed is skipped (its vectors would go with it anyway).
_STORE = """
INSERT INTO chunk_vectors (tenant_id, chunk_key, model, embedding)
SELECT %(tenant)s, c.chunk_key, %(model)s, u.embedding
FROM unnest(%(keys)s::bigint[], %(embeddings)s::vector[]) AS u(chunk_key, embedding)
JOIN chunks c ON c.tenant_id = %(tenant)s AND c.chunk_key = u.chunk_key
ON CONFLICT DO NOTHING
"""
_RETIRE_LIVE = "UPDATE embedding_generations SET state = 'retired', retired_at = now() WHERE state = 'live'"
_MAKE_LIVE = """
UPDATE embedding_generations SET state = 'live', live_at = now(), retired_at = NULL, chunks_total = %(total)s,
       chunks_done = %(total)s
WHERE id = %(id)s
"""
_SET_STATE = "UPDATE embedding_generations SET state = %(state)s WHERE id = %(id)s"


def _generation(row: Sequence[Any]) -> Generation:
    id_, model, dimensions, state, total, done, created_at, live_at, retired_at = row
    return Generation(
        int(id_), model, int(dimensions), GenerationState(state), int(total), int(done), created_at, live_at, retired_at
    )


async def read_generations(connection: psycopg.AsyncConnection, lock: bool = False) -> Generations:
    """Every generation; `lock`: under a share lock held to the end of the caller's transaction."""
    cursor = await connection.execute(_READ_SHARED if lock else _READ)
    return Generations(tuple(_generation(row) for row in await cursor.fetchall()))


class PostgresGenerations:
    """The generations and their vectors; `current()` is cached for `ttl_s` (queries read it per search)."""

    def __init__(self, pool: AsyncConnectionPool, ttl_s: float = 1.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cached: tuple[float, Generations] | None = None

    async def current(self) -> Generations:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl_s:
            self._cached = (now, await self.load())
        return self._cached[1]

    async def load(self) -> Generations:
        async with self._pool.connection() as connection:
            return await read_generations(connection)

    async def create(self, model: str, dimensions: int) -> Generation | None:
        """A new building generation of `model`, or None when one exists (or another builds)."""
        async with self._pool.connection() as connection:
            row = await (await connection.execute(_CREATE, {"model": model, "dimensions": dimensions})).fetchone()
        self._cached = None
        return None if row is None else _generation(row)

    async def progress(self, model: str) -> tuple[int, int]:
        """(chunks in the index, chunks without a vector of `model`)."""
        async with self._pool.connection() as connection:
            row = await (await connection.execute(_PROGRESS, {"model": model})).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def record_progress(self, generation_id: int, total: int, done: int) -> None:
        async with self._pool.connection() as connection:
            await connection.execute(_RECORD_PROGRESS, {"id": generation_id, "total": total, "done": done})

    async def missing(self, model: str, after_key: int, limit: int) -> list[MissingChunk]:
        """Up to `limit` chunks (any tenant) past `after_key` without a vector of `model`, by chunk key."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(_MISSING, {"model": model, "after": after_key, "limit": limit})
            return [MissingChunk(tenant, int(key), text) for tenant, key, text in await cursor.fetchall()]

    async def store_vectors(self, model: str, chunks: Sequence[MissingChunk], vectors: np.ndarray) -> None:
        """Each chunk's vector of `model`, written in its tenant's transaction; idempotent."""
        by_tenant: dict[str, list[int]] = {}
        for row, chunk in enumerate(chunks):
            by_tenant.setdefault(chunk.tenant_id, []).append(row)
        for tenant_id, rows in by_tenant.items():
            async with tenant_transaction(self._pool, tenant_id) as connection:
                await connection.execute(
                    _STORE,
                    {
                        "tenant": tenant_id,
                        "model": model,
                        "keys": [chunks[row].chunk_key for row in rows],
                        "embeddings": [Vector(vectors[row]) for row in rows],
                    },
                )

    async def switch(self, generation_id: int) -> bool:
        """Make the building generation live and retire the live one, in one transaction, if no chunk lacks its
        vector once every indexer writing under the old generations has committed; False otherwise."""
        async with self._pool.connection() as connection, connection.transaction():
            generations = await read_generations_locked(connection)
            building = generations.building
            if building is None or building.id != generation_id:
                return False
            row = await (await connection.execute(_PROGRESS, {"model": building.model})).fetchone()
            assert row is not None
            total, missing = int(row[0]), int(row[1])
            if missing:
                return False
            await connection.execute(_RETIRE_LIVE)
            await connection.execute(_MAKE_LIVE, {"id": generation_id, "total": total})
        self._cached = None
        return True

    async def activate(self, generation_id: int) -> Generation:
        """Rebuild a retired (or failed) generation towards live: it becomes the building one."""
        async with self._pool.connection() as connection, connection.transaction():
            target = check_activation(await read_generations_locked(connection), generation_id)
            await connection.execute(_SET_STATE, {"id": target.id, "state": GenerationState.BUILDING.value})
        self._cached = None
        return target

    async def rollback(self) -> Generation:
        """Bring back the generation retired last: it rebuilds what it lacks, then switches in."""
        async with self._pool.connection() as connection:
            target = rollback_target(await read_generations(connection))
        return await self.activate(target.id)

    async def cancel(self) -> Generation:
        """Give up the building generation (failed): the live one stays."""
        async with self._pool.connection() as connection, connection.transaction():
            building = (await read_generations_locked(connection)).building
            if building is None:
                raise GenerationError("no generation is building")
            await connection.execute(_SET_STATE, {"id": building.id, "state": GenerationState.FAILED.value})
        self._cached = None
        return building


async def read_generations_locked(connection: psycopg.AsyncConnection) -> Generations:
    cursor = await connection.execute(_READ_LOCKED)
    return Generations(tuple(_generation(row) for row in await cursor.fetchall()))

"""Embedding cache in Postgres: (tenant, model, content hash) -> vector."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pgvector import Vector
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction


class PostgresEmbeddingCache:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def lookup(self, tenant_id: str, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT content_sha256, embedding FROM embedding_cache"
                " WHERE tenant_id = %s AND model = %s AND content_sha256 = ANY(%s)",
                (tenant_id, model, list(set(hashes))),
            )
            rows = await cursor.fetchall()
        return {digest: np.asarray(vector.to_numpy(), dtype=np.float32) for digest, vector in rows}

    async def store(self, tenant_id: str, model: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        async with tenant_transaction(self._pool, tenant_id) as connection, connection.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO embedding_cache (tenant_id, model, content_sha256, embedding)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(tenant_id, model, digest, Vector(vector)) for digest, vector in vectors.items()],
            )

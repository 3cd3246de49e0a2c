"""Index writes in Postgres: one transaction per document version, serialised per document by its state row."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction
from ragstream_common.stage_metrics import timed_stage

from ragstream_retrieve.adapters.pg_generations import read_generations
from ragstream_retrieve.generations_model import VectorMismatch, chunk_vector_rows, stored_models
from ragstream_retrieve.models import DocumentVersion, IndexState, UpsertOutcome
from ragstream_retrieve.wire import InvalidDocument

# Corpus statistics shards per tenant (see lexical_stats in migration 0002).
STATS_SHARDS = 16
# chunks.embedding (vector(384)) is kept for the previous release until the contract migration (0016's header).
LEGACY_DIMENSIONS = 384

_LOCK_STATE = """
SELECT indexed_version, deleted_through_version FROM document_index_state
WHERE tenant_id = %(tenant)s AND document_id = %(document)s FOR UPDATE
"""
_CREATE_STATE = """
INSERT INTO document_index_state (tenant_id, document_id) VALUES (%(tenant)s, %(document)s) ON CONFLICT DO NOTHING
"""
_REMOVE_CHUNKS = """
WITH removed AS (
    DELETE FROM chunks WHERE tenant_id = %(tenant)s AND document_id = %(document)s
    RETURNING chunk_key, lexical_length
), postings AS (
    DELETE FROM chunk_terms p USING removed r WHERE p.tenant_id = %(tenant)s AND p.chunk_key = r.chunk_key
)
SELECT count(*), coalesce(sum(lexical_length), 0) FROM removed
"""
_INSERT_CHUNKS = """
INSERT INTO chunks (tenant_id, chunk_id, document_id, version, position, text, title, heading, metadata,
                    content_sha256, token_count, model, model_version, embedding, lexical_length)
SELECT %(tenant)s, u.chunk_id, %(document)s, %(version)s, u.position, u.text, %(title)s, u.heading, %(metadata)s,
       u.content_sha256, u.token_count, %(model)s, %(model_version)s, u.embedding, u.lexical_length
FROM unnest(%(chunk_ids)s::text[], %(positions)s::integer[], %(texts)s::text[], %(headings)s::text[],
            %(hashes)s::text[], %(token_counts)s::integer[], %(embeddings)s::vector[], %(lengths)s::integer[])
     AS u(chunk_id, position, text, heading, content_sha256, token_count, embedding, lexical_length)
RETURNING chunk_id, chunk_key
"""
_INSERT_VECTORS = """
INSERT INTO chunk_vectors (tenant_id, chunk_key, model, embedding)
SELECT %(tenant)s, u.chunk_key, u.model, u.embedding
FROM unnest(%(keys)s::bigint[], %(models)s::text[], %(embeddings)s::vector[]) AS u(chunk_key, model, embedding)
"""
_INSERT_POSTINGS = """
INSERT INTO chunk_terms (tenant_id, term, chunk_key, tf, chunk_length)
SELECT %(tenant)s, u.term, u.chunk_key, u.tf, u.chunk_length
FROM unnest(%(terms)s::text[], %(keys)s::bigint[], %(tfs)s::integer[], %(lengths)s::integer[])
     AS u(term, chunk_key, tf, chunk_length)
"""
_ADD_STATS = """
INSERT INTO lexical_stats AS s (tenant_id, shard, chunk_count, total_length)
VALUES (%(tenant)s, %(shard)s, %(chunks)s, %(length)s)
ON CONFLICT (tenant_id, shard) DO UPDATE
SET chunk_count = s.chunk_count + EXCLUDED.chunk_count, total_length = s.total_length + EXCLUDED.total_length
"""
_MARK_INDEXED = """
UPDATE document_index_state SET indexed_version = %(version)s, chunk_count = %(chunks)s, model = %(model)s,
       updated_at = now()
WHERE tenant_id = %(tenant)s AND document_id = %(document)s
"""
_MARK_DELETED = """
UPDATE document_index_state
SET deleted_through_version = greatest(deleted_through_version, %(version)s),
    chunk_count = CASE WHEN %(removed)s THEN 0 ELSE chunk_count END, updated_at = now()
WHERE tenant_id = %(tenant)s AND document_id = %(document)s
"""


class PostgresChunkIndex:
    """Implements `ChunkIndexWriter`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def upsert_document(self, document: DocumentVersion) -> UpsertOutcome:
        """Stage `index`: one document version's transaction, from the pool to the commit."""
        with timed_stage("index"):
            return await self._upsert(document)

    async def _upsert(self, document: DocumentVersion) -> UpsertOutcome:
        key = {"tenant": document.tenant_id, "document": document.document_id}
        async with tenant_transaction(self._pool, document.tenant_id) as connection:
            outcome = (await _lock_state(connection, key)).plan_upsert(document.version)
            if outcome is not UpsertOutcome.INDEXED:
                return outcome
            # Read under a share lock: a generation switch waits for this commit (pg_generations.switch).
            generations = await read_generations(connection, lock=True)
            try:
                stored = stored_models(document.model, _sizes(document), generations)
            except VectorMismatch as exc:
                raise InvalidDocument(str(exc)) from None
            removed_chunks, removed_length = await _remove_chunks(connection, key)
            live = generations.live
            legacy = live.model if live is not None and live.dimensions == LEGACY_DIMENSIONS else None
            added_length = await _insert_chunks(connection, document, stored, legacy)
            await connection.execute(
                _MARK_INDEXED,
                {**key, "version": document.version, "chunks": len(document.chunks), "model": document.model},
            )
            # Last, so the shared statistics row is locked only for the commit.
            await _add_stats(connection, key, len(document.chunks) - removed_chunks, added_length - removed_length)
        return outcome

    async def delete_document(self, tenant_id: str, document_id: str, version: int) -> None:
        key = {"tenant": tenant_id, "document": document_id}
        async with tenant_transaction(self._pool, tenant_id) as connection:
            state = await _lock_state(connection, key)
            removes = state.removes_chunks(version)
            if removes:
                removed_chunks, removed_length = await _remove_chunks(connection, key)
            await connection.execute(_MARK_DELETED, {**key, "version": version, "removed": removes})
            if removes:
                await _add_stats(connection, key, -removed_chunks, -removed_length)


async def _lock_state(connection: psycopg.AsyncConnection, key: dict[str, str]) -> IndexState:
    await connection.execute(_CREATE_STATE, key)
    row = await (await connection.execute(_LOCK_STATE, key)).fetchone()
    assert row is not None  # created above, and state rows are never deleted
    return IndexState(indexed_version=row[0], deleted_through_version=row[1])


async def _remove_chunks(connection: psycopg.AsyncConnection, key: dict[str, str]) -> tuple[int, int]:
    row = await (await connection.execute(_REMOVE_CHUNKS, key)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _sizes(document: DocumentVersion) -> dict[str, int]:
    """The size of each model's vectors in the document (its first chunk's; every chunk's vectors come alike)."""
    if not document.chunks:
        return {}
    return {model: int(vector.size) for model, vector in document.chunks[0].vectors(document.model).items()}


async def _insert_chunks(
    connection: psycopg.AsyncConnection, document: DocumentVersion, stored: Mapping[str, str], legacy: str | None
) -> int:
    """Insert the chunks, their vectors (under the models `stored` maps them to) and their postings; return
    their total lexical length. `legacy`: the model whose vector also goes to chunks.embedding (None: NULL)."""
    rows = chunk_vector_rows([c.vectors(document.model) for c in document.chunks], stored)
    legacy_vectors: dict[int, Vector] = {index: Vector(vector) for index, model, vector in rows if model == legacy}
    if not document.chunks:
        return 0
    chunks = document.chunks
    cursor = await connection.execute(
        _INSERT_CHUNKS,
        {
            "tenant": document.tenant_id,
            "document": document.document_id,
            "version": document.version,
            "title": document.title,
            "metadata": Jsonb(dict(document.metadata)),
            "model": document.model,
            "model_version": document.model_version,
            "chunk_ids": [c.chunk_id for c in chunks],
            "positions": [c.position for c in chunks],
            "texts": [c.text for c in chunks],
            "headings": [c.heading for c in chunks],
            "hashes": [c.content_sha256 for c in chunks],
            "token_counts": [c.token_count for c in chunks],
            "embeddings": [legacy_vectors.get(index) for index in range(len(chunks))],
            "lengths": [c.lexical_length for c in chunks],
        },
    )
    keys: dict[str, int] = dict(await cursor.fetchall())
    if rows:
        await connection.execute(
            _INSERT_VECTORS,
            {
                "tenant": document.tenant_id,
                "keys": [keys[chunks[index].chunk_id] for index, _, _ in rows],
                "models": [model for _, model, _ in rows],
                "embeddings": [Vector(vector) for _, _, vector in rows],
            },
        )
    terms: list[str] = []
    posting_keys: list[int] = []
    tfs: list[int] = []
    lengths: list[int] = []
    for chunk in chunks:
        for term, tf in chunk.term_frequencies.items():
            terms.append(term)
            posting_keys.append(keys[chunk.chunk_id])
            tfs.append(tf)
            lengths.append(chunk.lexical_length)
    if terms:
        await connection.execute(
            _INSERT_POSTINGS,
            {"tenant": document.tenant_id, "terms": terms, "keys": posting_keys, "tfs": tfs, "lengths": lengths},
        )
    return sum(c.lexical_length for c in chunks)


async def _add_stats(connection: psycopg.AsyncConnection, key: dict[str, str], chunks: int, length: int) -> None:
    if chunks == 0 and length == 0:
        return
    shard = zlib.crc32(key["document"].encode()) % STATS_SHARDS
    await connection.execute(_ADD_STATS, {**key, "shard": shard, "chunks": chunks, "length": length})

"""What a backup records and a restore must reproduce: per-table row counts and checksums, blob hashes, and the
ranked chunk ids of a fixed set of searches.

Every reading runs as the administrator (a superuser locally, so row-level security admits every tenant) inside
one REPEATABLE READ snapshot: at backup time the very snapshot pg_dump is given (`--snapshot`), so the manifest
describes exactly what the dump holds. Searches go through the retrieve service's own code (`hybrid_search` over
`PostgresSearchIndex`) with exact dense scans: pg_restore rebuilds the HNSW graph, whose approximate answers may
legitimately differ, so the check compares the data, not one graph's approximation.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql

# Text forms of timestamps and floats depend on the session: pinned, so both sides hash the same text.
_SESSION = "SET TIME ZONE 'UTC'; SET extra_float_digits = 1; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'"
_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%' AND NOT EXISTS (SELECT 1 FROM pg_depend d
      WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.ord
"""
# A few chunks spread over the whole index (every k-th by key) become the sample queries, with their vectors of
# the live embedding generation's model (migration 0016).
_SAMPLE_CHUNKS = """
SELECT tenant_id, chunk_id, text, embedding::text FROM (
    SELECT c.tenant_id, c.chunk_id, c.text, v.embedding, row_number() OVER (ORDER BY c.tenant_id, c.chunk_id) AS n,
           count(*) OVER () AS total
    FROM chunks c
    JOIN chunk_vectors v ON v.tenant_id = c.tenant_id AND v.chunk_key = c.chunk_key
    JOIN embedding_generations g ON g.model = v.model AND g.state = 'live') s
WHERE (n - 1) %% greatest(total / %(queries)s, 1) = 0 ORDER BY n LIMIT %(queries)s
"""
QUERY_WORDS = 8
TOP_K = 10


@contextmanager
def snapshot_session(database_url: str, snapshot: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A REPEATABLE READ transaction: the given exported snapshot's, or a new one (export it with
    `export_snapshot`); it stays open, and the snapshot importable, until the block ends."""
    with psycopg.connect(database_url) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        if snapshot is not None:
            connection.execute(_set_snapshot(snapshot))
        connection.execute(_SESSION)
        yield connection
        connection.rollback()


def _set_snapshot(snapshot: str) -> sql.Composed:
    # SET takes no bind parameters: the id goes in as a quoted literal.
    return sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot))


def export_snapshot(connection: psycopg.Connection[Any]) -> str:
    row = connection.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def table_checksums(connection: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """`schema.table` -> rows and the md5 of the md5s of its rows' text forms in primary-key order."""
    result: dict[str, dict[str, Any]] = {}
    for schema, table in connection.execute(_USER_TABLES).fetchall():
        qualified = sql.Identifier(schema, table)
        key = [row[0] for row in connection.execute(_PRIMARY_KEY, (f'"{schema}"."{table}"',)).fetchall()]
        # Without a primary key the row text itself orders the rows (equal rows hash alike either way).
        order = sql.SQL(", ").join(sql.Identifier("t", column) for column in key) if key else sql.SQL("t::text")
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY {order}), '')) FROM {table} t"
        ).format(order=order, table=qualified)
        row = connection.execute(query).fetchone()
        assert row is not None
        result[f"{schema}.{table}"] = {"rows": int(row[0]), "md5": str(row[1])}
    return result


def blob_inventory(connection: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every blob of the Postgres store re-hashed from its content (parts joined in order) against its recorded
    sha256: the count, bytes, mismatching keys and a digest over the sorted (tenant, key, sha256) list."""
    listing = hashlib.sha256()
    count = size = 0
    corrupt: list[str] = []
    rows = connection.execute("SELECT tenant_id, blob_key, sha256, parts FROM blobs ORDER BY tenant_id, blob_key")
    for tenant, key, recorded, parts in rows.fetchall():
        digest, length = _blob_digest(connection, tenant, key, int(parts))
        if digest != recorded:
            corrupt.append(f"{tenant}/{key}")
        listing.update(f"{tenant}\0{key}\0{recorded}\n".encode())
        count, size = count + 1, size + length
    return {
        "store": "postgres",
        "count": count,
        "bytes": size,
        "listing_sha256": listing.hexdigest(),
        "corrupt": corrupt,
    }


def _blob_digest(connection: psycopg.Connection[Any], tenant: str, key: str, parts: int) -> tuple[str, int]:
    digest, length = hashlib.sha256(), 0
    if parts == 0:
        pieces = connection.execute(
            "SELECT content FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant, key)
        ).fetchall()
    else:
        pieces = connection.execute(
            "SELECT content FROM blob_parts WHERE tenant_id = %s AND blob_key = %s ORDER BY part_no", (tenant, key)
        ).fetchall()
    for (piece,) in pieces:
        data = bytes(piece or b"")
        digest.update(data)
        length += len(data)
    return digest.hexdigest(), length


def sample_queries(connection: psycopg.Connection[Any], queries: int) -> list[dict[str, Any]]:
    """Up to `queries` searches, each the first words of a chunk spread over the index plus that chunk's vector
    (the query vector a model would give for its text, without needing the model)."""
    if queries <= 0:
        return []
    rows = connection.execute(_SAMPLE_CHUNKS, {"queries": queries}).fetchall()
    return [
        {
            "tenant_id": tenant,
            "source_chunk_id": chunk_id,
            "text": " ".join(str(text).split()[:QUERY_WORDS]),
            "vector": [float(x) for x in str(vector).strip("[]").split(",")],
            "top_k": TOP_K,
        }
        for tenant, chunk_id, text, vector in rows
    ]


async def ranked_chunk_ids(database_url: str, snapshot: str | None, queries: list[dict[str, Any]]) -> list[list[str]]:
    """Each query's hits through the retrieve service's hybrid search, best first, as chunk ids."""
    import numpy as np
    from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex  # the services' code only when needed
    from ragstream_retrieve.lexical import LexicalAnalyzer
    from ragstream_retrieve.models import SearchRequest, SearchTuning
    from ragstream_retrieve.search import hybrid_search

    index = PostgresSearchIndex(SnapshotConnections(database_url, snapshot))  # type: ignore[arg-type]
    analyzer, tuning, rankings = LexicalAnalyzer(), SearchTuning(), []
    for query in queries:
        vector = np.asarray(query["vector"], dtype=np.float32)
        request = SearchRequest(query["tenant_id"], query["text"], int(query["top_k"]), vector=vector)
        hits = await hybrid_search(index, analyzer, request, tuning)
        rankings.append([hit.chunk.chunk_id for hit in hits])
    return rankings


class SnapshotConnections:
    """Stands in for the retrieve service's connection pool: each connection it lends is a fresh one inside a
    REPEATABLE READ transaction on `snapshot` (when given), with index scans off so dense search is exact."""

    name = "backup-verify"

    def __init__(self, database_url: str, snapshot: str | None) -> None:
        self._url = database_url
        self._snapshot = snapshot

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        from pgvector.psycopg import register_vector_async

        async with await psycopg.AsyncConnection.connect(self._url) as connection:
            await register_vector_async(connection)  # as the service's pool does (a query, then its commit)
            await connection.commit()
            await connection.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            if self._snapshot is not None:
                await connection.execute(_set_snapshot(self._snapshot))
            # Dense candidates by a sequential scan and sort (exact); BM25 still reads its postings index-only.
            await connection.execute("SET LOCAL enable_indexscan = off")
            # The search opens its own (then nested: a savepoint) transaction inside this one.
            yield connection
            await connection.rollback()

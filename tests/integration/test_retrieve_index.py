"""The retrieval index against real Postgres + pgvector: writes, version rules, BM25, filters, tenant isolation.

Vectors are hand-made 384-dimensional directions, so every expected ranking is known without a model.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import create_pool, tenant_transaction
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.lexical import DEFAULT_BM25, LexicalAnalyzer, bm25_term_weight, lexical_text
from ragstream_retrieve.models import (
    ChunkToIndex,
    DocumentVersion,
    RetrievalMode,
    SearchFilters,
    SearchRequest,
    SearchTuning,
    UpsertOutcome,
)
from ragstream_retrieve.search import hybrid_search

pytestmark = pytest.mark.integration
DIMS = 384
ANALYZER = LexicalAnalyzer()


def direction(*weights: tuple[int, float]) -> np.ndarray:
    """A unit vector mixing a few axes: direction((0, 1.0), (1, 0.2))."""
    vector = np.zeros(DIMS, dtype=np.float32)
    for axis, weight in weights:
        vector[axis] = weight
    return vector / np.linalg.norm(vector)


def document(
    tenant: str,
    document_id: str,
    version: int,
    texts: Sequence[str],
    axes: Sequence[int],
    metadata: dict[str, str] | None = None,
    title: str = "",
) -> DocumentVersion:
    chunks = [
        ChunkToIndex(
            chunk_id=f"{document_id}-v{version}-{position}",
            position=position,
            text=text,
            heading="",
            content_sha256=f"{document_id}-{version}-{position}",
            token_count=len(text.split()),
            embedding=direction((axis, 1.0)),
            term_frequencies=ANALYZER.term_frequencies(lexical_text(title, "", text)),
        )
        for position, (text, axis) in enumerate(zip(texts, axes, strict=True))
    ]
    return DocumentVersion(tenant, document_id, version, title, metadata or {}, "test-model", "1", chunks)


@pytest.fixture(scope="module")
async def pool(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    # The retrieve service's own login: its grants suffice, and row-level security binds it.
    pool = create_pool(service_database_urls["retrieve"], max_size=4, name="test-retrieve")
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def search(
    pool: AsyncConnectionPool,
    tenant: str,
    text: str,
    mode: RetrievalMode,
    vector: np.ndarray | None = None,
    filters: SearchFilters | None = None,
    top_k: int = 5,
) -> list[str]:
    request = SearchRequest(tenant, text, top_k, mode, filters or SearchFilters(), vector)
    hits = await hybrid_search(PostgresSearchIndex(pool), ANALYZER, request, SearchTuning())
    return [hit.chunk.chunk_id for hit in hits]


async def chunk_ids(pool: AsyncConnectionPool, tenant: str, document_id: str) -> list[str]:
    async with tenant_transaction(pool, tenant) as connection:
        cursor = await connection.execute(
            "SELECT chunk_id FROM chunks WHERE document_id = %s ORDER BY position", (document_id,)
        )
        return [row[0] for row in await cursor.fetchall()]


async def corpus_stats(pool: AsyncConnectionPool, tenant: str) -> tuple[int, int, int]:
    """(chunk count, total lexical length, postings) as the statistics tables say."""
    async with tenant_transaction(pool, tenant) as connection:
        row = await (
            await connection.execute(
                "SELECT coalesce(sum(chunk_count), 0), coalesce(sum(total_length), 0),"
                " (SELECT count(*) FROM chunk_terms) FROM lexical_stats"
            )
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def test_indexed_chunks_are_found_dense_lexical_and_hybrid(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    docs = [
        document(tenant, "kinase", 1, ["Protein kinase inhibitors slow tumour growth."], [0]),
        document(tenant, "ocean", 1, ["Ocean currents carry heat towards the poles."], [1]),
        document(tenant, "mixed", 1, ["Kinase activity in marine plankton."], [2]),
    ]
    for doc in docs:
        assert await writer.upsert_document(doc) is UpsertOutcome.INDEXED
    near_ocean = direction((1, 1.0), (2, 0.5))
    assert await search(pool, tenant, "", RetrievalMode.DENSE, near_ocean, top_k=2) == ["ocean-v1-0", "mixed-v1-0"]
    assert await search(pool, tenant, "kinase inhibitors", RetrievalMode.LEXICAL) == ["kinase-v1-0", "mixed-v1-0"]
    # Lexically kinase, densely the ocean: fusion ranks the chunk both agree on ("mixed") first.
    hybrid = await search(pool, tenant, "kinase", RetrievalMode.HYBRID, near_ocean)
    assert hybrid[0] == "mixed-v1-0" and set(hybrid) == {"kinase-v1-0", "ocean-v1-0", "mixed-v1-0"}


async def test_lexical_scores_are_exact_bm25(pool: AsyncConnectionPool, tenant: str) -> None:
    texts = ["cell cell growth", "cell division in yeast cells and more words here", "unrelated text entirely"]
    writer = PostgresChunkIndex(pool)
    for i, text in enumerate(texts):
        await writer.upsert_document(document(tenant, f"d{i}", 1, [text], [i]))
    frequencies = [ANALYZER.term_frequencies(t) for t in texts]
    lengths = [sum(f.values()) for f in frequencies]
    average = sum(lengths) / len(lengths)
    expected = {}
    for i, tf in enumerate(frequencies):
        score = sum(
            bm25_term_weight(tf[term], sum(term in f for f in frequencies), len(texts), lengths[i], average)
            for term in ("cell", "growth")
            if term in tf
        )
        if score:
            expected[f"d{i}"] = score
    candidates = await PostgresSearchIndex(pool).lexical_candidates(
        tenant, {"cell": 1.0, "growth": 1.0}, SearchFilters(), 10, DEFAULT_BM25
    )
    rows = await PostgresSearchIndex(pool).fetch_chunks(tenant, [c.key for c in candidates])
    found = {rows[c.key].document_id: c.score for c in candidates}
    assert found == pytest.approx(expected)
    assert list(found) == sorted(expected, key=lambda d: -expected[d])


async def test_new_version_replaces_chunks_and_statistics(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "doc", 1, ["alpha beta", "gamma delta", "epsilon"], [0, 1, 2]))
    assert await corpus_stats(pool, tenant) == (3, 5, 5)
    assert await writer.upsert_document(document(tenant, "doc", 2, ["zeta eta theta"], [3])) is UpsertOutcome.INDEXED
    assert await chunk_ids(pool, tenant, "doc") == ["doc-v2-0"]
    assert await corpus_stats(pool, tenant) == (1, 3, 3)
    assert await search(pool, tenant, "alpha", RetrievalMode.LEXICAL) == []
    assert await search(pool, tenant, "theta", RetrievalMode.LEXICAL) == ["doc-v2-0"]


async def test_late_older_version_and_redelivery_change_nothing(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "doc", 3, ["newest text"], [0]))
    assert await writer.upsert_document(document(tenant, "doc", 2, ["older text"], [1])) is UpsertOutcome.SUPERSEDED
    assert await writer.upsert_document(document(tenant, "doc", 3, ["newest text"], [0])) is (
        UpsertOutcome.ALREADY_INDEXED
    )
    assert await chunk_ids(pool, tenant, "doc") == ["doc-v3-0"]
    assert await corpus_stats(pool, tenant) == (1, 2, 2)


async def test_concurrent_versions_leave_the_newest(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    versions = [document(tenant, "doc", v, [f"version {v} text", "shared"], [v, 10]) for v in (1, 2, 3)]
    await asyncio.gather(*(writer.upsert_document(doc) for doc in reversed(versions)))
    assert await chunk_ids(pool, tenant, "doc") == ["doc-v3-0", "doc-v3-1"]
    assert (await corpus_stats(pool, tenant))[0] == 2


async def test_delete_removes_chunks_and_keeps_older_versions_out(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "doc", 2, ["remove me soon"], [0]))
    await writer.upsert_document(document(tenant, "other", 1, ["keep me"], [1]))
    await writer.delete_document(tenant, "doc", 2)
    assert await chunk_ids(pool, tenant, "doc") == []
    assert await corpus_stats(pool, tenant) == (1, 2, 2)  # "keep me"
    assert await writer.upsert_document(document(tenant, "doc", 1, ["late v1"], [0])) is UpsertOutcome.DELETED
    assert await writer.upsert_document(document(tenant, "doc", 2, ["again v2"], [0])) is UpsertOutcome.DELETED
    assert await chunk_ids(pool, tenant, "doc") == []
    await writer.delete_document(tenant, "doc", 2)  # redelivered delete: harmless
    # A later version brings the document back.
    assert await writer.upsert_document(document(tenant, "doc", 3, ["back again"], [0])) is UpsertOutcome.INDEXED
    assert await chunk_ids(pool, tenant, "doc") == ["doc-v3-0"]


async def test_delete_of_an_older_version_spares_the_newer_one(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "doc", 4, ["current text"], [0]))
    await writer.delete_document(tenant, "doc", 3)
    assert await chunk_ids(pool, tenant, "doc") == ["doc-v4-0"]


async def test_filters_restrict_results(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "en", 1, ["solar panels"], [0], {"lang": "en", "team": "a"}))
    await writer.upsert_document(document(tenant, "de", 1, ["solar panels cheap"], [1], {"lang": "de", "team": "a"}))
    await writer.upsert_document(document(tenant, "fr", 1, ["solar power"], [2], {"lang": "fr"}))
    vector = direction((0, 1.0), (1, 0.9), (2, 0.8))
    for mode in RetrievalMode:
        by_meta = await search(pool, tenant, "solar", mode, vector, SearchFilters(metadata={"lang": "de"}))
        assert by_meta == ["de-v1-0"], mode
        by_docs = await search(pool, tenant, "solar", mode, vector, SearchFilters(document_ids=("en", "fr")))
        assert set(by_docs) == {"en-v1-0", "fr-v1-0"}, mode
        both = SearchFilters(document_ids=("en", "fr"), metadata={"team": "a"})
        assert await search(pool, tenant, "solar", mode, vector, both) == ["en-v1-0"], mode


async def test_near_duplicate_chunks_are_returned_once(pool: AsyncConnectionPool, tenant: str) -> None:
    writer = PostgresChunkIndex(pool)
    await writer.upsert_document(document(tenant, "a", 1, ["quarterly revenue report"], [0]))
    await writer.upsert_document(document(tenant, "b", 1, ["quarterly revenue report"], [0]))
    await writer.upsert_document(document(tenant, "c", 1, ["revenue forecast"], [1]))
    found = await search(pool, tenant, "quarterly revenue", RetrievalMode.HYBRID, direction((0, 1.0)))
    assert len(found) == 2 and found[-1] == "c-v1-0"


async def test_tenants_are_isolated_by_row_level_security(pool: AsyncConnectionPool, tenant: str) -> None:
    other = f"{tenant}-b"
    await PostgresChunkIndex(pool).upsert_document(document(tenant, "secret", 1, ["confidential merger plan"], [0]))
    vector = direction((0, 1.0))
    assert await search(pool, other, "merger", RetrievalMode.HYBRID, vector) == []
    async with tenant_transaction(pool, other) as connection:
        # No tenant predicate at all: row-level security alone hides tenant A's rows.
        for table in ("chunks", "chunk_vectors", "chunk_terms", "lexical_stats", "document_index_state"):
            count = await (await connection.execute(f"SELECT count(*) FROM {table}")).fetchone()
            assert count == (0,), table
        cursor = await connection.execute(
            "SELECT chunk_key FROM chunk_vectors ORDER BY embedding <=> %s LIMIT 5", (str(vector.tolist()),)
        )
        assert await cursor.fetchall() == []
    async with tenant_transaction(pool, tenant) as connection:
        keys = [r[0] for r in await (await connection.execute("SELECT chunk_key FROM chunks")).fetchall()]
    assert keys and await PostgresSearchIndex(pool).fetch_chunks(other, keys) == {}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with tenant_transaction(pool, other) as connection:
            await connection.execute(
                "INSERT INTO chunk_terms (tenant_id, term, chunk_key, tf, chunk_length) VALUES (%s, 'x', 1, 1, 1)",
                (tenant,),
            )

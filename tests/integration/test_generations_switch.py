"""Switching the embedding model on a running system (docs/embedding-generations.md): the retrieve service as
deployed (its composition root on real Kafka, Postgres and gRPC) and a real embed service (both models, the real
weights) whose EMBED_MODEL changes from MiniLM to WordLlama while searches keep arriving.

The index is re-embedded from the stored chunk texts into a new generation beside the live one, which switches in
when complete: chunks are neither fetched, parsed nor re-chunked (their rows stay as they were), searches never
fail, and dense search then runs on 256-dimension vectors. A rollback brings MiniLM back, rebuilding the vector of
a chunk indexed while WordLlama was live. The test runs in a database of its own: it switches the live model.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from psycopg import sql
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.db import create_pool
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.migrate import apply_migrations
from ragstream_devstack.processes import free_port
from ragstream_devstack.restore import with_database
from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.adapters.grpc_api import EmbedServicer
from ragstream_embed.adapters.served_models import ServedModels
from ragstream_embed.models import EncoderOptions
from ragstream_retrieve.adapters.pg_generations import PostgresGenerations
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.app import start
from ragstream_retrieve.config import RetrieveSettings
from ragstream_retrieve.generations import main as generations_main
from ragstream_retrieve.generations import run as generations_command
from ragstream_retrieve.generations_model import GenerationError
from ragstream_retrieve.lexical import LexicalAnalyzer, lexical_text
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion
from support.tokens import TokenKit

pytestmark = pytest.mark.integration
KIT = TokenKit()
MINILM, WORDLLAMA = "all-minilm-l6-v2", "wordllama-l2-supercat"
TEXTS = [
    "The cat sat on the warm windowsill and purred.",
    "The central bank raised interest rates to curb inflation.",
    "Glaciers retreat as summer temperatures rise in the Alps.",
    "The striker scored twice in the second half of the final.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The orchestra tuned their violins before the symphony began.",
]
LATE_TEXT = "A lighthouse keeper watched the storm roll across the harbour."
ANALYZER = LexicalAnalyzer()


class SwitchableModels:
    """The embed service's models across a rolling restart with a new EMBED_MODEL: `current` changes at once,
    so no call finds the service away (a restart's gap is not what this test is about)."""

    def __init__(self, current: ServedModels) -> None:
        self.current = current

    async def encoder(self, model: str) -> Any:
        return await self.current.encoder(model)


async def eventually(condition: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := await condition():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"not met within {timeout_s} s")


@pytest.fixture
def database(migrated_database: str, service_database_urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """A new migrated database: (admin, retrieve) URLs."""
    name = f"generations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    urls = {
        "admin": with_database(migrated_database, name),
        "retrieve": with_database(service_database_urls["retrieve"], name),
    }
    apply_migrations(urls["admin"])
    yield urls
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
async def encoders() -> AsyncIterator[dict[str, Encoder]]:
    loaded = {
        key: await asyncio.to_thread(Encoder.load, EncoderOptions(model=key, batch_size=8))
        for key in (MINILM, WORDLLAMA)
    }
    yield loaded
    for encoder in loaded.values():
        encoder.close()


def _document(
    tenant: str, document_id: str, texts: list[str], encoder: Encoder, vectors: np.ndarray
) -> DocumentVersion:
    chunks = [
        ChunkToIndex(
            chunk_id=f"{document_id}-{position}",
            position=position,
            text=text,
            heading="",
            content_sha256=f"{document_id}-{position}",
            token_count=len(text.split()),
            embedding=vector,
            term_frequencies=ANALYZER.term_frequencies(lexical_text("", "", text)),
        )
        for position, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]
    return DocumentVersion(tenant, document_id, 1, "", {}, encoder.model_name, encoder.model_version, chunks)


async def _search(stub: Any, tenant: str, **fields: Any) -> services_pb2.SearchResponse:
    metadata = KIT.metadata(tenant, ["search"], ["retrieve"])
    request = services_pb2.SearchRequest(tenant_id=tenant, top_k=3, **fields)
    response: services_pb2.SearchResponse = await stub.Search(request, metadata=metadata, timeout=10)
    return response


class Searcher:
    """Searches the whole time (hybrid, embedded by the live model); every one must answer, and find the cat."""

    def __init__(self, stub: Any, tenant: str) -> None:
        self.stub, self.tenant = stub, tenant
        self.outcomes: list[str] = []
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = await _search(self.stub, self.tenant, query="cat on the windowsill")
                self.outcomes.append("cat" if "cat sat" in response.chunks[0].text else "other")
            except grpc.aio.AioRpcError as exc:
                self.outcomes.append(f"error {exc.code().name}: {exc.details()}")
            await asyncio.sleep(0.02)

    async def stop(self) -> list[str]:
        self._stop.set()
        await self._task
        return self.outcomes


async def _retrieve_service(
    exits: AsyncExitStack, stop: asyncio.Event, database_url: str, kafka: KafkaSettings, embed_port: int
) -> tuple[Any, list[asyncio.Future[None]]]:
    """The retrieve service's composition root, re-embedding every 0.2 s: a RetrieveService stub and its loops."""
    run = uuid.uuid4().hex[:8]
    settings = RetrieveSettings(
        kafka=kafka,
        DATABASE_URL=database_url,
        grpc_port=free_port("127.0.0.1"),
        metrics_port=0,
        index_group_id=f"test-generations-index-{run}",
        query_group_id=f"test-generations-query-{run}",
        embed_address=f"127.0.0.1:{embed_port}",
        db_pool_size=4,
        tokens=KIT.settings("retrieve"),
        generations_cache_s=0.1,
        reembed_interval_s=0.2,
        reembed_batch_size=4,
    )
    loops = [asyncio.ensure_future(loop) for loop in await start(settings, exits, stop)]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
    exits.push_async_callback(channel.close)
    return services_pb2_grpc.RetrieveServiceStub(channel), loops


async def _embed_service(exits: AsyncExitStack, models: SwitchableModels) -> int:
    server = grpc.aio.server()
    services_pb2_grpc.add_EmbedServiceServicer_to_server(EmbedServicer(models), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    exits.push_async_callback(server.stop, None)
    return port


async def _index_corpus(index: PostgresChunkIndex, tenant: str, minilm: Encoder) -> None:
    """The corpus, indexed by MiniLM (one chunk per document)."""
    vectors = await minilm.encode_documents(TEXTS)
    for number, (text, vector) in enumerate(zip(TEXTS, vectors, strict=True)):
        await index.upsert_document(_document(tenant, f"doc-{number}", [text], minilm, vector[None, :]))


async def test_switching_the_model_re_embeds_stored_texts_while_searches_keep_answering(
    database: dict[str, str], kafka_topics: str, kafka_admin: KafkaSettings, encoders: dict[str, Encoder]
) -> None:
    tenant, admin = f"gen-{uuid.uuid4().hex[:8]}", database["admin"]
    minilm, wordllama = encoders[MINILM], encoders[WORDLLAMA]
    models = SwitchableModels(ServedModels(minilm, EncoderOptions(model=MINILM, batch_size=8)))
    async with AsyncExitStack() as exits:
        embed_port = await _embed_service(exits, models)
        pool = create_pool(database["retrieve"], max_size=2, name="test-generations")
        await pool.open(wait=True)
        exits.push_async_callback(pool.close)
        index = PostgresChunkIndex(pool)
        await _index_corpus(index, tenant, minilm)
        before = _chunk_rows(admin)
        stop = asyncio.Event()
        stub, loops = await _retrieve_service(exits, stop, database["retrieve"], kafka_admin, embed_port)
        searcher = Searcher(stub, tenant)
        try:
            await eventually(lambda: _true(len(searcher.outcomes) >= 5))
            assert _live(admin) == ("sentence-transformers/all-MiniLM-L6-v2", 384)

            # EMBED_MODEL=wordllama-l2-supercat: the embed service's primary changes; retrieve builds and switches.
            models.current = ServedModels(wordllama, EncoderOptions(model=WORDLLAMA, batch_size=8))
            await eventually(lambda: _true(_live(admin)[1] == 256))
            assert _live(admin) == ("dleemiller/word-llama-l2-supercat@256", 256)
            assert _vector_counts(admin) == {
                "dleemiller/word-llama-l2-supercat@256": len(TEXTS),
                "sentence-transformers/all-MiniLM-L6-v2": len(TEXTS),
            }
            # Re-embedded in place: the same chunk rows (keys, ids, texts, indexing time), nothing re-indexed.
            assert _chunk_rows(admin) == before
            await _dense_search_takes(stub, tenant, wordllama, refuses=minilm)

            # A document indexed while WordLlama is live has only its vector; a rollback rebuilds MiniLM's.
            [late] = await wordllama.encode_documents([LATE_TEXT])
            await index.upsert_document(_document(tenant, "late", [LATE_TEXT], wordllama, late[None, :]))
            status = await generations_command("rollback", None, database["retrieve"])
            assert [g["state"] for g in status] == ["building", "live"]
            await eventually(lambda: _true(_live(admin)[1] == 384))
            assert _vector_counts(admin)["sentence-transformers/all-MiniLM-L6-v2"] == len(TEXTS) + 1
            [storm] = await minilm.encode_queries(["storm at the harbour"])
            response = await _search(stub, tenant, query="storm", retrieval=2, query_vector=storm.tolist())
            assert "lighthouse" in response.chunks[0].text
            status = await generations_command("status", None, database["retrieve"])
            assert [(g["state"], g["dimensions"]) for g in status] == [("live", 384), ("retired", 256)]
        finally:
            outcomes = await searcher.stop()
            stop.set()
        await asyncio.gather(*loops)
    errors = [o for o in outcomes if o.startswith("error")]
    assert errors == [] and outcomes.count("cat") == len(outcomes), outcomes[-5:]


async def _dense_search_takes(stub: Any, tenant: str, live: Encoder, refuses: Encoder) -> None:
    """Dense search runs on the live model's vectors: its query vectors are taken, the other model's refused."""
    [accepted] = await live.encode_queries(["cat on the windowsill"])
    response = await _search(stub, tenant, query="cat", retrieval=2, query_vector=accepted.tolist())
    assert "cat sat" in response.chunks[0].text
    [refused_vector] = await refuses.encode_queries(["cat on the windowsill"])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _search(stub, tenant, query="cat", retrieval=2, query_vector=refused_vector.tolist())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def _true(value: bool) -> bool:
    return value


def _live(url: str) -> tuple[str, int]:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT model, dimensions FROM embedding_generations WHERE state = 'live'").fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _vector_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT model, count(*) FROM chunk_vectors GROUP BY model").fetchall()
    return {str(model): int(count) for model, count in rows}


def _chunk_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT chunk_key, chunk_id, text, version, indexed_at FROM chunks ORDER BY chunk_key"
        ).fetchall()


async def test_operator_commands_move_generations_between_states(
    database: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = create_pool(database["retrieve"], max_size=1, name="test-generation-commands")
    await pool.open(wait=True)
    try:
        store = PostgresGenerations(pool)
        created = await store.create("dleemiller/word-llama-l2-supercat@256", 256)
        assert created is not None and await store.create("another/model", 8) is None  # one build at a time
        assert [g["state"] for g in await generations_command("cancel", None, database["retrieve"])] == [
            "live",
            "failed",
        ]
        with pytest.raises(GenerationError, match="no retired generation"):
            await generations_command("rollback", None, database["retrieve"])
        status = await generations_command("activate", created.id, database["retrieve"])
        assert [g["state"] for g in status] == ["live", "building"]
        assert status[1]["chunks_total"] == 0 and status[1]["chunks_done"] == 0
    finally:
        await pool.close()
    # The command line: refusals are a message and exit status 2, not a traceback.
    assert await asyncio.to_thread(generations_main, ["activate", "1"], database["retrieve"]) == 2
    assert "is live" in capsys.readouterr().err

"""Retrieve service composition root: the indexer (chunks -> Postgres), the query consumer (hybrid search ->
gateway reply + generate worker) and the RetrieveService gRPC API, in one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

from prometheus_client import Counter, Histogram
from rag.v1 import services_pb2_grpc
from ragstream_common.kafka import ConsumerOptions, Envelope
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, QUERIES_EMBEDDED
from ragstream_common.service import open_pool, run_service, start_consumer, start_grpc, start_publisher

from ragstream_retrieve.adapters.grpc_api import RetrieveServicer
from ragstream_retrieve.adapters.grpc_clients import GrpcQueryEmbedder, GrpcReplyClient
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.config import RetrieveSettings
from ragstream_retrieve.indexing import Indexer
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.querying import QueryResponder
from ragstream_retrieve.wire import TopKLimits

DOCUMENTS = Counter("ragstream_retrieve_documents_total", "Index events by outcome", ["outcome"])
QUERIES = Counter("ragstream_retrieve_queries_total", "Queries by outcome", ["outcome"])
QUERY_BATCH_SECONDS = Histogram(
    "ragstream_retrieve_query_batch_seconds", "Time to search and answer a batch of queries",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def _export(outcomes: dict[str, int], counter: Counter, before: dict[str, int]) -> None:
    for outcome, total in outcomes.items():
        counter.labels(outcome).inc(total - before.get(outcome, 0))


async def start(settings: RetrieveSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    pool = await open_pool(stack, settings, max_size=settings.db_pool_size)
    publisher = await start_publisher(stack, settings)
    query_publisher = await start_publisher(stack, settings, lane="queries")
    replies = GrpcReplyClient(settings.reply_timeout_s)
    stack.push_async_callback(replies.close)
    embedder = GrpcQueryEmbedder(settings.embed_address, settings.embed_timeout_s)
    stack.push_async_callback(embedder.close)
    analyzer = LexicalAnalyzer()
    search_index = PostgresSearchIndex(pool, settings.hnsw())
    limits = TopKLimits(settings.default_top_k, settings.max_top_k)
    tuning = settings.search_tuning()
    dimensions = settings.embedding_dimensions

    servicer = RetrieveServicer(search_index, analyzer, embedder, tuning, limits, dimensions)
    server = await start_grpc(
        stack, settings, ["rag.v1.RetrieveService"],
        [partial(services_pb2_grpc.add_RetrieveServiceServicer_to_server, servicer)],
    )
    indexer = Indexer(PostgresChunkIndex(pool), publisher, analyzer, dimensions, settings.index_concurrency)
    responder = QueryResponder(search_index, analyzer, query_publisher, replies, tuning, limits, dimensions)

    async def on_chunks(batch: Sequence[Envelope[Any]]) -> None:
        before = dict(indexer.outcomes)
        try:
            await indexer.handle_batch(batch)
        finally:
            _export(indexer.outcomes, DOCUMENTS, before)

    async def on_queries(batch: Sequence[Envelope[Any]]) -> None:
        before = dict(responder.outcomes)
        started = time.perf_counter()
        try:
            await responder.handle_batch(batch)
        finally:
            QUERY_BATCH_SECONDS.observe(time.perf_counter() - started)
            _export(responder.outcomes, QUERIES, before)

    index_options = ConsumerOptions(
        group_id=settings.index_group_id,
        topics=(CHUNKS_EMBEDDED.name,),
        max_batch=settings.index_batch_max,
        batch_wait_ms=settings.index_batch_wait_ms,
    )
    query_options = ConsumerOptions(
        group_id=settings.query_group_id,
        topics=(QUERIES_EMBEDDED.name,),
        max_batch=settings.query_batch_max,
        batch_wait_ms=settings.query_batch_wait_ms,
    )
    index_consumer = await start_consumer(stack, settings, index_options, on_chunks, publisher)
    query_consumer = await start_consumer(stack, settings, query_options, on_queries, query_publisher)
    await server.mark_serving()
    return [index_consumer.run(stop), query_consumer.run(stop)]


def main() -> None:
    run_service(RetrieveSettings, start)


if __name__ == "__main__":
    main()

"""Retrieve service composition root: the indexer (chunks -> Postgres), the query consumer (hybrid search ->
gateway reply + generate worker) and the RetrieveService gRPC API, in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from functools import partial

from rag.v1 import services_pb2_grpc
from ragstream_common.grpc_server import grpc_channel
from ragstream_common.kafka import ConsumerOptions
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, QUERIES_EMBEDDED
from ragstream_common.reply_client import GrpcReplyClient
from ragstream_common.service import (
    open_pool,
    run_service,
    serve_while_healthy,
    start_consumer,
    start_grpc,
    start_publisher,
)

from ragstream_retrieve.adapters.grpc_api import RetrieveServicer
from ragstream_retrieve.adapters.grpc_clients import GrpcQueryEmbedder, GrpcTextEmbedder
from ragstream_retrieve.adapters.pg_generations import PostgresGenerations
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.adapters.routes import INDEX_ROUTES, QUERY_ROUTES
from ragstream_retrieve.config import RetrieveSettings
from ragstream_retrieve.indexing import Indexer
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.querying import QueryResponder
from ragstream_retrieve.reembed import Reembedder
from ragstream_retrieve.wire import TopKLimits


async def start(settings: RetrieveSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    pool = await open_pool(stack, settings, max_size=settings.db_pool_size)
    publisher = await start_publisher(stack, settings)
    # QueryRetrieved gets a producer of its own, so it never waits behind the indexer's status events.
    query_publisher = await start_publisher(stack, settings, lane="queries")
    # Tokens for the onward calls: embed (for a Search caller's tenant) and the gateway's ReplyService.
    tokens = settings.tokens.required_minter(settings.service_name)
    dial = partial(grpc_channel, tls=settings.grpc_tls)
    replies = GrpcReplyClient(
        settings.reply_timeout_s,
        max_channels=settings.reply_max_channels,
        channel_factory=dial,
        targets=settings.reply_targets.targets(),
        tokens=tokens,
    )
    stack.push_async_callback(replies.close)
    embedder = GrpcQueryEmbedder(settings.embed_address, tokens, settings.embed_timeout_s, dial)
    stack.push_async_callback(embedder.close)
    # Re-embedding has a channel of its own: its large calls never delay a Search's query embedding.
    text_embedder = GrpcTextEmbedder(settings.embed_address, tokens, settings.reembed_timeout_s, dial)
    stack.push_async_callback(text_embedder.close)
    generations = PostgresGenerations(pool, settings.generations_cache_s)
    analyzer = LexicalAnalyzer()
    search_index = PostgresSearchIndex(pool, settings.hnsw(), generations)
    limits = TopKLimits(settings.default_top_k, settings.max_top_k)
    tuning = settings.search_tuning()
    dimensions = settings.embedding_dimensions

    servicer = RetrieveServicer(search_index, analyzer, embedder, tuning, limits, dimensions, generations)
    server = await start_grpc(
        stack,
        settings,
        ["rag.v1.RetrieveService"],
        [partial(services_pb2_grpc.add_RetrieveServiceServicer_to_server, servicer)],
        verifier=settings.tokens.verifier(),
        tls=settings.grpc_tls,
    )
    status_sink = RoutedEventSink(publisher, INDEX_ROUTES)
    # Vector sizes are checked per model against its generation, in the write transaction.
    indexer = Indexer(PostgresChunkIndex(pool), status_sink, analyzer, None, settings.index_concurrency)
    query_sink = RoutedEventSink(query_publisher, QUERY_ROUTES)
    responder = QueryResponder(search_index, analyzer, query_sink, replies, tuning, limits, dimensions, generations)

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
    index_consumer = await start_consumer(stack, settings, index_options, indexer.handle_batch, publisher)
    query_consumer = await start_consumer(stack, settings, query_options, responder.handle_batch, query_publisher)
    await serve_while_healthy(stack, settings, server, pool=pool, consumers=[index_consumer, query_consumer])
    loops: list[Awaitable[None]] = [index_consumer.run(stop), query_consumer.run(stop)]
    if settings.reembed_enabled:
        reembedder = Reembedder(generations, text_embedder, settings.reembed_batch_size)
        loops.append(reembedder.run(stop, settings.reembed_interval_s))
    return loops


def main() -> None:
    run_service(RetrieveSettings, start)


if __name__ == "__main__":
    main()

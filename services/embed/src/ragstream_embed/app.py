"""Embed service composition root: model, cache, Kafka consumers for chunks and queries, gRPC API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from functools import partial

from rag.v1 import chunks_pb2, services_pb2_grpc
from ragstream_common.events import Envelope
from ragstream_common.kafka import ConsumerOptions
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import CHUNKS_READY, QUERIES_REQUESTED
from ragstream_common.logs import get_logger
from ragstream_common.service import (
    open_pool,
    run_service,
    serve_while_healthy,
    start_consumer,
    start_grpc,
    start_publisher,
)

from ragstream_embed.adapters.cache_pg import PostgresEmbeddingCache
from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.adapters.grpc_api import EmbedServicer
from ragstream_embed.adapters.routes import CHUNK_ROUTES, QUERY_ROUTES
from ragstream_embed.adapters.served_models import ServedModels
from ragstream_embed.config import EmbedSettings
from ragstream_embed.handlers import ChunkEvent, QueryEvent, embed_chunk_batch, embed_query_batch

log = get_logger(__name__)


def chunks_in(message: object) -> int:
    """The weight of a message in a document micro-batch: the chunks it carries."""
    return len(message.chunks) if isinstance(message, chunks_pb2.ChunksReady) else 1


async def start(settings: EmbedSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    encoder = await asyncio.to_thread(Encoder.load, settings.encoder_options())
    stack.callback(encoder.close)
    log.info(
        "model loaded",
        model=encoder.model_name,
        version=encoder.model_version,
        backend=settings.backend,
        query_backend=settings.query_backend or settings.backend,
        dimensions=encoder.dimensions,
        threads=encoder.thread_counts(),
    )
    pool = await open_pool(stack, settings, max_size=4)
    cache = PostgresEmbeddingCache(pool)
    # The other models the index's generations need, besides EMBED_MODEL (docs/embedding-generations.md).
    served = ServedModels(encoder, settings.encoder_options())
    stack.callback(served.close)
    publisher = await start_publisher(stack, settings)
    # Queries get their own producer, so a query never waits behind a large ChunksEmbedded send.
    query_publisher = await start_publisher(stack, settings, lane="queries")
    server = await start_grpc(
        stack,
        settings,
        ["rag.v1.EmbedService"],
        [partial(services_pb2_grpc.add_EmbedServiceServicer_to_server, EmbedServicer(served))],
        verifier=settings.tokens.verifier(),
        tls=settings.grpc_tls,
    )

    chunk_options = ConsumerOptions(
        group_id=settings.chunk_group_id,
        topics=(CHUNKS_READY.name,),
        max_batch=settings.batch_max_messages,
        max_batch_weight=settings.batch_max_chunks,
        weigh=chunks_in,
        batch_wait_ms=settings.batch_max_wait_ms,
    )
    query_options = ConsumerOptions(
        group_id=settings.query_group_id,
        topics=(QUERIES_REQUESTED.name,),
        max_batch=settings.query_batch_max,
        batch_wait_ms=settings.query_batch_wait_ms,
    )
    chunk_sink = RoutedEventSink(publisher, CHUNK_ROUTES)
    query_sink = RoutedEventSink(query_publisher, QUERY_ROUTES)

    async def on_chunks(batch: Sequence[Envelope[ChunkEvent]]) -> None:
        await embed_chunk_batch(batch, encoder, cache, chunk_sink, served.extras())

    async def on_queries(batch: Sequence[Envelope[QueryEvent]]) -> None:
        await embed_query_batch(batch, encoder, query_sink, served.extras())

    chunk_consumer = await start_consumer(stack, settings, chunk_options, on_chunks, publisher)
    query_consumer = await start_consumer(stack, settings, query_options, on_queries, query_publisher)
    await serve_while_healthy(stack, settings, server, pool=pool, consumers=[chunk_consumer, query_consumer])
    following = served.follow(pool, stop, settings.generations_refresh_s)
    return [chunk_consumer.run(stop), query_consumer.run(stop), following]


def main() -> None:
    run_service(EmbedSettings, start)


if __name__ == "__main__":
    main()

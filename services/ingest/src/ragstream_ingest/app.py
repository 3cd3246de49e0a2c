"""Ingest service composition root: blob store, fetcher, chunker, Kafka consumer, gRPC health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from functools import partial

from ragstream_common.blobs import build_blob_store
from ragstream_common.kafka import ConsumerOptions
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_common.service import (
    open_pool,
    run_service,
    serve_while_healthy,
    start_consumer,
    start_grpc,
    start_publisher,
)

from ragstream_ingest.adapters.content import UriContentSource
from ragstream_ingest.adapters.routes import INGEST_ROUTES
from ragstream_ingest.chunker import Chunker
from ragstream_ingest.config import IngestSettings
from ragstream_ingest.handlers import ingest_batch


async def start(settings: IngestSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    chunker = Chunker(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    pool = await open_pool(stack, settings, max_size=4) if settings.blobs.store == "postgres" else None
    blobs = build_blob_store(settings.blobs, pool)
    source = UriContentSource(
        blobs,
        timeout_s=settings.fetch_timeout_s,
        max_bytes=settings.fetch_max_bytes,
        max_blob_bytes=settings.max_document_bytes,
        allow_private_networks=settings.fetch_allow_private_networks,
    )
    publisher = await start_publisher(stack, settings)
    server = await start_grpc(stack, settings, ["rag.v1.IngestWorker"], [])
    options = ConsumerOptions(
        group_id=settings.group_id, topics=(DOCUMENTS_RECEIVED.name,), max_batch=settings.max_batch
    )
    handler = partial(ingest_batch, source=source, chunker=chunker, sink=RoutedEventSink(publisher, INGEST_ROUTES))
    consumer = await start_consumer(stack, settings, options, handler, publisher)
    await serve_while_healthy(stack, settings, server, pool=pool, consumers=[consumer])
    return [consumer.run(stop)]


def main() -> None:
    run_service(IngestSettings, start)


if __name__ == "__main__":
    main()

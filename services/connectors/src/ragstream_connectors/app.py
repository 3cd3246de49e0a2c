"""Connectors worker composition root: state store, blob store, secret sealer, providers, Kafka consumer,
scheduler and gRPC health."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

from ragstream_common.blobs import build_blob_store
from ragstream_common.kafka import ConsumerOptions
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
from ragstream_common.secret_envelope import build_secret_sealer
from ragstream_common.service import (
    open_pool,
    run_service,
    serve_while_healthy,
    start_consumer,
    start_grpc,
    start_publisher,
)

from ragstream_connectors.adapters.routes import CONNECTORS_ROUTES
from ragstream_connectors.adapters.secrets import ConnectorSecrets
from ragstream_connectors.adapters.state_pg import PostgresConnectorStore
from ragstream_connectors.config import ConnectorsSettings
from ragstream_connectors.handlers import WorkerPorts, handle_connector_events
from ragstream_connectors.providers.factory import build_provider
from ragstream_connectors.scheduler import ScheduleOptions, Scheduler
from ragstream_connectors.sync import SyncOptions


async def start(settings: ConnectorsSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    pool = await open_pool(stack, settings, max_size=4)
    download_dir = settings.download_dir or Path(tempfile.gettempdir())
    download_dir.mkdir(parents=True, exist_ok=True)
    store = PostgresConnectorStore(pool)
    publisher = await start_publisher(stack, settings)
    sink = RoutedEventSink(publisher, CONNECTORS_ROUTES)
    ports = WorkerPorts(
        store=store,
        secrets=ConnectorSecrets(build_secret_sealer(settings.secrets, pool)),
        providers=partial(build_provider, endpoints=settings.endpoints),
        blobs=build_blob_store(settings.blobs, pool),
        sink=sink,
        options=SyncOptions(download_dir, settings.max_file_bytes, settings.poll_interval_s, settings.provider_retry_s),
        webhook_base_url=settings.webhook_base_url,
    )
    server = await start_grpc(stack, settings, [], [])
    options = ConsumerOptions(
        group_id=settings.group_id,
        topics=(CONNECTORS_NOTIFIED.name,),
        max_batch=settings.max_batch,
        batch_wait_ms=settings.batch_wait_ms,
        max_poll_interval_ms=int(settings.max_poll_interval_s * 1000),
    )
    consumer = await start_consumer(stack, settings, options, partial(handle_connector_events, ports=ports), publisher)
    schedule = ScheduleOptions(
        interval_s=settings.scheduler_interval_s,
        poll_interval_s=settings.poll_interval_s,
        renew_before_s=settings.renew_before_s,
    )
    await serve_while_healthy(stack, settings, server, pool=pool, consumers=[consumer])
    if not settings.scheduler_interval_s:
        return [consumer.run(stop)]
    return [consumer.run(stop), Scheduler(store, sink, schedule).run(stop)]


def main() -> None:
    run_service(ConnectorsSettings, start)


if __name__ == "__main__":
    main()

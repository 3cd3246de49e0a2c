"""Building blocks every composition root (`app.py`) uses: start a resource and register its shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TypeVar

import grpc

from ragstream_common.config import ServiceSettings, load_settings
from ragstream_common.events import BatchHandler
from ragstream_common.grpc_server import GrpcServer
from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher
from ragstream_common.lifecycle import run_until_stopped
from ragstream_common.logs import configure_logging
from ragstream_common.metrics import serve_metrics
from ragstream_common.tracing import setup_tracing

if TYPE_CHECKING:  # the database driver is the `postgres` extra: services without a database never import it
    from psycopg_pool import AsyncConnectionPool

S = TypeVar("S", bound=ServiceSettings)
StartFn = Callable[[S, AsyncExitStack, asyncio.Event], Awaitable[list[Awaitable[None]]]]


def run_service(settings_cls: type[S], start: StartFn[S]) -> None:
    """The whole `main()` of a service: settings, logs, traces, metrics, then run until SIGTERM."""
    settings = load_settings(settings_cls)
    configure_logging(settings.service_name, settings.log_level)
    setup_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
    serve_metrics(settings.grpc_host, settings.metrics_port)

    async def body(stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
        return await start(settings, stack, stop)

    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        runner.run(run_until_stopped(body, settings.shutdown_grace_s))


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None for asyncio's default."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


async def start_publisher(
    stack: AsyncExitStack, settings: ServiceSettings, linger_ms: int = 0, lane: str = ""
) -> EventPublisher:
    """A producer; a named `lane` (e.g. "queries") gets its own connection, so that its sends never wait behind
    another lane's large batches (a producer has one request in flight per broker)."""
    source = f"ragstream/{settings.service_name}"
    publisher = EventPublisher(
        settings.kafka, source=source, linger_ms=linger_ms, client_id=f"{source}/{lane}" if lane else ""
    )
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    return publisher


async def start_consumer(
    stack: AsyncExitStack,
    settings: ServiceSettings,
    options: ConsumerOptions,
    handler: BatchHandler,
    dead_letters: EventPublisher,
) -> EventConsumer:
    consumer = EventConsumer(settings.kafka, options, handler, dead_letters)
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    return consumer


async def open_pool(stack: AsyncExitStack, settings: ServiceSettings, max_size: int = 8) -> AsyncConnectionPool:
    from ragstream_common.db import create_pool

    pool = create_pool(settings.database_url, max_size=max_size, name=settings.service_name)
    await pool.open(wait=True, timeout=30)
    stack.push_async_callback(pool.close)
    return pool


async def start_grpc(
    stack: AsyncExitStack,
    settings: ServiceSettings,
    service_names: Sequence[str],
    registrations: Sequence[Callable[[grpc.aio.Server], None]],
) -> GrpcServer:
    server = GrpcServer(settings.grpc_host, settings.grpc_port, service_names)
    for register in registrations:
        server.add(register)
    await server.start()
    stack.push_async_callback(server.stop)
    return server

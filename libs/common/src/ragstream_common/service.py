"""Building blocks every composition root (`app.py`) uses: start a resource and register its shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import grpc

from ragstream_common.config import ServiceSettings, load_settings
from ragstream_common.events import BatchHandler
from ragstream_common.grpc_server import GrpcServer, GrpcTlsSettings
from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher
from ragstream_common.kafka.reachability import KafkaReachability
from ragstream_common.lifecycle import run_until_stopped
from ragstream_common.logs import configure_logging
from ragstream_common.metrics import serve_metrics
from ragstream_common.readiness import DependencyProbe, consumer_keeps_up, postgres_answers
from ragstream_common.service_tokens import TokenVerifier
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
    if not options.commit_interval_ms:
        options = replace(options, commit_interval_ms=settings.kafka.commit_interval_ms)
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
    *,
    verifier: TokenVerifier | None = None,
    tls: GrpcTlsSettings | None = None,
) -> GrpcServer:
    """The rag.v1 services in `registrations` admit only tokens `verifier` accepts (none without one)."""
    server = GrpcServer(settings.grpc_host, settings.grpc_port, service_names, verifier=verifier, tls=tls)
    for register in registrations:
        server.add(register)
    await server.start()
    stack.push_async_callback(server.stop)
    return server


async def dependency_probe(
    stack: AsyncExitStack, settings: ServiceSettings, pool: AsyncConnectionPool | None = None
) -> DependencyProbe:
    """The service's dependency checks: Kafka always, the database when it has a `pool`."""
    kafka = KafkaReachability(settings.kafka, client_id=f"ragstream/{settings.service_name}/readiness")
    await kafka.start()
    stack.push_async_callback(kafka.close)
    probe = DependencyProbe({"kafka": kafka.reachable})
    if pool is not None:
        probe.add("database", postgres_answers(pool))
    return probe


async def serve_while_ready(
    stack: AsyncExitStack, server: GrpcServer, probe: DependencyProbe, consumers: Sequence[EventConsumer] = ()
) -> None:
    """`server`'s health follows `probe` (plus: no consumer stuck on a transient failure) from now until the
    stack closes; the first verdict is in before this returns."""
    for consumer in consumers:
        probe.add(f"consumer:{consumer.options.group_id}", consumer_keeps_up(consumer))
    await probe.step(server.set_serving)
    watch = asyncio.ensure_future(probe.watch(server.set_serving, first_delay_s=probe.interval_s))

    async def stop_watching() -> None:
        watch.cancel()
        with suppress(asyncio.CancelledError):
            await watch

    stack.push_async_callback(stop_watching)


async def serve_while_healthy(
    stack: AsyncExitStack,
    settings: ServiceSettings,
    server: GrpcServer,
    *,
    pool: AsyncConnectionPool | None = None,
    consumers: Sequence[EventConsumer] = (),
) -> DependencyProbe:
    """What a worker's `start` ends with instead of `server.mark_serving()`: SERVING while Kafka, the database
    (with a `pool`) and its consumers are well, NOT_SERVING while one is not."""
    probe = await dependency_probe(stack, settings, pool)
    await serve_while_ready(stack, server, probe, consumers)
    return probe

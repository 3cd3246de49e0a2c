"""Gateway composition root: the FastAPI app, its collaborators, the Kafka projections and the servers.

`create_app(settings, deps)` only wires (no I/O), so tests build the same app over real collaborators;
`start` opens those collaborators and runs uvicorn, the two registry consumers, the tenant intake bridge and
the reply gRPC server in one asyncio loop until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Generator, Sequence
from contextlib import AsyncExitStack
from functools import partial

import psycopg
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import PoolTimeout
from rag.v1 import services_pb2_grpc
from ragstream_common.blobs import build_blob_store
from ragstream_common.db import open_pool_at
from ragstream_common.kafka import ConsumerOptions, EventPublisher
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, DOCUMENTS_STATUS
from ragstream_common.readiness import DependencyProbe
from ragstream_common.service import (
    dependency_probe,
    open_pool,
    run_service,
    serve_while_ready,
    start_consumer,
    start_grpc,
    start_publisher,
)

from ragstream_gateway.adapters.dlq_kafka import open_dead_letters
from ragstream_gateway.adapters.intake_kafka import start_intake_bridge
from ragstream_gateway.adapters.key_cache import CachedTenantDirectory
from ragstream_gateway.adapters.registry_pg import PostgresDocumentRegistry
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.adapters.tenant_kafka_admin import open_tenant_provisioner
from ragstream_gateway.adapters.tenants_pg import PostgresAuditLog, PostgresTenantDirectory
from ragstream_gateway.admission import AdmissionLimit
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps, GatewayServices
from ragstream_gateway.documents import DocumentService
from ragstream_gateway.observability import HttpMetrics
from ragstream_gateway.problems import install_problem_handlers, on_dependency_down
from ragstream_gateway.projector import project_registrations, project_status
from ragstream_gateway.query.replies import PendingQueries, ReplyServicer
from ragstream_gateway.query.service import QueryDispatcher, QueryNotPublished
from ragstream_gateway.ratelimit import TenantRateLimiter
from ragstream_gateway.routes import admin, auth, dlq, documents, health, query
from ragstream_gateway.security import hash_api_key
from ragstream_gateway.uploads import ENVELOPE_BYTES, BodySizeLimit

DESCRIPTION = """Public HTTP API of Ragstream: upload documents into the indexing pipeline and follow their status.
Errors are RFC 9457 `application/problem+json`. Authenticate with `Authorization: Bearer <API key>` or
`X-API-Key`; admin endpoints take `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`."""


UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app(
    settings: GatewaySettings,
    deps: GatewayDeps,
    routers: Sequence[APIRouter] = (),
    queries: QueryDispatcher | None = None,
) -> FastAPI:
    """The HTTP app over ready collaborators; with `queries` it also serves the query API.

    `routers` adds more routes; like the built-in ones they carry their full path prefix ("/v1/..."), so that
    route templates in metrics and traces are complete.
    """
    # FastAPI traces requests natively (OpenTelemetry) once ragstream_common.tracing installed a provider.
    app = FastAPI(
        title="Ragstream Gateway",
        version="0.1.0",
        description=DESCRIPTION,
        telemetry={"exclude": lambda scope: scope.get("path") in UNTRACED_PATHS},
    )
    documents_service = DocumentService(
        deps.registry,
        deps.blobs,
        RoutedEventSink(deps.publisher, GATEWAY_ROUTES),
        deps.audit,
        inline_text_max_bytes=settings.inline_text_max_bytes,
        publish_timeout_s=settings.publish_timeout_s,
    )
    tokens = settings.tokens.minter(settings.service_name)
    app.state.services = GatewayServices(settings, deps, documents_service, queries, tokens)
    install_problem_handlers(app)
    for unavailable in (psycopg.OperationalError, PoolTimeout, QueryNotPublished):
        app.add_exception_handler(unavailable, on_dependency_down)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + ENVELOPE_BYTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(
        AdmissionLimit, settings=settings.admission
    )  # questions past the in-flight bound: 503 + Retry-After, not a queue
    app.add_middleware(HttpMetrics)
    query_routers = [query.router] if queries is not None else []
    for router in (health.router, auth.router, documents.router, admin.router, dlq.router, *query_routers, *routers):
        app.include_router(router)
    return app


async def open_deps(settings: GatewaySettings, stack: AsyncExitStack) -> GatewayDeps:
    """Open the pool and the producer (closed by `stack`), provision the dev tenant, wire the adapters."""
    pool = await open_pool(stack, settings, max_size=settings.db_pool_size)
    admin_url = settings.admin_database_url
    admin_pool = await open_pool_at(stack, admin_url.get_secret_value(), name="gateway-admin") if admin_url else pool
    readiness = await dependency_probe(stack, settings, pool)
    publisher = await start_publisher(stack, settings)
    tenants = PostgresTenantDirectory(pool, admin_pool)
    if settings.dev_tenant and settings.dev_api_key:
        key = settings.dev_api_key.get_secret_value()
        await tenants.ensure_tenant_key(settings.dev_tenant, key, key_id=f"dev_{hash_api_key(key)[:16]}")
    return GatewayDeps(
        registry=PostgresDocumentRegistry(pool),
        blobs=build_blob_store(settings.blobs, pool),
        publisher=publisher,
        audit=PostgresAuditLog(pool, admin_pool),
        tenants=CachedTenantDirectory(tenants, settings.key_cache_ttl_s),
        limiter=TenantRateLimiter(settings.rate_limit_storage, settings.default_rate_limit),
        readiness=readiness,
        dead_letters=await open_dead_letters(stack, settings, publisher),
        tenant_kafka=open_tenant_provisioner(settings),
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the service's loop: the service lifecycle, not uvicorn, owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_http(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then let in-flight requests finish (uvicorn's graceful shutdown)."""

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind; fail this loop instead
            raise RuntimeError(f"HTTP server could not start on {server.config.host}:{server.config.port}") from None

    serving = asyncio.ensure_future(serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving


async def start(settings: GatewaySettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    deps = await open_deps(settings, stack)
    publisher = deps.publisher
    assert isinstance(publisher, EventPublisher)  # also the consumers' dead-letter producer
    status_options = ConsumerOptions(group_id=settings.status_group_id, topics=(DOCUMENTS_STATUS.name,))
    registry_options = ConsumerOptions(group_id=settings.registry_group_id, topics=(DOCUMENTS_RECEIVED.name,))
    status_consumer = await start_consumer(
        stack, settings, status_options, partial(project_status, registry=deps.registry), publisher
    )
    registry_consumer = await start_consumer(
        stack, settings, registry_options, partial(project_registrations, registry=deps.registry), publisher
    )
    pending = PendingQueries()
    reply_server = await start_grpc(
        stack,
        settings,
        ["rag.v1.ReplyService"],
        [partial(services_pb2_grpc.add_ReplyServiceServicer_to_server, ReplyServicer(pending))],
        verifier=settings.tokens.verifier(),
        tls=settings.grpc_tls,
    )
    reply_address = settings.reply_advertise_address or reply_server.address
    queries = QueryDispatcher(
        RoutedEventSink(publisher, GATEWAY_ROUTES), pending, reply_address, settings.query_publish_timeout_s
    )
    app = create_app(settings, deps, queries=queries)
    readiness = deps.readiness
    assert isinstance(readiness, DependencyProbe)  # /readyz and the ReplyService health share its checks
    intake_consumer = await start_intake_bridge(stack, settings, publisher)
    consumers = [status_consumer, registry_consumer, intake_consumer]
    await serve_while_ready(stack, reply_server, readiness, consumers)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Within the lifecycle's grace period, so the pool and producer close after the last request.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s) - 2),
    )
    return [*(consumer.run(stop) for consumer in consumers), serve_http(EmbeddedServer(config), stop)]


def main() -> None:
    run_service(GatewaySettings, start)


if __name__ == "__main__":
    main()

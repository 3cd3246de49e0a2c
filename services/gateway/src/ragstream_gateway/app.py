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

from ragstream_gateway.adapters.audit_pg import open_audit_log, open_security_event_relay
from ragstream_gateway.adapters.connectors_pg import open_connector_directory
from ragstream_gateway.adapters.dlq_kafka import open_dead_letters
from ragstream_gateway.adapters.document_counts_pg import PostgresDocumentCounts
from ragstream_gateway.adapters.health_grpc import GrpcHealthProbe
from ragstream_gateway.adapters.intake_kafka import start_intake_bridge
from ragstream_gateway.adapters.key_events_pg import open_key_directory
from ragstream_gateway.adapters.key_usage_pg import start_key_usage
from ragstream_gateway.adapters.quotas_pg import PostgresQuotaStore
from ragstream_gateway.adapters.registry_pg import PostgresDocumentRegistry
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.adapters.tenant_kafka_admin import open_tenant_provisioner
from ragstream_gateway.adapters.tenants_pg import PostgresTenantDirectory
from ragstream_gateway.adapters.usage_pg import PostgresUsageStore
from ragstream_gateway.admission import AdmissionLimit
from ragstream_gateway.apidocs import DOCS_PATHS, register_api_docs
from ragstream_gateway.audit_trail import AuditTrail
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.connectors import ConnectorService
from ragstream_gateway.console import mount_console
from ragstream_gateway.correlation import CORRELATION_HEADER, CorrelationIds
from ragstream_gateway.deps import GatewayDeps, GatewayServices, client_ip
from ragstream_gateway.document_metrics import refresh_document_counts
from ragstream_gateway.documents import DocumentService
from ragstream_gateway.observability import HttpMetrics
from ragstream_gateway.problems import install_problem_handlers, on_dependency_down
from ragstream_gateway.projector import project_registrations, project_status
from ragstream_gateway.query.replies import PendingQueries, ReplyServicer
from ragstream_gateway.query.service import QueryDispatcher, QueryNotPublished
from ragstream_gateway.quota_registry import QuotaEnforcingRegistry
from ragstream_gateway.quotas import quota_enforcer
from ragstream_gateway.ratelimit import rate_limiter
from ragstream_gateway.request_tracing import TELEMETRY
from ragstream_gateway.routes import (
    admin,
    admin_keys,
    admin_tenants,
    audit,
    auth,
    connectors,
    dlq,
    documents,
    health,
    query,
    quotas,
    usage,
    webhooks,
)
from ragstream_gateway.security import hash_api_key
from ragstream_gateway.security_headers import SecurityHeaders
from ragstream_gateway.service_health import ServiceHealthSurvey
from ragstream_gateway.uploads import ENVELOPE_BYTES, BodySizeLimit
from ragstream_gateway.usage import UsageService, refresh_budget_ratios

DESCRIPTION = """Public HTTP API of Ragstream: upload documents into the indexing pipeline and follow their status.
Errors are RFC 9457 `application/problem+json`. Authenticate with `Authorization: Bearer <API key>` or
`X-API-Key`; admin endpoints take `Authorization: Bearer <admin API key>` (or the bootstrap GATEWAY_ADMIN_TOKEN)."""


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
    # FastAPI opens the server span of each /v1 request (request_tracing.py) once ragstream_common.tracing
    # installed a provider and the propagator: it continues an incoming traceparent or uber-trace-id.
    app = FastAPI(
        title="Ragstream Gateway",
        version="0.1.0",
        description=DESCRIPTION,
        telemetry=TELEMETRY,
        # GATEWAY_DOCS_ENABLED=false (production): no /docs, /redoc or /openapi.json; app.openapi() still works.
        docs_url=None,  # our own air-gapped pages (apidocs.register_api_docs), not FastAPI's CDN ones
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    documents_service = DocumentService(
        # Uploads register under the tenant's quotas; the Kafka projections write the plain registry.
        deps.registry if deps.quotas is None else QuotaEnforcingRegistry(deps.registry, deps.quotas),
        deps.blobs,
        RoutedEventSink(deps.publisher, GATEWAY_ROUTES),
        deps.audit,
        inline_text_max_bytes=settings.inline_text_max_bytes,
        publish_timeout_s=settings.publish_timeout_s,
    )
    tokens = settings.tokens.minter(settings.service_name)
    connector_service = (
        None
        if deps.connectors is None
        else ConnectorService(
            deps.connectors,
            RoutedEventSink(deps.publisher, GATEWAY_ROUTES),
            deps.audit,
            publish_timeout_s=settings.publish_timeout_s,
        )
    )
    worker_health = settings.service_health
    probe = deps.health_probe or GrpcHealthProbe(settings.grpc_tls, worker_health.plaintext)  # dials when asked
    survey = ServiceHealthSurvey(probe, worker_health)
    app.state.services = GatewayServices(settings, deps, documents_service, queries, tokens, connector_service, survey)
    install_problem_handlers(app)
    quotas.install_quota_problems(app)
    for unavailable in (psycopg.OperationalError, PoolTimeout, QueryNotPublished):
        app.add_exception_handler(unavailable, on_dependency_down)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + ENVELOPE_BYTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[CORRELATION_HEADER],  # so a browser client can quote it
        )
    app.add_middleware(
        AdmissionLimit, settings=settings.admission
    )  # questions past the in-flight bound: 503 + Retry-After, not a queue
    app.add_middleware(HttpMetrics)
    # Outside the metrics and the admission bound: its write after the response counts against neither.
    trail = deps.trail_audit or deps.audit
    app.add_middleware(AuditTrail, audit=trail, client_address=client_ip, questions=deps.audit_store)
    # Outermost: every response, the middlewares' own refusals included, gets the headers and the id.
    app.add_middleware(SecurityHeaders, docs_paths=DOCS_PATHS if settings.docs_enabled else ())
    app.add_middleware(CorrelationIds)
    query_routers = [query.router] if queries is not None else []
    for router in (
        health.router,
        auth.router,
        documents.router,
        admin.router,
        admin_keys.router,
        admin_tenants.router,
        audit.router,
        quotas.router,
        dlq.router,
        connectors.router,
        connectors.admin_router,
        webhooks.router,
        usage.router,
        usage.admin_router,
        *query_routers,
        *routers,
    ):
        app.include_router(router)
    if settings.docs_enabled:
        register_api_docs(app, settings)
    mount_console(app)  # the web console at /ui, a client of the routes above
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
    limiter = rate_limiter(settings)
    directory = await open_key_directory(stack, settings, tenants)  # key and tenant changes pushed by Postgres
    audit_log, trail_audit, audit_store = await open_audit_log(
        stack, pool, admin_pool, trail_commit_window_s=settings.audit_trail_commit_window_ms / 1000
    )
    return GatewayDeps(
        registry=PostgresDocumentRegistry(pool),
        blobs=build_blob_store(settings.blobs, pool),
        publisher=publisher,
        audit=audit_log,
        trail_audit=trail_audit,
        audit_store=audit_store,
        tenants=directory,
        key_usage=await start_key_usage(stack, pool),
        limiter=limiter,
        readiness=readiness,
        dead_letters=await open_dead_letters(stack, settings, publisher),
        tenant_kafka=open_tenant_provisioner(settings),
        quotas=quota_enforcer(settings, PostgresQuotaStore(pool, admin_pool), limiter),
        connectors=open_connector_directory(settings.secrets, pool),
        usage=PostgresUsageStore(pool, admin_pool),
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
    intake_consumer = await start_intake_bridge(stack, settings, publisher, deps.tenants)
    consumers = [status_consumer, registry_consumer, intake_consumer]
    relay = await open_security_event_relay(stack, settings, publisher)  # audit rows to rag.security.events.v1
    await serve_while_ready(stack, reply_server, readiness, consumers)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        log_config=None,
        # X-Forwarded-For is read by client_address.py (GATEWAY_TRUSTED_PROXY_HOPS), never by uvicorn.
        proxy_headers=False,
        # Within the lifecycle's grace period, so the pool and producer close after the last request.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s) - 2),
    )
    background = [relay.run(stop)] if relay is not None else []
    if deps.usage is not None and settings.usage.budget_refresh_s > 0:  # ragstream_usage_budget_ratio
        budgets = UsageService(deps.usage, settings.usage)
        background.append(refresh_budget_ratios(budgets, stop, settings.usage.budget_refresh_s))
    if settings.metrics_documents_refresh_s > 0:  # ragstream_documents, on its own connection off the API's pool
        counts_pool = await open_pool_at(stack, settings.database_url, name="gateway-metrics", max_size=1)
        labelled, interval_s = settings.metrics_tenant_labels, settings.metrics_documents_refresh_s
        background.append(refresh_document_counts(PostgresDocumentCounts(counts_pool), labelled, stop, interval_s))
    return [*(consumer.run(stop) for consumer in consumers), *background, serve_http(EmbeddedServer(config), stop)]


def main() -> None:
    run_service(GatewaySettings, start)


if __name__ == "__main__":
    main()

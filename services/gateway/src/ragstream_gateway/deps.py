"""What routes get injected: the service's collaborators and services, the authenticated tenant, the admin check.

Authentication order for tenant routes: API key (401) -> key revoked or expired (401) -> client address
against the tenant's allowlist (403) -> tenant rate limit (429) -> route scope (403). Failures of a known
key are written to that tenant's audit log; unknown keys only count in metrics (there is no tenant to
charge them to).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import Counter
from ragstream_common.events import RecordPublisher
from ragstream_common.logs import get_logger
from ragstream_common.service_tokens import TokenMinter

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.dead_letters import DeadLetterOperations
from ragstream_gateway.documents import Caller, DocumentService
from ragstream_gateway.ports import (
    AuditEntry,
    AuditLog,
    BlobStore,
    DocumentRegistry,
    KeyGrant,
    ReadinessProbe,
    TenantDirectory,
)
from ragstream_gateway.problems import Problem
from ragstream_gateway.query.service import QueryDispatcher
from ragstream_gateway.ratelimit import TenantRateLimiter
from ragstream_gateway.security import address_allowed, extract_api_key, hash_api_key, tokens_match
from ragstream_gateway.tenant_kafka import TenantKafkaAccess

log = get_logger(__name__)
AUTH_FAILURES = Counter("ragstream_gateway_auth_failures_total", "Refused credentials", ["reason"])
RATE_LIMITED = Counter("ragstream_gateway_rate_limited_total", "Requests refused by a tenant rate limit")

# Declared for the OpenAPI document ("Authorize" in /docs); parsing is `extract_api_key`.
bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
admin_scheme = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="Bearer GATEWAY_ADMIN_TOKEN")


@dataclass
class GatewayDeps:
    """Everything the HTTP layer talks to; built by the composition root (or a test) before create_app."""

    registry: DocumentRegistry
    blobs: BlobStore
    # The Kafka producer: routed for document and query events, and the consumers' dead-letter producer.
    publisher: RecordPublisher
    audit: AuditLog
    tenants: TenantDirectory
    limiter: TenantRateLimiter
    readiness: ReadinessProbe
    # The admin API's DLQ list/inspect/redrive; None answers those routes with 503.
    dead_letters: DeadLetterOperations | None = None
    # Tenants' Kafka topics, principals and grants (tenant_kafka.py); None: tenants get no Kafka access.
    tenant_kafka: TenantKafkaAccess | None = None


@dataclass(frozen=True)
class GatewayServices:
    """What `create_app` hands its routes, kept on `app.state.services`; read through the accessors below."""

    settings: GatewaySettings
    deps: GatewayDeps
    documents: DocumentService
    # None when the app serves no query API (no reply server to hear the answers).
    queries: QueryDispatcher | None = None
    # Mints tenant tokens for the gRPC APIs (POST /v1/auth/token); None without TOKEN_SIGNING_KEY.
    tokens: TokenMinter | None = None


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: tuple[str, ...]
    client_ip: str

    def caller(self) -> Caller:
        return Caller(actor=f"key:{self.key_id}", client_ip=self.client_ip)


def services_of(request: Request) -> GatewayServices:
    """The services `create_app` stored; Starlette's `app.state` is untyped, so check what comes out of it."""
    services = request.app.state.services
    if not isinstance(services, GatewayServices):
        raise TypeError(f"app.state.services is {type(services).__name__}, not GatewayServices (use create_app)")
    return services


# Accessors are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread handoff per request
# for an attribute lookup.
async def get_deps(request: Request) -> GatewayDeps:
    return services_of(request).deps


async def get_settings(request: Request) -> GatewaySettings:
    return services_of(request).settings


async def get_documents(request: Request) -> DocumentService:
    return services_of(request).documents


async def get_queries(request: Request) -> QueryDispatcher:
    queries = services_of(request).queries
    if queries is None:
        raise RuntimeError("query routes are mounted but create_app was given no QueryDispatcher")
    return queries


async def get_token_minter(request: Request) -> TokenMinter | None:
    return services_of(request).tokens


def client_ip(request: Request) -> str:
    """The peer address; uvicorn has already applied X-Forwarded-For from trusted proxies."""
    return request.client.host if request.client else ""


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="ragstream"'})


async def _refuse_known_key(audit: AuditLog, grant: KeyGrant, ip: str, reason: str, path: str) -> None:
    AUTH_FAILURES.labels(reason).inc()
    log.warning("api key refused", tenant_id=grant.tenant_id, key_id=grant.key_id, reason=reason, client_ip=ip)
    try:
        await audit.record(
            AuditEntry(grant.tenant_id, f"key:{grant.key_id}", "auth.refused", path, ip, {"reason": reason})
        )
    except Exception as exc:
        log.error("audit write failed", action="auth.refused", error=repr(exc))


async def authenticate(
    request: Request,
    deps: Annotated[GatewayDeps, Depends(get_deps)],
    _bearer: Annotated[object, Depends(bearer_scheme)],
    _api_key: Annotated[object, Depends(api_key_scheme)],
) -> Principal:
    key = extract_api_key(request.headers)
    if key is None:
        AUTH_FAILURES.labels("missing").inc()
        raise _unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    grant = await deps.tenants.find_key(hash_api_key(key))
    if grant is None:
        AUTH_FAILURES.labels("unknown").inc()
        raise _unauthorized("the API key is not valid")
    ip = client_ip(request)
    path = request.url.path
    if grant.revoked or grant.expired:
        reason = "revoked" if grant.revoked else "expired"
        await _refuse_known_key(deps.audit, grant, ip, reason, path)
        raise _unauthorized(f"the API key is {reason}")
    if not address_allowed(ip, grant.ip_allowlist):
        await _refuse_known_key(deps.audit, grant, ip, "address_not_allowed", path)
        raise Problem(
            403, f"client address {ip or 'unknown'} is not in the tenant's allowlist", slug="address-not-allowed"
        )
    decision = await deps.limiter.check(grant.tenant_id, grant.rate_limit)
    if not decision.allowed:
        RATE_LIMITED.inc()
        raise Problem(
            429,
            f"rate limit {decision.limit} exceeded; retry in {decision.retry_after_s} s",
            slug="rate-limited",
            headers={"Retry-After": str(decision.retry_after_s)},
            extensions={"retry_after_s": decision.retry_after_s},
        )
    return Principal(grant.tenant_id, grant.key_id, grant.scopes, ip)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting keys that carry `scope` (e.g. "documents:write", "query")."""

    async def dependency(
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        deps: Annotated[GatewayDeps, Depends(get_deps)],
    ) -> Principal:
        if scope not in principal.scopes:
            grant = KeyGrant(principal.key_id, principal.tenant_id, principal.scopes, False, None, None, ())
            await _refuse_known_key(deps.audit, grant, principal.client_ip, f"missing_scope:{scope}", request.url.path)
            raise Problem(403, f"the API key lacks the {scope!r} scope", slug="missing-scope")
        return principal

    return dependency


async def require_admin(
    request: Request,
    settings: Annotated[GatewaySettings, Depends(get_settings)],
    _token: Annotated[object, Depends(admin_scheme)],
) -> str:
    """The admin actor's name; admin endpoints answer 403 while GATEWAY_ADMIN_TOKEN is unset."""
    if settings.admin_token is None:
        raise Problem(403, "the admin API is disabled (GATEWAY_ADMIN_TOKEN is not set)", slug="admin-disabled")
    if not tokens_match(extract_api_key(request.headers), settings.admin_token.get_secret_value()):
        AUTH_FAILURES.labels("admin").inc()
        log.warning("admin token refused", client_ip=client_ip(request), path=request.url.path)
        raise _unauthorized("the admin token is not valid")
    return "admin"

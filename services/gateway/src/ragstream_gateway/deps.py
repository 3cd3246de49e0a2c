"""What routes get injected: the service's collaborators and services, the authenticated tenant, the admin check.

Authentication order for tenant routes: client address over its unknown-key limit (429, before any lookup)
-> API key (401) -> key revoked or expired (401) -> client address against the tenant's allowlist (403) ->
tenant and key rate limits (429; 503 while the limits store is down, ratelimit.py) -> route scope (403).
Failures of a known key are written to that tenant's audit log; unknown keys count in metrics and against
their address (there is no tenant to charge them to). A disabled tenant's keys are refused (403
`tenant-disabled`), and so are admin keys (403 `tenant-key-required`): they are for the admin API only.

Admin routes (`require_admin`, admin_auth.py): the bootstrap token or an admin API key, the client address's
failure budget (429), the admin rate limit (429); refusals are audited with the client address, and so is every
admin read, with its outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import Counter
from ragstream_common.events import RecordPublisher
from ragstream_common.logs import get_logger
from ragstream_common.service_tokens import TokenMinter

from ragstream_gateway import admin_auth
from ragstream_gateway.audit_trail import mark_recorded, note_admin, note_subject, outcome_of
from ragstream_gateway.client_address import connection_address
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.connector_ports import ConnectorDirectory
from ragstream_gateway.connectors import ConnectorService
from ragstream_gateway.dead_letters import DeadLetterOperations
from ragstream_gateway.documents import Caller, DocumentService
from ragstream_gateway.ports import (
    AuditEntry,
    AuditLog,
    AuditStore,
    BlobStore,
    DocumentRegistry,
    KeyGrant,
    KeyUsage,
    ReadinessProbe,
    TenantDirectory,
)
from ragstream_gateway.problems import Problem
from ragstream_gateway.query.service import QueryDispatcher
from ragstream_gateway.quotas import QuotaEnforcer
from ragstream_gateway.ratelimit import TenantRateLimiter, refusal_problem
from ragstream_gateway.security import SCOPE_ADMIN, address_allowed, extract_api_key, hash_api_key
from ragstream_gateway.service_health import HealthProbe, ServiceHealthSurvey
from ragstream_gateway.tenant_kafka import TenantKafkaAccess
from ragstream_gateway.usage import UsageStore

log = get_logger(__name__)
AUTH_FAILURES = Counter("ragstream_gateway_auth_failures_total", "Refused credentials", ["reason"])
RATE_LIMITED = Counter("ragstream_gateway_rate_limited_total", "Requests refused by a tenant rate limit")

# Declared for the OpenAPI document ("Authorize" in /docs); parsing is `extract_api_key`.
bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
admin_scheme = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="Bearer <admin API key or GATEWAY_ADMIN_TOKEN>"
)
# One admin actor's requests share this limit (in the limits store, under a name no tenant id can take).
ADMIN_LIMIT_PREFIX = "_admin/"


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
    # Per-tenant quotas (quotas.py) on uploads and questions; None: no quotas.
    quotas: QuotaEnforcer | None = None
    # Keys' last use (adapters/key_usage_pg.py); None: not recorded.
    key_usage: KeyUsage | None = None
    # The audit hash chain (verification) and tenants' audit options; None: those admin routes answer 503.
    audit_store: AuditStore | None = None
    # Connectors (connector_ports.py): the API and the webhook intake; None: those routes answer 503.
    connectors: ConnectorDirectory | None = None
    # Metered usage and budgets (usage.py); None: the usage API answers 503.
    usage: UsageStore | None = None
    # Workers' gRPC health (service_health.py); None: create_app dials them over gRPC (adapters/health_grpc.py).
    health_probe: HealthProbe | None = None
    # The audit trail's writer (rows written after the response: audit_trail.py), which may gather rows for a
    # commit window; None: `audit`.
    trail_audit: AuditLog | None = None


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
    # The connector API (connectors.py); None when the deps have no connector directory (503).
    connectors: ConnectorService | None = None
    # Every worker's health for GET /v1/admin/health; create_app always builds one.
    service_health: ServiceHealthSurvey | None = None


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


async def get_connector_service(request: Request) -> ConnectorService:
    """The connector API's service; 503 on a gateway without a master key to seal connector secrets."""
    connectors = services_of(request).connectors
    if connectors is None:
        raise Problem(
            503,
            "connectors are not configured on this gateway (it has no SECRETS_MASTER_KEY or KMS key to seal their"
            " secrets)",
            slug="connectors-unavailable",
        )
    return connectors


async def get_service_health(request: Request) -> ServiceHealthSurvey:
    survey = services_of(request).service_health
    if survey is None:
        raise RuntimeError("the admin health route is mounted but create_app built no ServiceHealthSurvey")
    return survey


def client_ip(request: Request) -> str:
    """The client's address behind GATEWAY_TRUSTED_PROXY_HOPS proxies (client_address.py): what allowlists, rate
    limits and the audit log see."""
    return connection_address(request, services_of(request).settings.trusted_proxy_hops)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="ragstream"'})


async def _refuse_known_key(audit: AuditLog, grant: KeyGrant, ip: str, reason: str, path: str) -> None:
    AUTH_FAILURES.labels(reason).inc()
    log.warning("api key refused", tenant_id=grant.tenant_id, key_id=grant.key_id, reason=reason, client_ip=ip)
    mark_recorded()  # this row is the call's: the audit trail adds none
    try:
        await audit.record(
            AuditEntry(
                grant.tenant_id, f"key:{grant.key_id}", "auth.refused", path, ip, {"reason": reason}, outcome="denied"
            )
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
    digest = hash_api_key(key) if key is not None else None
    ip = client_ip(request)
    throttled = await deps.limiter.address_refused(ip, digest)
    if not throttled.allowed:
        raise refusal_problem(throttled)
    if digest is None:
        AUTH_FAILURES.labels("missing").inc()
        await deps.limiter.charge_address(ip)
        raise _unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    grant = await deps.tenants.find_key(digest)
    if grant is None:
        AUTH_FAILURES.labels("unknown").inc()
        await deps.limiter.charge_address(ip)
        raise _unauthorized("the API key is not valid")
    path = request.url.path
    if grant.revoked or grant.expired:
        reason = "revoked" if grant.revoked else "rotated" if grant.replaced_by else "expired"
        await deps.limiter.charge_address(ip)  # a dead key counts as a failed attempt, as for admin credentials
        await _refuse_known_key(deps.audit, grant, ip, reason, path)
        raise _unauthorized(_KEY_REFUSALS[reason])
    if grant.tenant_disabled:
        await _refuse_known_key(deps.audit, grant, ip, "tenant_disabled", path)
        raise Problem(403, f"tenant {grant.tenant_id!r} is disabled", slug="tenant-disabled")
    if SCOPE_ADMIN in grant.scopes:
        await _refuse_known_key(deps.audit, grant, ip, "admin_key", path)
        raise Problem(403, "admin keys are for the admin API only", slug="tenant-key-required")
    if not address_allowed(ip, grant.ip_allowlist):
        await _refuse_known_key(deps.audit, grant, ip, "address_not_allowed", path)
        raise Problem(
            403, f"client address {ip or 'unknown'} is not in the tenant's allowlist", slug="address-not-allowed"
        )
    decision = await deps.limiter.admit(grant.tenant_id, grant.key_id, grant.rate_limit)
    if not decision.allowed:
        RATE_LIMITED.inc()
        raise refusal_problem(decision)
    deps.limiter.remember_valid(digest)
    if deps.key_usage is not None:
        deps.key_usage.note(grant.key_id)
    note_subject(grant.tenant_id, f"key:{grant.key_id}", ip)  # the call's audit row goes to its tenant
    return Principal(grant.tenant_id, grant.key_id, grant.scopes, ip)


_KEY_REFUSALS = {
    "revoked": "the API key is revoked",
    "expired": "the API key is expired",
    "rotated": "the API key was rotated and its grace period has ended",
}


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
    deps: Annotated[GatewayDeps, Depends(get_deps)],
    _token: Annotated[object, Depends(admin_scheme)],
) -> AsyncIterator[str]:
    """The admin actor: `admin` (the bootstrap token) or `admin:<key_id>` (an admin API key); see admin_auth.py.
    Reads are audited once answered, with their status."""
    ip, path = client_ip(request), request.url.path
    presented = extract_api_key(request.headers)
    digest = hash_api_key(presented) if presented is not None else None
    throttled = await deps.limiter.address_refused(ip, digest)
    if not throttled.allowed:
        raise refusal_problem(throttled)
    check = await admin_auth.identify_admin(presented, settings, deps.tenants)
    if check.actor is None:
        AUTH_FAILURES.labels(f"admin_{check.reason}").inc()
        log.warning("admin credential refused", reason=check.reason, key_id=check.key_id, client_ip=ip, path=path)
        if check.counts_as_guess:
            await deps.limiter.charge_address(ip)
        await _audit(deps.audit, admin_auth.refused_entry(check, path, ip), "denied")
        raise admin_auth.refusal(check)
    decision = await deps.limiter.check(ADMIN_LIMIT_PREFIX + check.actor, settings.admin_rate_limit)
    if not decision.allowed:
        RATE_LIMITED.inc()
        raise refusal_problem(decision)
    if digest is not None:
        deps.limiter.remember_valid(digest)
    if check.key_id is not None and deps.key_usage is not None:
        deps.key_usage.note(check.key_id)
    note_admin(check.actor, ip)  # admin writes: the audit trail records them, with their outcome
    if request.method not in admin_auth.READ_METHODS:
        yield check.actor
        return
    status = 200
    try:
        yield check.actor
    except Exception as exc:
        status = admin_auth.status_of(exc)
        raise
    finally:
        tenant_id = request.path_params.get("tenant_id")
        entry = admin_auth.read_entry(check.actor, request.method, path, request.url.query, tenant_id, status, ip)
        await _audit(deps.audit, entry, outcome_of(status))


async def _audit(audit: AuditLog, entry: AuditEntry, outcome: str) -> None:
    """Best effort: an audit failure is logged, never the reason a refusal or a read fails."""
    mark_recorded()  # this row is the call's: the audit trail adds none
    try:
        await audit.record(replace(entry, outcome=outcome))
    except Exception as exc:
        log.error("audit write failed", action=entry.action, error=repr(exc))

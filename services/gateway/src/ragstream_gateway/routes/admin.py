"""Admin API (an admin key or the bootstrap GATEWAY_ADMIN_TOKEN, deps.require_admin): tenants, their API keys and
Kafka access, audit log. Every write is audited; secrets (API keys, Kafka passwords) are shown once, in the
response that creates them, and never logged.

Creating a tenant also provisions its Kafka access (tenant_kafka.py) when the gateway has provisioner credentials.
A provisioning that fails after the tenant row exists answers 503 with a problem naming the tenant and how to
finish it (`POST .../kafka-credentials`, idempotent); deleting a tenant offboards it (disabled and marked deleted,
API keys revoked, Kafka access removed) and keeps its row, so the id is never reused and no new tenant inherits
its data; the retention job (purge.py) purges that data once the tenant grace period has passed.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from ragstream_common.logs import get_logger

from ragstream_gateway.adapters.tenant_kafka_admin import tenant_listener
from ragstream_gateway.allowlists import checked_allowlist
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, get_settings, require_admin
from ragstream_gateway.models import (
    ApiKeyCreated,
    ApiKeyIn,
    AuditEntryView,
    AuditPage,
    TenantIn,
    TenantView,
)
from ragstream_gateway.ports import ApiKeyRecord, AuditEntry, TenantRecord, TenantUpdate
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.routes.admin_keys import check_key_lifetime, require_tenant
from ragstream_gateway.routes.params import KeyIdPath, TenantIdPath
from ragstream_gateway.security import new_api_key, reserved_tenant
from ragstream_gateway.tenant_kafka import (
    TenantKafkaAccess,
    TenantKafkaError,
    TenantTopicCollision,
    issue_credentials,
    refuse_collision,
)
from ragstream_gateway.tenant_models import KafkaCredentialsView, TenantCreated, credentials_view

log = get_logger(__name__)
router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
ADMIN_PROBLEMS = (401, 403, 422)
T = TypeVar("T")


def refuse_deleted(record: TenantRecord) -> TenantRecord:
    """409 `tenant-deleted` for an offboarded tenant: nothing may re-enable or re-provision it (its data is
    being purged, docs/data-governance.md)."""
    if record.deleted:
        raise Problem(409, f"tenant {record.tenant_id!r} was deleted and cannot be changed", slug="tenant-deleted")
    return record


def tenant_view(record: TenantRecord) -> TenantView:
    return TenantView(
        tenant_id=record.tenant_id,
        name=record.name,
        rate_limit=record.rate_limit,
        ip_allowlist=[str(network) for network in record.ip_allowlist],
        created_at=record.created_at,
        disabled=record.disabled,
        max_key_lifetime_s=record.max_key_lifetime_s,
    )


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantCreated,
    responses=problem_responses(*ADMIN_PROBLEMS, 409, 503),
    summary="Create a tenant and its Kafka access; the Kafka password is returned only once",
)
async def create_tenant(
    body: TenantIn, request: Request, actor: Admin, deps: Deps, settings: Settings
) -> TenantCreated:
    access = deps.tenant_kafka
    if access is not None:  # Kafka would refuse its topics: refuse the tenant before anything exists
        await _kafka(
            refuse_collision(access, body.tenant_id), body.tenant_id, "kafka-unavailable", "POST /v1/admin/tenants"
        )
    allowlist = checked_allowlist(body.ip_allowlist, force=body.force_allowlist, settings=settings.allowlist)

    def created(record: TenantRecord) -> AuditEntry:  # appended in the tenant's own transaction
        details = {
            "name": record.name,
            "rate_limit": record.rate_limit,
            "ip_allowlist": [str(n) for n in record.ip_allowlist],
        }
        return AuditEntry(record.tenant_id, actor, "tenant.create", record.tenant_id, client_ip(request), details)

    record = await deps.tenants.create_tenant(body.tenant_id, body.name, body.rate_limit, allowlist, audit=created)
    if record is None:
        raise Problem(409, f"tenant {body.tenant_id!r} already exists", slug="tenant-exists")
    kafka = None
    if access is not None:
        kafka = await _issue_kafka_credentials(access, settings, deps, record.tenant_id, actor, client_ip(request))
    return TenantCreated(**tenant_view(record).model_dump(), kafka=kafka)


@router.get("/tenants/{tenant_id}", response_model=TenantView, responses=problem_responses(*ADMIN_PROBLEMS, 404))
async def get_tenant(tenant_id: TenantIdPath, _actor: Admin, deps: Deps) -> TenantView:
    return tenant_view(await require_tenant(deps, tenant_id))


@router.post(
    "/tenants/{tenant_id}/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=problem_responses(*ADMIN_PROBLEMS, 404),
    summary="Create an API key; the secret is returned only once",
)
async def create_api_key(
    tenant_id: TenantIdPath, body: ApiKeyIn, request: Request, actor: Admin, deps: Deps
) -> ApiKeyCreated:
    check_key_lifetime(await require_tenant(deps, tenant_id), body.expires_at)
    secret = new_api_key()
    scopes = list(dict.fromkeys(body.scopes))

    def created(record: ApiKeyRecord) -> AuditEntry:  # in the key's transaction: no secret without its audit row
        expires_at = record.expires_at.isoformat() if record.expires_at else None
        details = {"name": record.name, "scopes": scopes, "expires_at": expires_at}
        return AuditEntry(tenant_id, actor, "api_key.create", record.key_id, client_ip(request), details)

    record = await deps.tenants.create_key(tenant_id, secret, body.name, scopes, body.expires_at, audit=created)
    return ApiKeyCreated(
        key_id=record.key_id,
        tenant_id=tenant_id,
        name=record.name,
        scopes=list(record.scopes),
        created_at=record.created_at,
        expires_at=record.expires_at,
        api_key=secret,
    )


@router.delete(
    "/tenants/{tenant_id}/api-keys/{key_id}", status_code=204, responses=problem_responses(*ADMIN_PROBLEMS, 404)
)
async def revoke_api_key(
    tenant_id: TenantIdPath,
    key_id: KeyIdPath,
    request: Request,
    actor: Admin,
    deps: Deps,
) -> None:
    revoked = AuditEntry(tenant_id, actor, "api_key.revoke", key_id, client_ip(request))
    # Admin keys (tenant `_platform`) are revoked through /v1/admin/admin-keys, as admin_key.revoke.
    if reserved_tenant(tenant_id) or not await deps.tenants.revoke_key(tenant_id, key_id, audit=revoked):
        raise Problem(404, f"no active key {key_id!r} for tenant {tenant_id!r}", slug="api-key-not-found")


@router.get(
    "/tenants/{tenant_id}/audit",
    response_model=AuditPage,
    responses=problem_responses(*ADMIN_PROBLEMS, 404),
    summary="Audit log, newest first",
)
async def read_audit_log(
    tenant_id: TenantIdPath,
    _actor: Admin,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="next_before of the previous page")] = None,
) -> AuditPage:
    await require_tenant(deps, tenant_id, platform=True)
    records = await deps.audit.list(tenant_id, limit=limit, before=before)
    items = [
        AuditEntryView(
            audit_id=r.audit_id,
            actor=r.actor,
            action=r.action,
            resource=r.resource,
            client_ip=r.client_ip,
            details=r.details,
            at=r.at,
            outcome=r.outcome,
            trace_id=r.trace_id,
            seq=r.seq,
        )
        for r in records
    ]
    return AuditPage(items=items, next_before=items[-1].audit_id if len(items) == limit else None)


@router.post(
    "/tenants/{tenant_id}/kafka-credentials",
    response_model=KafkaCredentialsView,
    responses=problem_responses(*ADMIN_PROBLEMS, 404, 409, 503),
    summary="Rotate the tenant's Kafka password (and finish any incomplete provisioning); returned only once",
)
async def rotate_kafka_credentials(
    tenant_id: TenantIdPath, request: Request, actor: Admin, deps: Deps, settings: Settings
) -> KafkaCredentialsView:
    refuse_deleted(await require_tenant(deps, tenant_id))
    return await _issue_kafka_credentials(_require_kafka(deps), settings, deps, tenant_id, actor, client_ip(request))


@router.delete(
    "/tenants/{tenant_id}",
    status_code=204,
    responses=problem_responses(*ADMIN_PROBLEMS, 404, 503),
    summary="Offboard a tenant: disable it, revoke every API key, remove its Kafka topics, user and grants; "
    "its data is purged after the retention job's grace period",
)
async def delete_tenant(tenant_id: TenantIdPath, request: Request, actor: Admin, deps: Deps) -> None:
    await require_tenant(deps, tenant_id)  # 404 for the reserved `_platform` too
    ip = client_ip(request)
    # Disabled (every gateway refuses its keys and intake within a second) and marked for the purge (purge.py).
    marked = AuditEntry(tenant_id, actor, "tenant.disable", tenant_id, ip, {"disabled": True, "deleted": True})
    await deps.tenants.update_tenant(tenant_id, TenantUpdate(disabled=True, deleted=True), audit=lambda _: marked)

    def revoked_all(count: int) -> AuditEntry:  # in the revocation's transaction
        return AuditEntry(tenant_id, actor, "api_key.revoke_all", tenant_id, ip, {"revoked_api_keys": count})

    revoked = await deps.tenants.revoke_all_keys(tenant_id, audit=revoked_all)
    if deps.tenant_kafka is not None:
        retry = f"DELETE /v1/admin/tenants/{tenant_id}"
        await _kafka(deps.tenant_kafka.deprovision(tenant_id), tenant_id, "kafka-deprovisioning-failed", retry)
    details = {"revoked_api_keys": revoked, "kafka_access_removed": deps.tenant_kafka is not None}
    await deps.audit.record(AuditEntry(tenant_id, actor, "tenant.delete", tenant_id, client_ip(request), details))


def _require_kafka(deps: GatewayDeps) -> TenantKafkaAccess:
    if deps.tenant_kafka is None:
        raise Problem(
            503,
            "tenant Kafka provisioning is off (GATEWAY_KAFKA_PROVISIONER_USERNAME/PASSWORD are not set)",
            slug="kafka-provisioning-disabled",
        )
    return deps.tenant_kafka


async def _issue_kafka_credentials(
    access: TenantKafkaAccess, settings: GatewaySettings, deps: GatewayDeps, tenant_id: str, actor: str, ip: str
) -> KafkaCredentialsView:
    """Provision (or finish provisioning) under a new password; a failure is audited and answered 503 with how
    to finish it, never left silent."""
    retry = f"POST /v1/admin/tenants/{tenant_id}/kafka-credentials"
    provisioning = issue_credentials(access, tenant_id, tenant_listener(settings))
    try:
        credentials = await _kafka(provisioning, tenant_id, "kafka-provisioning-incomplete", retry)
    except Problem as problem:
        failure = {"problem": problem.type, "detail": problem.detail[:500]}
        failed = AuditEntry(tenant_id, actor, "tenant.kafka.failed", tenant_id, ip, failure, outcome="error")
        await deps.audit.record(failed)
        raise
    topics = [credentials.documents_topic, credentials.queries_topic, credentials.answers_topic]
    details = {"username": credentials.username, "topics": topics, "group_prefix": credentials.group_prefix}
    await deps.audit.record(AuditEntry(tenant_id, actor, "tenant.kafka.credentials", credentials.username, ip, details))
    return credentials_view(credentials)


async def _kafka(step: Awaitable[T], tenant_id: str, slug: str, retry: str) -> T:
    """`step`'s result; its TenantTopicCollision as 409, its TenantKafkaError as a 503 saying how to finish (every
    step is idempotent)."""
    try:
        return await step
    except TenantTopicCollision as exc:
        raise Problem(409, str(exc), slug="tenant-topic-collision") from exc
    except TenantKafkaError as exc:
        # Kafka's error text stays in the log (with the correlation id the 503 carries).
        log.warning("tenant kafka change incomplete", tenant_id=tenant_id, error=repr(exc))
        raise Problem(
            503,
            f"Kafka did not complete the change for tenant {tenant_id!r}; retry with {retry}",
            slug=slug,
            headers={"Retry-After": "5"},
            extensions={"tenant_id": tenant_id, "retry": retry},
        ) from exc

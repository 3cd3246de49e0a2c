"""Admin API (Bearer GATEWAY_ADMIN_TOKEN): tenants, API keys, audit log. Every write is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, require_admin
from ragstream_gateway.models import (
    TENANT_ID_PATTERN,
    ApiKeyCreated,
    ApiKeyIn,
    AuditEntryView,
    AuditPage,
    TenantIn,
    TenantView,
)
from ragstream_gateway.ports import AuditEntry, TenantRecord
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.security import new_api_key

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
TenantIdPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
ADMIN_PROBLEMS = (401, 403, 422)


def tenant_view(record: TenantRecord) -> TenantView:
    return TenantView(
        tenant_id=record.tenant_id,
        name=record.name,
        rate_limit=record.rate_limit,
        ip_allowlist=[str(network) for network in record.ip_allowlist],
        created_at=record.created_at,
    )


async def _require_tenant(deps: GatewayDeps, tenant_id: str) -> TenantRecord:
    tenant = await deps.tenants.get_tenant(tenant_id)
    if tenant is None:
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return tenant


@router.post("/tenants", status_code=201, response_model=TenantView, responses=problem_responses(*ADMIN_PROBLEMS, 409))
async def create_tenant(body: TenantIn, request: Request, actor: Admin, deps: Deps) -> TenantView:
    record = await deps.tenants.create_tenant(body.tenant_id, body.name, body.rate_limit, body.ip_allowlist)
    if record is None:
        raise Problem(409, f"tenant {body.tenant_id!r} already exists", slug="tenant-exists")
    await deps.audit.record(
        AuditEntry(
            record.tenant_id,
            actor,
            "tenant.create",
            record.tenant_id,
            client_ip(request),
            {
                "name": record.name,
                "rate_limit": record.rate_limit,
                "ip_allowlist": [str(n) for n in record.ip_allowlist],
            },
        )
    )
    return tenant_view(record)


@router.get("/tenants/{tenant_id}", response_model=TenantView, responses=problem_responses(*ADMIN_PROBLEMS, 404))
async def get_tenant(tenant_id: TenantIdPath, _actor: Admin, deps: Deps) -> TenantView:
    return tenant_view(await _require_tenant(deps, tenant_id))


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
    await _require_tenant(deps, tenant_id)
    secret = new_api_key()
    scopes = list(dict.fromkeys(body.scopes))
    record = await deps.tenants.create_key(tenant_id, secret, body.name, scopes, body.expires_at)
    await deps.audit.record(
        AuditEntry(
            tenant_id,
            actor,
            "api_key.create",
            record.key_id,
            client_ip(request),
            {
                "name": record.name,
                "scopes": scopes,
                "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            },
        )
    )
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
    key_id: Annotated[str, Path(max_length=64)],
    request: Request,
    actor: Admin,
    deps: Deps,
) -> None:
    if not await deps.tenants.revoke_key(tenant_id, key_id):
        raise Problem(404, f"no active key {key_id!r} for tenant {tenant_id!r}", slug="api-key-not-found")
    await deps.audit.record(AuditEntry(tenant_id, actor, "api_key.revoke", key_id, client_ip(request)))


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
    await _require_tenant(deps, tenant_id)
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
        )
        for r in records
    ]
    return AuditPage(items=items, next_before=items[-1].audit_id if len(items) == limit else None)

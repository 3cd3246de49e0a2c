"""Admin API over key lifecycles: list a tenant's keys, rotate one with a grace period, and the admin keys.

Listings never include a secret or its hash. A rotation issues the new key (shown once, in the 201) and leaves
the old one working until the grace period ends, then refused (401) on every gateway: the change is pushed to
their key caches (LISTEN/NOTIFY) when it commits. New and rotated keys expire no later than the tenant's
`max_key_lifetime_s`. Admin keys are keys of the reserved tenant `_platform` with the `admin` scope; creating,
rotating and revoking them is recorded in the `_platform` audit log under the acting admin. Every change here
commits together with its audit row (the directory appends it in the change's transaction).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, require_admin
from ragstream_gateway.key_models import (
    AdminKeyCreated,
    AdminKeyIn,
    ApiKeyPage,
    ApiKeyRotated,
    ApiKeyView,
    RotateIn,
    key_view,
)
from ragstream_gateway.ports import ApiKeyRecord, AuditEntry, KeyAlreadyRotated, RotatedKey, TenantRecord
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.routes.params import KeyIdPath, TenantIdPath
from ragstream_gateway.security import PLATFORM_TENANT, SCOPE_ADMIN, new_api_key, reserved_tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
PROBLEMS = (401, 403, 422, 429)


async def require_tenant(deps: GatewayDeps, tenant_id: str, *, platform: bool = False) -> TenantRecord:
    """The tenant, or 404; reserved tenants (`_platform`) only where `platform` allows them."""
    tenant = None if reserved_tenant(tenant_id) and not platform else await deps.tenants.get_tenant(tenant_id)
    if tenant is None:
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return tenant


def check_key_lifetime(tenant: TenantRecord, expires_at: datetime | None) -> None:
    """422 for an expiry past the tenant's maximum key lifetime (an absent one is capped by the store)."""
    if expires_at is None or tenant.max_key_lifetime_s is None:
        return
    latest = datetime.now(UTC) + timedelta(seconds=tenant.max_key_lifetime_s)
    if expires_at.astimezone(UTC) > latest:
        raise Problem(
            422,
            f"expires_at is past the tenant's maximum key lifetime ({tenant.max_key_lifetime_s} s from now)",
            slug="key-lifetime-exceeded",
            extensions={"max_key_lifetime_s": tenant.max_key_lifetime_s},
        )


@router.get(
    "/tenants/{tenant_id}/api-keys",
    response_model=ApiKeyPage,
    responses=problem_responses(*PROBLEMS, 404),
    summary="A tenant's API keys, newest first (never their secrets)",
)
async def list_api_keys(
    tenant_id: TenantIdPath, _actor: Admin, deps: Deps, limit: Limit = 100, cursor: Cursor = None
) -> ApiKeyPage:
    await require_tenant(deps, tenant_id)
    return await _page(deps, tenant_id, limit, cursor)


@router.post(
    "/tenants/{tenant_id}/api-keys/{key_id}/rotate",
    status_code=201,
    response_model=ApiKeyRotated,
    responses=problem_responses(*PROBLEMS, 404, 409),
    summary="Replace an API key; the old one keeps working for grace_seconds. The new secret is shown only once",
)
async def rotate_api_key(
    tenant_id: TenantIdPath, key_id: KeyIdPath, body: RotateIn, request: Request, actor: Admin, deps: Deps
) -> ApiKeyRotated:
    tenant = await require_tenant(deps, tenant_id)
    return await _rotate(deps, tenant, key_id, body, actor, client_ip(request), "api_key.rotate")


@router.post(
    "/admin-keys",
    status_code=201,
    response_model=AdminKeyCreated,
    responses=problem_responses(*PROBLEMS),
    summary="Create an admin API key (scope `admin`); the secret is returned only once",
)
async def create_admin_key(body: AdminKeyIn, request: Request, actor: Admin, deps: Deps) -> AdminKeyCreated:
    platform = await require_tenant(deps, PLATFORM_TENANT, platform=True)
    check_key_lifetime(platform, body.expires_at)
    secret, ip = new_api_key(), client_ip(request)

    def audit(record: ApiKeyRecord) -> AuditEntry:
        details = {"name": record.name, "expires_at": record.expires_at.isoformat() if record.expires_at else None}
        return AuditEntry(PLATFORM_TENANT, actor, "admin_key.create", record.key_id, ip, details)

    record = await deps.tenants.create_key(
        PLATFORM_TENANT, secret, body.name, [SCOPE_ADMIN], body.expires_at, audit=audit
    )
    return AdminKeyCreated(**key_view(record), api_key=secret)


@router.get(
    "/admin-keys",
    response_model=ApiKeyPage,
    responses=problem_responses(*PROBLEMS),
    summary="The admin API keys, newest first (never their secrets)",
)
async def list_admin_keys(_actor: Admin, deps: Deps, limit: Limit = 100, cursor: Cursor = None) -> ApiKeyPage:
    return await _page(deps, PLATFORM_TENANT, limit, cursor)


@router.delete("/admin-keys/{key_id}", status_code=204, responses=problem_responses(*PROBLEMS, 404))
async def revoke_admin_key(key_id: KeyIdPath, request: Request, actor: Admin, deps: Deps) -> None:
    entry = AuditEntry(PLATFORM_TENANT, actor, "admin_key.revoke", key_id, client_ip(request))
    if not await deps.tenants.revoke_key(PLATFORM_TENANT, key_id, audit=entry):
        raise Problem(404, f"no active admin key {key_id!r}", slug="api-key-not-found")


@router.post(
    "/admin-keys/{key_id}/rotate",
    status_code=201,
    response_model=ApiKeyRotated,
    responses=problem_responses(*PROBLEMS, 404, 409),
    summary="Replace an admin key; the old one keeps working for grace_seconds. The new secret is shown only once",
)
async def rotate_admin_key(
    key_id: KeyIdPath, body: RotateIn, request: Request, actor: Admin, deps: Deps
) -> ApiKeyRotated:
    platform = await require_tenant(deps, PLATFORM_TENANT, platform=True)
    return await _rotate(deps, platform, key_id, body, actor, client_ip(request), "admin_key.rotate")


async def _page(deps: GatewayDeps, tenant_id: str, limit: int, cursor: str | None) -> ApiKeyPage:
    try:
        listing = await deps.tenants.list_keys(tenant_id, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise Problem(422, str(exc), slug="invalid-cursor") from exc
    return ApiKeyPage(items=[ApiKeyView(**key_view(r)) for r in listing.items], next_cursor=listing.next_cursor)


async def _rotate(
    deps: GatewayDeps, tenant: TenantRecord, key_id: str, body: RotateIn, actor: str, ip: str, action: str
) -> ApiKeyRotated:
    check_key_lifetime(tenant, body.expires_at)
    secret = new_api_key()

    def audit(rotated: RotatedKey) -> AuditEntry:
        new, old = rotated.new, rotated.old
        details = {
            "new_key_id": new.key_id,
            "grace_seconds": body.grace_seconds,
            "old_key_expires_at": old.expires_at.isoformat() if old.expires_at else None,
            "new_key_expires_at": new.expires_at.isoformat() if new.expires_at else None,
        }
        return AuditEntry(tenant.tenant_id, actor, action, key_id, ip, details)

    try:
        rotated = await deps.tenants.rotate_key(
            tenant.tenant_id, key_id, secret, body.grace_seconds, body.expires_at, audit=audit
        )
    except KeyAlreadyRotated as exc:
        raise Problem(409, f"{exc}; rotate that one instead", slug="api-key-already-rotated") from exc
    if rotated is None:
        raise Problem(404, f"no active key {key_id!r} for tenant {tenant.tenant_id!r}", slug="api-key-not-found")
    return ApiKeyRotated(**key_view(rotated.new), api_key=secret, replaces=ApiKeyView(**key_view(rotated.old)))

"""GET /v1/admin/tenants: the tenant listing. PATCH /v1/admin/tenants/{id}: change a tenant's name, rate limit,
allowlist, quotas, key lifetime, or disable it.

The listing is keyset-paginated by tenant_id (stable while tenants are created); offboarded tenants are left out
unless asked for. Like every admin read it is audited by require_admin, in the `_platform` log.

Only the fields present change. The row update NOTIFYs every gateway in its transaction, so new limits,
allowlists and a disabled mark apply to cached keys within a second everywhere. A disabled tenant is refused
everywhere: its API keys (403 `tenant-disabled`, token minting included) and its Kafka intake (events to the DLQ
as `tenant-disabled`, redrivable once it is enabled again). Quotas are stored by the quota store (quotas.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from ragstream_gateway.allowlists import checked_allowlist
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, get_settings, require_admin
from ragstream_gateway.key_models import TenantPatch
from ragstream_gateway.models import TenantView
from ragstream_gateway.ports import AuditEntry, TenantUpdate
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.routes.admin import refuse_deleted, tenant_view
from ragstream_gateway.routes.admin_keys import require_tenant
from ragstream_gateway.routes.params import TenantIdPath
from ragstream_gateway.tenant_models import TenantListItem, TenantPage

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
IncludeDeleted = Annotated[bool, Query(description="Also list offboarded (deleted) tenants")]
_NULLABLE: tuple[Literal["rate_limit", "max_key_lifetime_s"], ...] = ("rate_limit", "max_key_lifetime_s")


@router.get(
    "/tenants",
    response_model=TenantPage,
    responses=problem_responses(401, 403, 422, 429),
    summary="List tenants by tenant_id (keyset pages); deleted tenants only with include_deleted=true",
)
async def list_tenants(
    _actor: Admin, deps: Deps, limit: Limit = 50, cursor: Cursor = None, include_deleted: IncludeDeleted = False
) -> TenantPage:
    try:
        listing = await deps.tenants.list_tenants(limit=limit, cursor=cursor, include_deleted=include_deleted)
    except ValueError as exc:
        raise Problem(422, str(exc), slug="invalid-cursor") from exc
    items = [TenantListItem(**tenant_view(r).model_dump(), deleted=r.deleted) for r in listing.items]
    return TenantPage(items=items, next_cursor=listing.next_cursor)


@router.patch(
    "/tenants/{tenant_id}",
    response_model=TenantView,
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
    summary="Update a tenant: name, rate_limit, ip_allowlist, quotas, max_key_lifetime_s, disabled",
)
async def update_tenant(
    tenant_id: TenantIdPath, body: TenantPatch, request: Request, actor: Admin, deps: Deps, settings: Settings
) -> TenantView:
    refuse_deleted(await require_tenant(deps, tenant_id))  # before the quotas below are stored
    fields = body.model_fields_set
    allowlist = None
    if body.ip_allowlist is not None:
        allowlist = tuple(checked_allowlist(body.ip_allowlist, force=body.force_allowlist, settings=settings.allowlist))
    if body.quotas is not None and deps.quotas is None:
        raise Problem(503, "this gateway enforces no quotas", slug="quotas-disabled")
    update = TenantUpdate(
        name=body.name,
        rate_limit=body.rate_limit,
        ip_allowlist=allowlist,
        disabled=body.disabled,
        max_key_lifetime_s=body.max_key_lifetime_s,
        reset=frozenset(name for name in _NULLABLE if name in fields and getattr(body, name) is None),
    )
    if body.quotas is not None and deps.quotas is not None:  # first: the audit row below records it
        await deps.quotas.set_quotas(tenant_id, body.quotas.quotas())
    entry = AuditEntry(tenant_id, actor, "tenant.update", tenant_id, client_ip(request), _changes(body, allowlist))
    record = await deps.tenants.update_tenant(tenant_id, update, audit=lambda _: entry)
    if record is None:  # deleted meanwhile (the update skips deleted tenants)
        refuse_deleted(await require_tenant(deps, tenant_id))
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return tenant_view(record)


def _changes(body: TenantPatch, allowlist: tuple[object, ...] | None) -> dict[str, Any]:
    """What the audit log records: the fields sent, as stored."""
    sent = body.model_fields_set - {"ip_allowlist", "force_allowlist"}
    changes: dict[str, Any] = body.model_dump(include=sent)
    if allowlist is not None:
        changes["ip_allowlist"] = [str(network) for network in allowlist]
        changes["force_allowlist"] = body.force_allowlist
    return changes

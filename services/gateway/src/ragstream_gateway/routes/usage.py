"""Metered usage and cost over HTTP (usage.py): a tenant's own (API key with `documents:read`), any tenant's
(admin), and budgets (admin).

The admin path's quota view keeps GET /v1/admin/tenants/{id}/usage (routes/quotas.py); metered usage is
GET /v1/admin/tenants/{id}/usage/metered beside it. Admin reads are audited by `require_admin`, the budget
write by the audit trail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps, Principal, get_deps, get_settings, require_admin, require_scope
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.routes.admin_keys import require_tenant
from ragstream_gateway.routes.params import TenantIdPath
from ragstream_gateway.security import SCOPE_DOCUMENTS_READ
from ragstream_gateway.usage import Granularity, UsageRangeError, UsageService
from ragstream_gateway.usage_models import BudgetIn, BudgetView, CostView, UsageView, budget_view, cost_view, usage_view

router = APIRouter(prefix="/v1/usage", tags=["usage"])
admin_router = APIRouter(prefix="/v1/admin/tenants/{tenant_id}", tags=["admin"])
Deps = Annotated[GatewayDeps, Depends(get_deps)]
Reader = Annotated[Principal, Depends(require_scope(SCOPE_DOCUMENTS_READ))]
Admin = Annotated[str, Depends(require_admin)]
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_only(value: object) -> object:
    """pydantic also reads `0.5` as Unix seconds and a bare date as midnight: only RFC 3339 date-times here."""
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2027-01-31T00:00:00Z")
    return value


Moment = Annotated[datetime, BeforeValidator(_rfc3339_only)]
From = Annotated[Moment | None, Query(alias="from", description="Start (RFC 3339); default: `to` minus a day")]
To = Annotated[Moment | None, Query(description="End, exclusive (RFC 3339); default: now")]
CostFrom = Annotated[
    Moment | None, Query(alias="from", description="Start (RFC 3339); default: the first of `to`'s month (UTC)")
]
GranularityQuery = Annotated[Granularity, Query(description="Bucket size")]
_USAGE_PROBLEMS = problem_responses(401, 403, 422, 429, 503)
_ADMIN_PROBLEMS = problem_responses(401, 403, 404, 422, 429, 503)


async def usage_service(deps: Deps, settings: Annotated[GatewaySettings, Depends(get_settings)]) -> UsageService:
    """The usage service over the deps' store; 503 on a gateway without one."""
    if deps.usage is None:
        raise Problem(503, "usage metering is not available on this gateway", slug="usage-unavailable")
    return UsageService(deps.usage, settings.usage)


Usage = Annotated[UsageService, Depends(usage_service)]


async def _report(
    usage: UsageService, tenant_id: str, start: datetime | None, end: datetime | None, granularity: Granularity
) -> UsageView:
    try:
        return usage_view(await usage.report(tenant_id, start, end, granularity, datetime.now(UTC)))
    except UsageRangeError as exc:
        raise Problem(422, str(exc), slug="invalid-usage-range") from None


async def _cost(usage: UsageService, tenant_id: str, start: datetime | None, end: datetime | None) -> CostView:
    try:
        return cost_view(await usage.cost(tenant_id, start, end, datetime.now(UTC)))
    except UsageRangeError as exc:
        raise Problem(422, str(exc), slug="invalid-usage-range") from None


@router.get("", response_model=UsageView, responses=_USAGE_PROBLEMS, summary="This tenant's metered usage")
async def own_usage(
    principal: Reader, usage: Usage, from_: From = None, to: To = None, granularity: GranularityQuery = "hour"
) -> UsageView:
    return await _report(usage, principal.tenant_id, from_, to, granularity)


@router.get("/cost", response_model=CostView, responses=_USAGE_PROBLEMS, summary="This tenant's usage cost")
async def own_cost(principal: Reader, usage: Usage, from_: CostFrom = None, to: To = None) -> CostView:
    return await _cost(usage, principal.tenant_id, from_, to)


@admin_router.get(
    "/usage/metered", response_model=UsageView, responses=_ADMIN_PROBLEMS, summary="A tenant's metered usage"
)
async def tenant_usage(
    tenant_id: TenantIdPath,
    _actor: Admin,
    deps: Deps,
    usage: Usage,
    from_: From = None,
    to: To = None,
    granularity: GranularityQuery = "hour",
) -> UsageView:
    await require_tenant(deps, tenant_id)
    return await _report(usage, tenant_id, from_, to, granularity)


@admin_router.get("/usage/cost", response_model=CostView, responses=_ADMIN_PROBLEMS, summary="A tenant's usage cost")
async def tenant_cost(
    tenant_id: TenantIdPath, _actor: Admin, deps: Deps, usage: Usage, from_: CostFrom = None, to: To = None
) -> CostView:
    await require_tenant(deps, tenant_id)
    return await _cost(usage, tenant_id, from_, to)


@admin_router.put(
    "/budget",
    response_model=BudgetView,
    responses=_ADMIN_PROBLEMS,
    summary="Set a tenant's monthly budget (an alert fires when its spend crosses it)",
)
async def set_budget(tenant_id: TenantIdPath, body: BudgetIn, _actor: Admin, deps: Deps, usage: Usage) -> BudgetView:
    await require_tenant(deps, tenant_id)
    try:
        return budget_view(await usage.set_budget(tenant_id, body.monthly_budget, body.currency))
    except UsageRangeError as exc:
        raise Problem(422, str(exc), slug="invalid-budget-currency") from None
    except LookupError:
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found") from None

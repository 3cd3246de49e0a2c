"""Quotas over HTTP: a tenant's usage against its quotas (admin), the question quota of the query routes, and
the problems a quota or the limits store answers with (installed by `create_app`).

Quotas themselves are set with PATCH /v1/admin/tenants/{id} (`quotas`), through `QuotaEnforcer.set_quotas`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from ragstream_common.logs import get_logger

from ragstream_gateway.deps import GatewayDeps, Principal, get_deps, require_admin, require_scope
from ragstream_gateway.problems import PROBLEM_TYPE_PREFIX, Problem, problem_response, problem_responses
from ragstream_gateway.quota_models import TenantUsageView, usage_view
from ragstream_gateway.quotas import QuotaEnforcer, QuotaExceeded
from ragstream_gateway.ratelimit import UNAVAILABLE_RETRY_AFTER_S, LimitStoreUnavailable
from ragstream_gateway.routes.params import TenantIdPath
from ragstream_gateway.security import SCOPE_QUERY

log = get_logger(__name__)
router = APIRouter(prefix="/v1/admin", tags=["admin"])
Deps = Annotated[GatewayDeps, Depends(get_deps)]


def _enforcer(deps: GatewayDeps) -> QuotaEnforcer:
    if deps.quotas is None:
        raise Problem(503, "this gateway enforces no quotas", slug="quotas-disabled")
    return deps.quotas


@router.get(
    "/tenants/{tenant_id}/usage",
    response_model=TenantUsageView,
    responses=problem_responses(401, 403, 404, 422, 429, 503),
    summary="A tenant's documents, stored bytes and questions today against its quotas",
)
async def tenant_usage(
    tenant_id: TenantIdPath, _actor: Annotated[object, Depends(require_admin)], deps: Deps
) -> TenantUsageView:
    quotas = _enforcer(deps)
    if await deps.tenants.get_tenant(tenant_id) is None:
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return usage_view(await quotas.usage(tenant_id))


async def count_question(principal: Annotated[Principal, Depends(require_scope(SCOPE_QUERY))], deps: Deps) -> Principal:
    """The query routes' caller, once the question is counted against its tenant's daily quota (429 past it)."""
    if deps.quotas is not None:
        await deps.quotas.charge_question(principal.tenant_id)
    return principal


async def _on_quota_exceeded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuotaExceeded)
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else {}
    return problem_response(
        request,
        429,
        detail=str(exc),
        type_=f"{PROBLEM_TYPE_PREFIX}quota-exceeded",
        title="Quota exceeded",
        headers=headers,
        extensions={"quota": exc.quota, "limit": exc.limit, "used": exc.used},
    )


async def _on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("limits store unavailable; refusing (fail closed)", path=request.url.path, error=repr(exc))
    return problem_response(
        request,
        503,
        detail="rate limits and quotas cannot be checked right now; retry shortly",
        type_=f"{PROBLEM_TYPE_PREFIX}rate-limit-unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        extensions={"retry_after_s": UNAVAILABLE_RETRY_AFTER_S},
    )


def install_quota_problems(app: FastAPI) -> None:
    """429 `quota-exceeded` (with `quota`, `limit`, `used`) and 503 `rate-limit-unavailable` (fail closed)."""
    app.add_exception_handler(QuotaExceeded, _on_quota_exceeded)
    app.add_exception_handler(LimitStoreUnavailable, _on_store_unavailable)

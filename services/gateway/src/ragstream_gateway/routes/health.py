"""Liveness and readiness, and for admins every worker's health. Prometheus scrapes /metrics on its own listener
(GATEWAY_METRICS_PORT), not here: the API port is the public one.

GET /v1/admin/health is always 200 once the caller is admitted: the report is the answer, `status` says whether all
is well (`ok`) or not (`degraded`). Workers are checked concurrently with a short deadline each
(service_health.py), alongside the gateway's readiness checks, so the call takes about one deadline at worst.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ragstream_gateway.deps import GatewayDeps, get_deps, get_service_health, require_admin
from ragstream_gateway.models import Health, Readiness
from ragstream_gateway.problems import problem_response, problem_responses
from ragstream_gateway.service_health import ServiceHealth, ServiceHealthSurvey

router = APIRouter(tags=["health"])
Deps = Annotated[GatewayDeps, Depends(get_deps)]


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(503),
    summary="Kafka and the database answer, and no consumer is stuck on a transient failure",
)
async def readyz(request: Request, deps: Deps) -> Response:
    checks = await deps.readiness.checks()
    if all(checks.values()):
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    failing = ", ".join(name for name, ok in checks.items() if not ok)
    return problem_response(
        request,
        503,
        detail=f"not ready: {failing}",
        type_="urn:ragstream:problem:not-ready",
        extensions={"checks": checks},
    )


class ServiceHealthView(BaseModel):
    name: str = Field(description="The service, as registered (ingest, embed, ...)")
    address: str = Field(description="Where its gRPC health service was asked (host:port)")
    status: str = Field(
        description="grpc.health.v1 status (SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN) or UNREACHABLE",
        examples=["SERVING"],
    )
    latency_ms: float = Field(description="How long the check took, dial included")
    detail: str | None = Field(default=None, description="Why it is not SERVING")


class SystemHealth(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="ok: every service SERVING and the gateway ready")
    services: list[ServiceHealthView]
    gateway: Readiness


def service_view(health: ServiceHealth) -> ServiceHealthView:
    return ServiceHealthView(
        name=health.name,
        address=health.address,
        status=health.status,
        latency_ms=health.latency_ms,
        detail=health.detail,
    )


def system_health(services: list[ServiceHealth], checks: dict[str, bool]) -> SystemHealth:
    ready = all(checks.values())
    gateway = Readiness(status="ready" if ready else "not_ready", checks=checks)
    healthy = ready and all(service.serving for service in services)
    views = [service_view(service) for service in services]
    return SystemHealth(status="ok" if healthy else "degraded", services=views, gateway=gateway)


@router.get(
    "/v1/admin/health",
    tags=["admin"],
    response_model=SystemHealth,
    responses=problem_responses(401, 403, 429),
    summary="Every worker's gRPC health and the gateway's readiness",
)
async def admin_health(
    _actor: Annotated[str, Depends(require_admin)],
    deps: Deps,
    survey: Annotated[ServiceHealthSurvey, Depends(get_service_health)],
) -> SystemHealth:
    services, checks = await asyncio.gather(survey.run(), deps.readiness.checks())
    return system_health(services, checks)

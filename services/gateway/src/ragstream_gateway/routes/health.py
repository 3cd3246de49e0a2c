"""Liveness and readiness. Prometheus scrapes /metrics on its own listener (GATEWAY_METRICS_PORT), not here:
the API port is the public one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ragstream_gateway.deps import GatewayDeps, get_deps
from ragstream_gateway.models import Health, Readiness
from ragstream_gateway.problems import problem_response, problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(503),
    summary="Kafka and the database answer, and no consumer is stuck on a transient failure",
)
async def readyz(request: Request, deps: Annotated[GatewayDeps, Depends(get_deps)]) -> Response:
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

"""Audit log integrity and options (admin): verify a tenant's hash chain; the tenant's question-text opt-in.

`GET .../audit/verify` recomputes every row's hash and the links between them (audit_chain.py, the same check as
`python -m ragstream_gateway.audit_verify`) and names the first row that does not verify. Reserved chains
(`_platform`: unknown credentials and failed admin calls; `_dlq`) are verified the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StrictBool

from ragstream_gateway.audit_chain import verify_chain
from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, require_admin
from ragstream_gateway.ports import AuditEntry, AuditStore
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.routes.params import TenantIdPath
from ragstream_gateway.security import reserved_tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
PROBLEMS = problem_responses(401, 403, 404, 422, 429, 503)


class AuditVerification(BaseModel):
    valid: bool
    entries: int = Field(description="Entries checked, up to and including the first bad one")
    first_bad_id: int | None = Field(description="audit_id of the first entry that does not verify")
    first_bad_seq: int | None = None
    problem: str | None = Field(default=None, description="What is wrong, when the chain does not verify")


class AuditSettings(BaseModel):
    question_text: StrictBool = Field(
        description="Record the text of questions and searches in the audit log; false keeps only their SHA-256"
    )


async def _store(deps: GatewayDeps, tenant_id: str) -> AuditStore:
    if deps.audit_store is None:
        raise Problem(503, "this gateway has no audit store configured", slug="audit-unavailable")
    if not reserved_tenant(tenant_id) and await deps.tenants.get_tenant(tenant_id) is None:
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return deps.audit_store


@router.get(
    "/tenants/{tenant_id}/audit/verify",
    response_model=AuditVerification,
    responses=PROBLEMS,
    summary="Verify the tenant's audit hash chain; names the first entry that was changed, removed or inserted",
)
async def verify_audit_log(tenant_id: TenantIdPath, _actor: Admin, deps: Deps) -> AuditVerification:
    result = await verify_chain(await _store(deps, tenant_id), tenant_id)
    return AuditVerification(
        valid=result.valid,
        entries=result.entries,
        first_bad_id=result.first_bad_id,
        first_bad_seq=result.first_bad_seq,
        problem=result.problem,
    )


@router.get("/tenants/{tenant_id}/audit/settings", response_model=AuditSettings, responses=PROBLEMS)
async def read_audit_settings(tenant_id: TenantIdPath, _actor: Admin, deps: Deps) -> AuditSettings:
    store = await _store(deps, tenant_id)
    return AuditSettings(question_text=await store.question_text(tenant_id))


@router.put(
    "/tenants/{tenant_id}/audit/settings",
    response_model=AuditSettings,
    responses=PROBLEMS,
    summary="Opt the tenant in (or out) of question text in its audit log",
)
async def update_audit_settings(
    tenant_id: TenantIdPath, body: AuditSettings, request: Request, actor: Admin, deps: Deps
) -> AuditSettings:
    store = await _store(deps, tenant_id)
    entry = AuditEntry(
        tenant_id, actor, "tenant.audit_settings", tenant_id, client_ip(request), {"question_text": body.question_text}
    )
    if not await store.set_question_text(tenant_id, body.question_text, entry):
        raise Problem(404, f"no tenant {tenant_id!r}", slug="tenant-not-found")
    return body

"""Token exchange: `POST /v1/auth/token` trades an API key for a short-lived tenant token for the gRPC APIs.

The token (an EdDSA JWT, ragstream_common.service_tokens) acts for the key's tenant and is addressed to the
workers a client may call directly (embed, retrieve, generate), with the gRPC scopes the key's own scopes
allow: `query` grants `search`, `embed` and `generate`. `reply` is never granted here: only workers answer
the gateway. Authentication, the tenant's allowlist and rate limit apply as on every other route.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from ragstream_common.logs import get_logger
from ragstream_common.service_tokens import SCOPE_EMBED, SCOPE_GENERATE, SCOPE_SEARCH, Audience, TokenMinter

from ragstream_gateway.deps import GatewayDeps, Principal, get_deps, get_token_minter, require_scope
from ragstream_gateway.ports import AuditEntry
from ragstream_gateway.problems import Problem, problem_responses
from ragstream_gateway.security import SCOPE_QUERY

log = get_logger(__name__)
router = APIRouter(prefix="/v1/auth", tags=["auth"])
# The gRPC scopes an API key's scope grants; tokens go to the services those scopes are served by.
GRPC_SCOPES = {SCOPE_QUERY: (SCOPE_SEARCH, SCOPE_EMBED, SCOPE_GENERATE)}
AUDIENCES: tuple[Audience, ...] = ("embed", "retrieve", "generate")


class TokenResponse(BaseModel):
    access_token: str = Field(description="Send as `authorization: Bearer <token>` gRPC metadata")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires; ask for a new one before")
    scope: str = Field(description="The granted gRPC scopes, space-separated")


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=problem_responses(401, 403, 429, 503),
    summary="Exchange the API key for a short-lived token for the gRPC APIs",
)
async def issue_token(
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(require_scope(SCOPE_QUERY))],
    deps: Annotated[GatewayDeps, Depends(get_deps)],
    minter: Annotated[TokenMinter | None, Depends(get_token_minter)],
) -> TokenResponse:
    if minter is None:
        raise Problem(503, "token issuance is not configured (TOKEN_SIGNING_KEY)", slug="tokens-disabled")
    scopes = sorted({grpc for scope in principal.scopes for grpc in GRPC_SCOPES.get(scope, ())})
    token = minter.mint(principal.tenant_id, scopes, AUDIENCES, subject=f"key:{principal.key_id}", fresh=True)
    details = {"scopes": scopes, "audience": list(AUDIENCES), "expires_in": minter.ttl_s}
    actor = principal.caller().actor
    try:
        await deps.audit.record(
            AuditEntry(principal.tenant_id, actor, "auth.token", request.url.path, principal.client_ip, details)
        )
    except Exception as exc:  # the audit trail is best effort here, as for refused keys
        log.error("audit write failed", action="auth.token", error=repr(exc))
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: tokens must not be cached
    return TokenResponse(access_token=token, expires_in=minter.ttl_s, scope=" ".join(scopes))

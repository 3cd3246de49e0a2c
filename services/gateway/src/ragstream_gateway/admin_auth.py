"""Who may call the admin API: the bootstrap token or an admin API key (the decision; deps.require_admin wires it).

- The bootstrap token (GATEWAY_ADMIN_TOKEN, at least 32 characters) acts as actor `admin` while it is set and
  GATEWAY_ADMIN_TOKEN_ENABLED is true; `make run` and scripts use it. Production creates admin keys with it
  and then disables it.
- Admin API keys are API keys of the reserved tenant `_platform` with the `admin` scope, looked up, cached,
  revoked, rotated and expired like tenant keys; each acts as `admin:<key_id>`.
- A tenant's key on an admin route is a valid credential without the right: 403 `admin-required`, recorded in
  its tenant's audit log. Anything else that fails is a 401, recorded in the `_platform` audit log with the
  client address, and counted against the address (ratelimit.py), which is refused with 429 past its limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.ports import AuditEntry, TenantDirectory
from ragstream_gateway.problems import Problem
from ragstream_gateway.security import (
    BOOTSTRAP_ACTOR,
    PLATFORM_TENANT,
    SCOPE_ADMIN,
    admin_actor,
    hash_api_key,
    reserved_tenant,
    tokens_match,
)

ANONYMOUS = "anonymous"
# Admin reads are audited with their outcome; these methods change nothing.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class AdminCheck:
    """The outcome: `actor` when admitted; otherwise why not, and whose audit log records it as whom."""

    actor: str | None
    reason: str = ""
    tenant_id: str = PLATFORM_TENANT
    recorded_actor: str = ANONYMOUS
    key_id: str | None = None

    @property
    def admitted(self) -> bool:
        return self.actor is not None

    @property
    def counts_as_guess(self) -> bool:
        """Refusals that may be someone guessing credentials: counted against the client address."""
        return self.reason != "not_admin"


def bootstrap_token(settings: GatewaySettings) -> str | None:
    if settings.admin_token is None or not settings.admin_token_enabled:
        return None
    return settings.admin_token.get_secret_value()


async def identify_admin(presented: str | None, settings: GatewaySettings, tenants: TenantDirectory) -> AdminCheck:
    if presented is None:
        return AdminCheck(None, "missing")
    token = bootstrap_token(settings)
    if token is not None and tokens_match(presented, token):
        return AdminCheck(BOOTSTRAP_ACTOR)
    grant = await tenants.find_key(hash_api_key(presented))
    if grant is None:
        return AdminCheck(None, "unknown_credential")
    if grant.tenant_id != PLATFORM_TENANT or SCOPE_ADMIN not in grant.scopes:
        return AdminCheck(None, "not_admin", grant.tenant_id, f"key:{grant.key_id}", grant.key_id)
    actor = admin_actor(grant.key_id)
    if grant.revoked or grant.expired:
        reason = "revoked" if grant.revoked else "rotated" if grant.replaced_by else "expired"
        return AdminCheck(None, reason, recorded_actor=actor, key_id=grant.key_id)
    return AdminCheck(actor, key_id=grant.key_id)


def refusal(check: AdminCheck) -> Problem:
    if check.reason == "not_admin":
        return Problem(403, "this is a tenant's API key; the admin API takes admin credentials", slug="admin-required")
    details = {
        "missing": "send an admin key or the bootstrap token as 'Authorization: Bearer <credential>'",
        "revoked": "the admin key is revoked",
        "expired": "the admin key has expired",
        "rotated": "the admin key was rotated and its grace period has ended",
    }
    detail = details.get(check.reason, "the admin credential is not valid")
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="ragstream-admin"'})


def refused_entry(check: AdminCheck, path: str, client_ip: str) -> AuditEntry:
    details = {"reason": check.reason}
    return AuditEntry(check.tenant_id, check.recorded_actor, "auth.refused", path, client_ip, details, outcome="denied")


def status_of(exc: Exception) -> int:
    """The status an exception out of an admin route is answered with (problems.py's handlers)."""
    if isinstance(exc, Problem):
        return exc.status
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    return 500


def outcome_of(status: int) -> str:
    """The audit log's outcome of an answered call (see AuditEntry.outcome)."""
    if status >= 500:
        return "error"
    if status in (401, 403):
        return "denied"
    return "refused" if status >= 400 else "success"


def read_entry(
    actor: str, method: str, path: str, query: str, tenant_id: str | None, status: int, client_ip: str
) -> AuditEntry:
    """An admin read: in the tenant's log when it named one that exists (it succeeded), else the platform's."""
    owner = tenant_id if tenant_id and not reserved_tenant(tenant_id) and status < 400 else PLATFORM_TENANT
    details: dict[str, object] = {"method": method, "query": query[:512], "status": status}
    if tenant_id and owner != tenant_id:
        details["tenant_id"] = tenant_id[:64]
    return AuditEntry(owner, actor, "admin.read", path, client_ip, details, outcome=outcome_of(status))

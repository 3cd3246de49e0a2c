"""Admin principals and tenant refusals at the HTTP layer over stand-in ports: the bootstrap token and admin keys,
audited refusals with the client address, the per-address failure budget, disabled tenants, rotated keys, admin
keys kept off tenant routes, audited reads; and the settings and bodies behind them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import AsyncMock

import httpx
import pytest
from fakes import envelope as fake_envelope
from pydantic import SecretStr, ValidationError
from rag.v1 import documents_pb2
from ragstream_gateway.admin_auth import identify_admin, outcome_of, read_entry
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.intake import TenantDisabled, bridge_intake
from ragstream_gateway.key_models import TenantPatch
from ragstream_gateway.models import TenantIn
from ragstream_gateway.ports import AuditEntry, KeyGrant, TenantRecord
from ragstream_gateway.ratelimit import TenantRateLimiter
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
TOKEN = "t" * 32
TENANT_KEY, ADMIN_KEY, OLD_KEY, OFF_KEY = "tenant-key", "admin-key", "rotated-key", "disabled-tenant-key"


GRANTS = {
    TENANT_KEY: grant(key_id="key_t"),
    ADMIN_KEY: grant("_platform", ("admin",), key_id="key_a"),
    OLD_KEY: grant(key_id="key_o", expires_at=datetime.now(UTC) - timedelta(seconds=1), replaced_by="key_n"),
    OFF_KEY: grant(key_id="key_d", tenant_disabled=True),
}


def deps_over(grants: Mapping[str, KeyGrant] = GRANTS, *, address_limit: str = "3/minute") -> GatewayDeps:
    limiter = TenantRateLimiter("async+memory://", "1000/minute", address_limit=address_limit)
    deps = gateway_deps(grants=grants, limiter=limiter)
    deps.tenants.get_tenant.return_value = None  # type: ignore[attr-defined]
    deps.registry.get.return_value = None  # type: ignore[attr-defined]
    return deps


def client(deps: GatewayDeps, ip: str = "192.0.2.1", **settings: Any) -> httpx.AsyncClient:
    settings.setdefault("admin_token", TOKEN)
    app = create_app(GatewaySettings(**settings), deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://gw")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def recorded(deps: GatewayDeps) -> list[AuditEntry]:
    return [call.args[0] for call in deps.audit.record.call_args_list]  # type: ignore[attr-defined]


async def test_the_bootstrap_token_and_admin_keys_are_admins_with_their_own_actors() -> None:
    deps = deps_over()
    async with client(deps) as gw:
        for secret, actor in ((TOKEN, "admin"), (ADMIN_KEY, "admin:key_a")):
            response = await gw.get("/v1/admin/tenants/acme", headers=bearer(secret))
            assert response.status_code == 404, response.text  # admitted; the stand-in knows no tenant
            read = recorded(deps)[-1]
            assert (read.actor, read.action, read.tenant_id, read.client_ip) == (
                actor,
                "admin.read",
                "_platform",
                "192.0.2.1",
            )
            assert read.details["status"] == 404 and read.outcome == "refused"


async def test_a_disabled_bootstrap_token_is_refused_and_admin_keys_still_work() -> None:
    deps = deps_over()
    async with client(deps, admin_token_enabled=False) as gw:
        assert (await gw.get("/v1/admin/tenants/acme", headers=bearer(TOKEN))).status_code == 401
        assert (await gw.get("/v1/admin/tenants/acme", headers=bearer(ADMIN_KEY))).status_code == 404
    async with client(deps, admin_token=None) as gw:
        assert (await gw.get("/v1/admin/tenants/acme", headers=bearer(TOKEN))).status_code == 401


async def test_failed_admin_authentication_is_audited_then_throttled_per_address() -> None:
    deps = deps_over()
    async with client(deps, ip="203.0.113.9") as attacker:
        statuses = [(await attacker.get("/v1/admin/admin-keys", headers=bearer("guess"))).status_code for _ in range(4)]
        throttled = await attacker.get("/v1/admin/admin-keys", headers=bearer(TOKEN))
    assert statuses == [401, 401, 401, 429]
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    refusals = [e for e in recorded(deps) if e.action == "auth.refused"]
    assert len(refusals) == 3
    assert {(e.tenant_id, e.actor, e.client_ip, e.outcome) for e in refusals} == {
        ("_platform", "anonymous", "203.0.113.9", "denied")
    }
    async with client(deps, ip="203.0.113.10") as elsewhere:
        assert (await elsewhere.get("/v1/admin/admin-keys", headers=bearer("guess"))).status_code == 401


async def test_admin_routes_are_rate_limited_per_admin() -> None:
    async with client(deps_over(), admin_rate_limit="2/minute") as gw:
        statuses = [(await gw.get("/v1/admin/tenants/acme", headers=bearer(TOKEN))).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]


async def test_keys_on_the_wrong_side_are_403() -> None:
    deps = deps_over()
    async with client(deps) as gw:
        tenant_on_admin = await gw.get("/v1/admin/tenants/acme", headers=bearer(TENANT_KEY))
        admin_on_tenant = await gw.get("/v1/documents", headers=bearer(ADMIN_KEY))
    assert tenant_on_admin.status_code == 403 and tenant_on_admin.json()["type"].endswith(":admin-required")
    assert admin_on_tenant.status_code == 403 and admin_on_tenant.json()["type"].endswith(":tenant-key-required")
    refusal = next(e for e in recorded(deps) if e.details.get("reason") == "not_admin")
    assert (refusal.tenant_id, refusal.actor) == ("acme", "key:key_t")  # in its own tenant's log


async def test_disabled_tenants_and_keys_past_their_grace_are_refused() -> None:
    deps = deps_over()
    async with client(deps) as gw:
        disabled = await gw.get("/v1/documents", headers=bearer(OFF_KEY))
        token = await gw.post("/v1/auth/token", headers=bearer(OFF_KEY))
        rotated = await gw.get("/v1/documents", headers=bearer(OLD_KEY))
        admin_rotated = await gw.get("/v1/admin/admin-keys", headers=bearer(OLD_KEY))
    assert disabled.status_code == 403 and disabled.json()["type"].endswith(":tenant-disabled")
    assert token.status_code == 403
    assert rotated.status_code == 401 and "rotated" in rotated.json()["detail"]
    assert admin_rotated.status_code == 403  # a tenant's key, rotated or not, is no admin credential
    reasons = {e.details.get("reason") for e in recorded(deps)}
    assert {"tenant_disabled", "rotated"} <= reasons


async def test_identify_admin_names_each_refusal() -> None:
    settings = GatewaySettings(admin_token=TOKEN)
    tenants = deps_over().tenants
    revoked_admin = {"r": grant("_platform", ("admin",), key_id="key_r", revoked=True)}
    assert (await identify_admin(None, settings, tenants)).reason == "missing"
    assert (await identify_admin("nope", settings, tenants)).reason == "unknown_credential"
    assert (await identify_admin(TENANT_KEY, settings, tenants)).reason == "not_admin"
    revoked = await identify_admin("r", settings, deps_over(revoked_admin).tenants)
    assert (revoked.reason, revoked.recorded_actor, revoked.counts_as_guess) == ("revoked", "admin:key_r", True)


def test_the_admin_token_must_be_long_and_an_empty_one_is_unset() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        GatewaySettings(admin_token="short-token")
    assert GatewaySettings(admin_token="").admin_token is None
    assert GatewaySettings(admin_token=SecretStr("x" * 32)).admin_token is not None


def test_reads_are_recorded_in_the_tenant_they_succeeded_for() -> None:
    ok = read_entry("admin", "GET", "/v1/admin/tenants/acme", "", "acme", 200, "10.0.0.1")
    missing = read_entry("admin", "GET", "/v1/admin/tenants/nope", "", "nope", 404, "10.0.0.1")
    platform = read_entry("admin", "GET", "/v1/admin/tenants/_platform/audit", "limit=5", "_platform", 200, "")
    assert (ok.tenant_id, missing.tenant_id, platform.tenant_id) == ("acme", "_platform", "_platform")
    assert missing.details["tenant_id"] == "nope" and platform.details["query"] == "limit=5"
    assert [outcome_of(s) for s in (200, 401, 404, 503)] == ["success", "denied", "refused", "error"]


def test_tenant_bodies_refuse_reserved_ids_and_meaningless_nulls() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        TenantIn(tenant_id="_platform", name="x")
    for field in ("name", "ip_allowlist", "disabled", "quotas"):
        with pytest.raises(ValidationError, match="cannot be null"):
            TenantPatch.model_validate({field: None})
    reset = TenantPatch.model_validate({"rate_limit": None, "max_key_lifetime_s": None})
    assert reset.model_fields_set == {"rate_limit", "max_key_lifetime_s"}
    with pytest.raises(ValidationError):
        TenantPatch.model_validate({"rate_limit": "often"})
    with pytest.raises(ValidationError):
        TenantPatch.model_validate({"max_key_lifetime_s": 5})


async def test_the_intake_bridge_refuses_a_disabled_tenants_events() -> None:
    class Gate:
        async def tenant_disabled(self, tenant_id: str) -> bool:
            return tenant_id == "acme.eu"

    sink = AsyncMock()
    document = documents_pb2.DocumentReceived(document_id="d1", version=1)
    envelope = fake_envelope(document, "k", topic="rag.tenant.acme.eu.documents.v1")
    with pytest.raises(TenantDisabled, match="tenant-disabled"):
        await bridge_intake([envelope], sink, Gate())
    sink.forward.assert_not_called()
    await bridge_intake([envelope], sink, None)
    sink.forward.assert_called_once()


async def test_a_read_refused_by_validation_is_audited_and_audit_failures_do_not_fail_reads() -> None:
    deps = deps_over()
    async with client(deps) as gw:
        response = await gw.get("/v1/admin/tenants/acme/api-keys", params={"limit": 0}, headers=bearer(TOKEN))
        assert response.status_code == 422
        assert recorded(deps)[-1].details["status"] == 422
        deps.audit.record.side_effect = RuntimeError("audit store down")  # type: ignore[attr-defined]
        assert (await gw.get("/v1/admin/tenants/acme", headers=bearer(TOKEN))).status_code == 404


async def test_quotas_in_a_patch_need_a_gateway_that_enforces_them() -> None:
    deps = deps_over()
    deps.tenants.get_tenant.return_value = TenantRecord("acme", "Acme", None, (), datetime.now(UTC))  # type: ignore[attr-defined]
    async with client(deps) as gw:
        response = await gw.patch(
            "/v1/admin/tenants/acme", json={"quotas": {"max_documents": 1}}, headers=bearer(TOKEN)
        )
    assert response.status_code == 503 and response.json()["type"].endswith(":quotas-disabled")
    deps.tenants.update_tenant.assert_not_called()  # type: ignore[attr-defined]

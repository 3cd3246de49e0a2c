"""GET /v1/admin/tenants over an in-memory directory: admin-only, audited like every admin read, keyset pages,
bounded limits, a malformed cursor as 422 problem+json, and deleted tenants only when asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from ragstream_gateway.adapters.tenant_admin_pg import decode_tenant_cursor, encode_tenant_cursor
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import AuditEntry, TenantListing, TenantRecord
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
TOKEN = "t" * 32
TENANT_KEY = "tenant-key"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CREATED = datetime(2024, 5, 1, tzinfo=UTC)
TENANTS = [
    TenantRecord("acme", "Acme", "10/second", (), CREATED),
    TenantRecord("gone", "", None, (), CREATED, disabled=True, deleted=True),
    TenantRecord("zeta", "Zeta", None, (), CREATED, disabled=True, max_key_lifetime_s=3600),
]


async def list_in_memory(*, limit: int, cursor: str | None, include_deleted: bool) -> TenantListing:
    """What the Postgres adapter does, over TENANTS (already in tenant_id order)."""
    after = decode_tenant_cursor(cursor) if cursor is not None else ""
    rows = [t for t in TENANTS if t.tenant_id > after and (include_deleted or not t.deleted)]
    page = rows[:limit]
    return TenantListing(page, encode_tenant_cursor(page[-1].tenant_id) if len(rows) > limit else None)


def deps_with_tenants() -> GatewayDeps:
    deps = gateway_deps(grants={TENANT_KEY: grant(key_id="key_t")})
    deps.tenants.list_tenants.side_effect = list_in_memory  # type: ignore[attr-defined]
    return deps


def client(deps: GatewayDeps) -> httpx.AsyncClient:
    app = create_app(GatewaySettings(admin_token=TOKEN), deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.1", 40000)), base_url="http://gw")


def recorded(deps: GatewayDeps) -> list[AuditEntry]:
    return [call.args[0] for call in deps.audit.record.call_args_list]  # type: ignore[attr-defined]


async def test_pages_follow_the_cursor_and_leave_deleted_tenants_out() -> None:
    deps = deps_with_tenants()
    async with client(deps) as gw:
        first = await gw.get("/v1/admin/tenants", params={"limit": 1}, headers=ADMIN)
        assert first.status_code == 200
        body = first.json()
        assert [t["tenant_id"] for t in body["items"]] == ["acme"] and body["next_cursor"]
        second = await gw.get("/v1/admin/tenants", params={"limit": 1, "cursor": body["next_cursor"]}, headers=ADMIN)
    assert [t["tenant_id"] for t in second.json()["items"]] == ["zeta"]
    assert second.json()["next_cursor"] is None
    assert body["items"][0] == {
        "tenant_id": "acme",
        "name": "Acme",
        "rate_limit": "10/second",
        "ip_allowlist": [],
        "created_at": "2024-05-01T00:00:00Z",
        "disabled": False,
        "max_key_lifetime_s": None,
        "deleted": False,
    }
    reads = [e for e in recorded(deps) if e.action == "admin.read"]
    assert len(reads) == 2 and reads[0].tenant_id == "_platform" and reads[0].resource == "/v1/admin/tenants"


async def test_deleted_tenants_are_listed_only_when_asked_for() -> None:
    async with client(deps_with_tenants()) as gw:
        default = await gw.get("/v1/admin/tenants", headers=ADMIN)
        everything = await gw.get("/v1/admin/tenants", params={"include_deleted": "true"}, headers=ADMIN)
    assert [t["tenant_id"] for t in default.json()["items"]] == ["acme", "zeta"]
    listed = {t["tenant_id"]: t["deleted"] for t in everything.json()["items"]}
    assert listed == {"acme": False, "gone": True, "zeta": False}


async def test_the_default_page_is_50_and_limits_outside_1_to_200_are_refused() -> None:
    deps = deps_with_tenants()
    async with client(deps) as gw:
        assert (await gw.get("/v1/admin/tenants", headers=ADMIN)).status_code == 200
        assert deps.tenants.list_tenants.call_args.kwargs["limit"] == 50  # type: ignore[attr-defined]
        for limit in (0, 201):
            refused = await gw.get("/v1/admin/tenants", params={"limit": limit}, headers=ADMIN)
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert (await gw.get("/v1/admin/tenants", params={"limit": 200}, headers=ADMIN)).status_code == 200


@pytest.mark.parametrize("cursor", ["not-base64!", encode_tenant_cursor("acme")[:-4], "WyJrZXkiLCAiYSJd"])
async def test_a_malformed_cursor_is_a_422_problem(cursor: str) -> None:
    async with client(deps_with_tenants()) as gw:
        response = await gw.get("/v1/admin/tenants", params={"cursor": cursor}, headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(":invalid-cursor")


async def test_only_admins_may_list_tenants() -> None:
    deps = deps_with_tenants()
    async with client(deps) as gw:
        anonymous = await gw.get("/v1/admin/tenants")
        tenant = await gw.get("/v1/admin/tenants", headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert anonymous.status_code == 401 and tenant.status_code == 403
    assert tenant.json()["type"].endswith(":admin-required")
    deps.tenants.list_tenants.assert_not_called()  # type: ignore[attr-defined]

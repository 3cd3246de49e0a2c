"""Key lifecycle, admin principals and tenant updates (issue 11) against real Postgres and Kafka: listings, rotation
with a grace period, maximum key lifetime, last use, PATCH of a tenant, disabled tenants, admin keys, the bootstrap
token, audited and throttled admin authentication, and changes pushed to another replica's key cache."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_gateway.adapters.key_cache import CachedTenantDirectory
from ragstream_gateway.adapters.key_events_pg import APPLICATION_NAME
from ragstream_gateway.adapters.key_usage_pg import PostgresKeyUsage
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps

pytestmark = pytest.mark.integration
TOKEN = "bootstrap-admin-token-for-key-lifecycle-tests"
BOOTSTRAP = {"Authorization": f"Bearer {TOKEN}"}
Gateway = tuple[GatewaySettings, GatewayDeps]


def settings_for(urls: dict[str, str], kafka: KafkaSettings, **changes: Any) -> GatewaySettings:
    return GatewaySettings(
        DATABASE_URL=urls["gateway"],
        admin_database_url=urls["gateway-admin"],
        kafka=kafka,
        admin_token=TOKEN,
        db_pool_size=4,
        # Pushed changes, not the TTL, must be what keeps replicas current.
        key_cache_ttl_s=300,
        unknown_key_rate_limit="5/minute",
        **changes,
    )


@pytest.fixture(scope="module")
async def gateway(
    kafka_principals: dict[str, KafkaSettings], service_database_urls: dict[str, str]
) -> AsyncIterator[Gateway]:
    # Principals first: their SCRAM credentials need a moment to reach the broker's authenticator.
    settings = settings_for(service_database_urls, kafka_principals["gateway"])
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


@pytest.fixture(scope="module")
async def replica(gateway: Gateway) -> AsyncIterator[Gateway]:
    """A second gateway over the same database: its own key cache and listener."""
    async with AsyncExitStack() as stack:
        yield gateway[0], await open_deps(gateway[0], stack)


def client_for(
    gateway: Gateway, headers: dict[str, str] | None = None, ip: str = "127.0.0.1", **settings: Any
) -> httpx.AsyncClient:
    app_settings = gateway[0].model_copy(update=settings) if settings else gateway[0]
    transport = httpx.ASGITransport(app=create_app(app_settings, gateway[1]), client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers or {})


def key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def admin(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway, BOOTSTRAP) as client:
        yield client


def problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if slug is not None:
        assert body["type"] == f"urn:ragstream:problem:{slug}", body
    return body


async def new_tenant(admin: httpx.AsyncClient, **fields: Any) -> str:
    tenant_id = f"kl-{uuid.uuid4().hex[:8]}"
    response = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Key tests", **fields})
    assert response.status_code == 201, response.text
    return tenant_id


async def new_key(admin: httpx.AsyncClient, tenant_id: str, **fields: Any) -> dict[str, Any]:
    response = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "k", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit_actions(admin: httpx.AsyncClient, tenant_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    return [e for e in items if e["action"] != "admin.read"]


async def test_keys_are_listed_newest_first_in_pages_without_secrets(admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    created = [await new_key(admin, tenant_id, name=f"key {n}") for n in range(3)]
    first = await admin.get(f"/v1/admin/tenants/{tenant_id}/api-keys", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    rest = (await admin.get(f"/v1/admin/tenants/{tenant_id}/api-keys", params={"cursor": page["next_cursor"]})).json()
    listed = page["items"] + rest["items"]
    assert [k["key_id"] for k in listed] == [k["key_id"] for k in reversed(created)] and rest["next_cursor"] is None
    for key, shown in zip(reversed(created), listed, strict=True):
        assert "api_key" not in shown and key["api_key"] not in first.text
        assert shown["key_prefix"] == key["api_key"][:8] and shown["scopes"] == key["scopes"]
        assert {"created_at", "expires_at", "last_used_at", "revoked_at"} <= shown.keys()
    problem(await admin.get(f"/v1/admin/tenants/{tenant_id}/api-keys", params={"cursor": "bogus"}), 422)
    problem(await admin.get("/v1/admin/tenants/no-such-tenant/api-keys"), 404, "tenant-not-found")


async def test_a_rotated_key_works_for_its_grace_period_then_is_refused(
    gateway: Gateway, admin: httpx.AsyncClient
) -> None:
    tenant_id = await new_tenant(admin)
    old = await new_key(admin, tenant_id, scopes=["documents:read"])
    rotate = f"/v1/admin/tenants/{tenant_id}/api-keys/{old['key_id']}/rotate"
    problem(await admin.post(rotate, json={"grace_seconds": 8 * 24 * 3600}), 422)
    response = await admin.post(rotate, json={"grace_seconds": 2})
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["api_key"] != old["api_key"] and new["scopes"] == ["documents:read"] and new["name"] == "k"
    assert new["replaces"]["key_id"] == old["key_id"] and new["replaces"]["replaced_by"] == new["key_id"]
    problem(await admin.post(rotate, json={"grace_seconds": 0}), 409, "api-key-already-rotated")
    async with (
        client_for(gateway, key_headers(old["api_key"])) as old_client,
        client_for(gateway, key_headers(new["api_key"])) as new_client,
    ):
        assert (await old_client.get("/v1/documents")).status_code == 200  # within the grace period
        assert (await new_client.get("/v1/documents")).status_code == 200
        await asyncio.sleep(2.2)
        assert "rotated" in problem(await old_client.get("/v1/documents"), 401, "unauthorized")["detail"]
        assert (await new_client.get("/v1/documents")).status_code == 200
    problem(await admin.post(rotate, json={"grace_seconds": 0}), 404, "api-key-not-found")
    problem(await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys/nope/rotate", json={"grace_seconds": 0}), 404)
    rotated = next(e for e in await audit_actions(admin, tenant_id) if e["action"] == "api_key.rotate")
    assert rotated["resource"] == old["key_id"] and rotated["details"]["new_key_id"] == new["key_id"]
    assert rotated["details"]["grace_seconds"] == 2 and rotated["actor"] == "admin"


async def test_rotation_keeps_the_old_lifetime_and_the_tenant_maximum_caps_keys(admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    in_two_days = datetime.now(UTC) + timedelta(days=2)
    old = await new_key(admin, tenant_id, expires_at=in_two_days.isoformat())
    rotate = f"/v1/admin/tenants/{tenant_id}/api-keys/{old['key_id']}/rotate"
    new = (await admin.post(rotate, json={"grace_seconds": 60})).json()
    assert abs(datetime.fromisoformat(new["expires_at"]) - in_two_days) < timedelta(seconds=30)
    patched = await admin.patch(f"/v1/admin/tenants/{tenant_id}", json={"max_key_lifetime_s": 3600})
    assert patched.status_code == 200 and patched.json()["max_key_lifetime_s"] == 3600
    capped = await new_key(admin, tenant_id)
    assert abs(datetime.fromisoformat(capped["expires_at"]) - datetime.now(UTC) - timedelta(hours=1)) < timedelta(
        seconds=30
    )
    too_long = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"expires_at": in_two_days.isoformat()})
    assert problem(too_long, 422, "key-lifetime-exceeded")["max_key_lifetime_s"] == 3600
    again = await admin.post(
        f"/v1/admin/tenants/{tenant_id}/api-keys/{new['key_id']}/rotate", json={"grace_seconds": 0}
    )
    assert datetime.fromisoformat(again.json()["expires_at"]) <= datetime.now(UTC) + timedelta(hours=1)
    reset = await admin.patch(f"/v1/admin/tenants/{tenant_id}", json={"max_key_lifetime_s": None})
    assert reset.json()["max_key_lifetime_s"] is None
    assert (await new_key(admin, tenant_id))["expires_at"] is None


async def test_last_use_is_recorded_without_a_write_per_request(gateway: Gateway, admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    key = await new_key(admin, tenant_id)
    usage = gateway[1].key_usage
    assert isinstance(usage, PostgresKeyUsage)
    async with client_for(gateway, key_headers(key["api_key"])) as tenant:
        for _ in range(3):
            assert (await tenant.get("/v1/documents")).status_code == 200
    await usage.flush()
    listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/api-keys")).json()["items"]
    used_at = datetime.fromisoformat(listed[0]["last_used_at"])
    assert datetime.now(UTC) - used_at < timedelta(seconds=30)
    async with client_for(gateway, key_headers(key["api_key"])) as tenant:
        assert (await tenant.get("/v1/documents")).status_code == 200
    assert await usage.flush() == 0  # noted within the minute: nothing queued, nothing written


async def test_patch_changes_a_tenant_and_cached_keys_follow_at_once(
    gateway: Gateway, admin: httpx.AsyncClient
) -> None:
    tenant_id = await new_tenant(admin)
    key = await new_key(admin, tenant_id)
    url = f"/v1/admin/tenants/{tenant_id}"
    async with client_for(gateway, key_headers(key["api_key"]), ip="192.0.2.10") as tenant:
        assert (await tenant.get("/v1/documents")).status_code == 200  # the grant is cached now
        problem(await admin.patch(url, json={"ip_allowlist": ["0.0.0.0/0"]}), 422, "allowlist-refused")
        problem(await admin.patch(url, json={"name": None}), 422)
        changed = await admin.patch(
            url, json={"name": "Renamed", "ip_allowlist": ["10.0.0.0/8"], "rate_limit": "2/minute"}
        )
        assert changed.status_code == 200, changed.text
        view = changed.json()
        assert (view["name"], view["ip_allowlist"], view["rate_limit"]) == ("Renamed", ["10.0.0.0/8"], "2/minute")
        problem(await tenant.get("/v1/documents"), 403, "address-not-allowed")
        forced = await admin.patch(url, json={"ip_allowlist": ["0.0.0.0/0"], "force_allowlist": True})
        assert forced.json()["ip_allowlist"] == ["0.0.0.0/0"]
        statuses = [(await tenant.get("/v1/documents")).status_code for _ in range(3)]
        assert statuses[-1] == 429
        reset = await admin.patch(url, json={"rate_limit": None, "ip_allowlist": []})
        assert (reset.json()["rate_limit"], reset.json()["ip_allowlist"]) == (None, [])
    updates = [e for e in await audit_actions(admin, tenant_id) if e["action"] == "tenant.update"]
    assert updates[-1]["details"] == {
        "name": "Renamed",
        "ip_allowlist": ["10.0.0.0/8"],
        "force_allowlist": False,
        "rate_limit": "2/minute",
    }
    problem(await admin.patch("/v1/admin/tenants/no-such-tenant", json={"name": "x"}), 404)


async def test_a_deleted_tenant_cannot_be_patched_back_to_life(admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    url = f"/v1/admin/tenants/{tenant_id}"
    assert (await admin.delete(url)).status_code == 204
    refused = problem(await admin.patch(url, json={"disabled": False, "name": "Back"}), 409, "tenant-deleted")
    assert tenant_id in refused["detail"]
    assert refused["status"] == 409
    shown = (await admin.get(url)).json()
    assert (shown["disabled"], shown["name"]) == (True, "Key tests")
    assert (await admin.delete(url)).status_code == 204  # deleting again stays idempotent


async def test_quotas_pass_through_patch(gateway: Gateway, admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    quotas = gateway[1].quotas
    if quotas is None:
        pytest.skip("this gateway enforces no quotas")
    response = await admin.patch(f"/v1/admin/tenants/{tenant_id}", json={"quotas": {"max_documents": 7}})
    assert response.status_code == 200, response.text
    assert (await quotas.overrides(tenant_id)).max_documents == 7


async def test_a_disabled_tenant_is_refused_everywhere_until_enabled(
    gateway: Gateway, admin: httpx.AsyncClient
) -> None:
    tenant_id = await new_tenant(admin)
    key = await new_key(admin, tenant_id)
    url = f"/v1/admin/tenants/{tenant_id}"
    async with client_for(gateway, key_headers(key["api_key"])) as tenant:
        assert (await tenant.get("/v1/documents")).status_code == 200
        assert (await admin.patch(url, json={"disabled": True})).json()["disabled"] is True
        problem(await tenant.get("/v1/documents"), 403, "tenant-disabled")
        problem(await tenant.post("/v1/documents", json={"text": "x"}), 403, "tenant-disabled")
        problem(await tenant.post("/v1/auth/token"), 403, "tenant-disabled")
        assert await gateway[1].tenants.tenant_disabled(tenant_id)
        assert (await admin.get(url)).json()["disabled"] is True
        assert (await admin.patch(url, json={"disabled": False})).json()["disabled"] is False
        assert (await tenant.get("/v1/documents")).status_code == 200
        assert not await gateway[1].tenants.tenant_disabled(tenant_id)
    refusals = [e for e in await audit_actions(admin, tenant_id) if e["action"] == "auth.refused"]
    assert {e["details"]["reason"] for e in refusals} == {"tenant_disabled"}


async def test_admin_keys_act_as_their_own_principals(gateway: Gateway, admin: httpx.AsyncClient) -> None:
    created = await admin.post("/v1/admin/admin-keys", json={"name": "ops"})
    assert created.status_code == 201, created.text
    admin_key = created.json()
    assert admin_key["scopes"] == ["admin"] and admin_key["tenant_id"] == "_platform"
    actor = f"admin:{admin_key['key_id']}"
    async with client_for(gateway, key_headers(admin_key["api_key"])) as ops:
        tenant_id = await new_tenant(ops)
        tenant_key = await new_key(ops, tenant_id)
        problem(await ops.get("/v1/documents"), 403, "tenant-key-required")
        listed = (await ops.get("/v1/admin/admin-keys")).json()["items"]
        assert admin_key["key_id"] in {k["key_id"] for k in listed} and admin_key["api_key"] not in str(listed)
    async with client_for(gateway, key_headers(tenant_key["api_key"])) as tenant:
        problem(await tenant.get(f"/v1/admin/tenants/{tenant_id}"), 403, "admin-required")
    actions = await audit_actions(admin, tenant_id)
    assert {(e["action"], e["actor"]) for e in actions} >= {("tenant.create", actor), ("api_key.create", actor)}
    platform = await audit_actions(admin, "_platform")
    assert any(e["action"] == "admin_key.create" and e["resource"] == admin_key["key_id"] for e in platform)
    assert (await admin.delete(f"/v1/admin/admin-keys/{admin_key['key_id']}")).status_code == 204
    async with client_for(gateway, key_headers(admin_key["api_key"])) as ops:
        assert "revoked" in problem(await ops.get(f"/v1/admin/tenants/{tenant_id}"), 401)["detail"]
    problem(await admin.delete(f"/v1/admin/admin-keys/{admin_key['key_id']}"), 404)


async def test_admin_keys_rotate_and_the_platform_tenant_is_reserved(
    gateway: Gateway, admin: httpx.AsyncClient
) -> None:
    old = (await admin.post("/v1/admin/admin-keys", json={"name": "rotating"})).json()
    rotated = await admin.post(f"/v1/admin/admin-keys/{old['key_id']}/rotate", json={"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.text
    async with (
        client_for(gateway, key_headers(old["api_key"])) as stale,
        client_for(gateway, key_headers(rotated.json()["api_key"])) as fresh,
    ):
        assert "rotated" in problem(await stale.get("/v1/admin/admin-keys"), 401)["detail"]
        assert (await fresh.get("/v1/admin/admin-keys")).status_code == 200
    problem(await admin.post("/v1/admin/tenants", json={"tenant_id": "_mine", "name": "x"}), 422)
    problem(await admin.post("/v1/admin/tenants/_platform/api-keys", json={}), 404)
    problem(await admin.patch("/v1/admin/tenants/_platform", json={"name": "x"}), 404)
    problem(await admin.get("/v1/admin/tenants/_platform/api-keys"), 404)
    fresh_id = rotated.json()["key_id"]
    problem(await admin.delete(f"/v1/admin/tenants/_platform/api-keys/{fresh_id}"), 404)  # only as an admin key


async def test_the_bootstrap_token_can_be_switched_off(gateway: Gateway, admin: httpx.AsyncClient) -> None:
    admin_key = (await admin.post("/v1/admin/admin-keys", json={"name": "after bootstrap"})).json()
    async with client_for(gateway, BOOTSTRAP, ip="198.51.100.40", admin_token_enabled=False) as off:
        problem(await off.get("/v1/admin/admin-keys"), 401, "unauthorized")
        off.headers.update(key_headers(admin_key["api_key"]))
        assert (await off.get("/v1/admin/admin-keys")).status_code == 200


async def test_failed_admin_authentication_is_audited_and_throttled(gateway: Gateway, admin: httpx.AsyncClient) -> None:
    wrong = {"Authorization": "Bearer not-the-admin-token-but-long-enough-to-try"}
    async with client_for(gateway, wrong, ip="203.0.113.77") as attacker:
        statuses = [(await attacker.get("/v1/admin/admin-keys")).status_code for _ in range(6)]
        last = await attacker.get("/v1/admin/admin-keys")
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    assert problem(last, 429, "rate-limited") and int(last.headers["retry-after"]) >= 1
    async with client_for(gateway, BOOTSTRAP, ip="203.0.113.78") as elsewhere:
        assert (await elsewhere.get("/v1/admin/admin-keys")).status_code == 200
    refused = [e for e in await audit_actions(admin, "_platform") if e["client_ip"] == "203.0.113.77"]
    assert len(refused) == 5 and {(e["action"], e["actor"]) for e in refused} == {("auth.refused", "anonymous")}
    assert refused[0]["details"] == {"reason": "unknown_credential"}


async def test_admin_reads_are_audited_with_their_outcome(admin: httpx.AsyncClient) -> None:
    tenant_id = await new_tenant(admin)
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).status_code == 200
    problem(await admin.get("/v1/admin/tenants/missing-tenant"), 404)
    items = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    reads = [e for e in items if e["action"] == "admin.read"]
    assert reads[0]["resource"] == f"/v1/admin/tenants/{tenant_id}" and reads[0]["details"]["status"] == 200
    assert reads[0]["actor"] == "admin" and reads[0]["client_ip"] == "127.0.0.1"
    platform = (await admin.get("/v1/admin/tenants/_platform/audit", params={"limit": 50})).json()["items"]
    missed = next(e for e in platform if e["resource"] == "/v1/admin/tenants/missing-tenant")
    assert missed["details"]["status"] == 404 and missed["details"]["tenant_id"] == "missing-tenant"


async def test_revocation_reaches_another_replica_within_a_second(
    gateway: Gateway, replica: Gateway, admin: httpx.AsyncClient
) -> None:
    tenant_id = await new_tenant(admin)
    key = await new_key(admin, tenant_id)
    async with client_for(replica, key_headers(key["api_key"])) as other:
        assert (await other.get("/v1/documents")).status_code == 200  # cached there for 300 s
        assert (await admin.delete(f"/v1/admin/tenants/{tenant_id}/api-keys/{key['key_id']}")).status_code == 204
        started = time.monotonic()
        while (await other.get("/v1/documents")).status_code == 200:
            assert time.monotonic() - started < 1.0, "the other replica still admits the revoked key"
            await asyncio.sleep(0.02)


async def test_the_listener_reconnects_and_the_cache_is_short_lived_meanwhile(
    replica: Gateway, migrated_database: str
) -> None:
    cache = replica[1].tenants
    assert isinstance(cache, CachedTenantDirectory) and cache.ttl_s == 300
    with psycopg.connect(migrated_database, autocommit=True) as superuser:
        killed = superuser.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    deadline = time.monotonic() + 3
    while cache.ttl_s == 300 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert cache.ttl_s == 1.0  # disconnected: the fallback TTL
    deadline = time.monotonic() + 10
    while cache.ttl_s != 300 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert cache.ttl_s == 300  # listening again


def test_only_platform_keys_carry_the_admin_scope(service_database_urls: dict[str, str]) -> None:
    tenant_id = f"kl-{uuid.uuid4().hex[:8]}"
    insert = "INSERT INTO api_keys (key_id, tenant_id, key_sha256, scopes) VALUES (%s, %s, %s, %s)"
    with psycopg.connect(service_database_urls["gateway-admin"], autocommit=True) as connection:
        with connection.transaction():
            connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
            connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, 'x')", (tenant_id,))
            with pytest.raises(psycopg.errors.CheckViolation), connection.transaction():
                connection.execute(insert, (tenant_id, tenant_id, tenant_id, ["query", "admin"]))
        with connection.transaction():
            connection.execute("SELECT set_config('app.tenant_id', '_platform', true)")
            with pytest.raises(psycopg.errors.CheckViolation), connection.transaction():
                connection.execute(insert, (f"{tenant_id}-p", "_platform", f"{tenant_id}-p", ["query"]))

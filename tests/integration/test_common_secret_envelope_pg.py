"""Tenant data keys in the real Postgres under the gateway's login (SELECT, INSERT on tenant_data_keys):
keys persist across sealers, racing replicas end with one key, row-level security hides other tenants' keys,
and the rotation command re-wraps keys as the schema owner."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from ragstream_common.db import create_pool, tenant_transaction
from ragstream_common.secret_envelope import (
    LocalMasterKey,
    MasterKeyError,
    SecretsSettings,
    TenantSecretSealer,
    build_secret_sealer,
    main,
    rewrap_data_keys,
)
from ragstream_common.secret_keys_pg import PostgresDataKeys, WrappedKey, connect_as_owner, rewrap_all

pytestmark = pytest.mark.integration
SECRETS = {"client_secret": "graph-secret", "client_state": "state-123"}
PoolOpener = Callable[[], Awaitable[AsyncConnectionPool]]


@pytest.fixture
async def gateway_pool(service_database_urls: dict[str, str]) -> AsyncIterator[PoolOpener]:
    """Opens pools under the gateway's login (a separate pool is a separate replica)."""
    pools: list[AsyncConnectionPool] = []

    async def open_() -> AsyncConnectionPool:
        pool = create_pool(service_database_urls["gateway"], max_size=2, name="test-secrets")
        await pool.open(wait=True)
        pools.append(pool)
        return pool

    yield open_
    for pool in pools:
        await pool.close()


def new_tenant(admin_url: str) -> str:
    tenant_id = f"sk-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant_id, tenant_id))
    return tenant_id


def stored_keys(admin_url: str, tenant_id: str) -> list[tuple[str]]:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        query = "SELECT wrapping FROM tenant_data_keys WHERE tenant_id = %s"
        return connection.execute(query, (tenant_id,)).fetchall()


def local_settings(key: bytes, key_id: str = "k1") -> SecretsSettings:
    return SecretsSettings(master_key=SecretStr(base64.b64encode(key).decode()), master_key_id=key_id)


async def test_a_key_outlives_the_sealer_that_created_it(migrated_database: str, gateway_pool: PoolOpener) -> None:
    tenant, key = new_tenant(migrated_database), os.urandom(32)
    sealed = await build_secret_sealer(local_settings(key), await gateway_pool()).seal(tenant, "con_a", SECRETS)
    assert stored_keys(migrated_database, tenant) == [("local:k1",)]
    # A restarted service (a new pool, an empty cache) opens what the first one sealed.
    reopened = build_secret_sealer(local_settings(key), await gateway_pool())
    assert await reopened.unseal(tenant, "con_a", sealed) == SECRETS
    assert await reopened.seal(tenant, "con_b", SECRETS) != sealed
    assert stored_keys(migrated_database, tenant) == [("local:k1",)]


async def test_racing_replicas_end_with_one_key(migrated_database: str, gateway_pool: PoolOpener) -> None:
    tenant, key = new_tenant(migrated_database), os.urandom(32)
    replicas = [build_secret_sealer(local_settings(key), await gateway_pool()) for _ in range(4)]
    sealed = await asyncio.gather(*(replica.seal(tenant, "con_a", SECRETS) for replica in replicas))
    assert len(stored_keys(migrated_database, tenant)) == 1
    for replica in replicas:
        for ciphertext in sealed:
            assert await replica.unseal(tenant, "con_a", ciphertext) == SECRETS


async def test_row_level_security_hides_other_tenants_keys(migrated_database: str, gateway_pool: PoolOpener) -> None:
    acme, globex = new_tenant(migrated_database), new_tenant(migrated_database)
    pool = await gateway_pool()
    sealer = build_secret_sealer(local_settings(os.urandom(32)), pool)
    await sealer.seal(acme, "con_a", SECRETS)
    async with tenant_transaction(pool, globex) as connection:
        cursor = await connection.execute("SELECT count(*) FROM tenant_data_keys")
        assert await cursor.fetchone() == (0,)
    assert await PostgresDataKeys(pool).read(globex) is None
    found = await PostgresDataKeys(pool).read(acme)
    assert found is not None and found.wrapping == "local:k1" and len(found.ciphertext) == 12 + 32 + 16


async def test_rewrap_moves_keys_to_the_new_master_key(migrated_database: str, gateway_pool: PoolOpener) -> None:
    tenants = [new_tenant(migrated_database) for _ in range(2)]
    old_key, new_key = os.urandom(32), os.urandom(32)
    before = build_secret_sealer(local_settings(old_key, "old"), await gateway_pool())
    sealed = {tenant: await before.seal(tenant, "con_a", SECRETS) for tenant in tenants}

    old, new = LocalMasterKey(old_key, "old"), LocalMasterKey(new_key, "new")
    async with await connect_as_owner(migrated_database) as connection:
        with pytest.raises(MasterKeyError, match="'local:old'"):  # the old key is not configured
            await rewrap_data_keys(connection, new, [], tenants)
        assert await rewrap_data_keys(connection, new, [old], tenants) == 2
        assert await rewrap_data_keys(connection, new, [old], tenants) == 0  # idempotent

    after = TenantSecretSealer(new, PostgresDataKeys(await gateway_pool()))
    for tenant in tenants:
        assert stored_keys(migrated_database, tenant) == [("local:new",)]
        assert await after.unseal(tenant, "con_a", sealed[tenant]) == SECRETS


async def test_without_a_tenant_list_rewrap_visits_every_tenant_as_the_owner(
    migrated_database: str, gateway_pool: PoolOpener
) -> None:
    tenants = [new_tenant(migrated_database) for _ in range(2)]
    keyless = new_tenant(migrated_database)
    sealer = build_secret_sealer(local_settings(os.urandom(32)), await gateway_pool())
    for tenant in tenants:
        await sealer.seal(tenant, "con_a", SECRETS)
    visited: dict[str, str] = {}

    async def record(tenant_id: str, stored: WrappedKey) -> WrappedKey | None:
        visited[tenant_id] = stored.wrapping
        return None  # leaves every row (other tests' tenants too) as it is

    async with await connect_as_owner(migrated_database) as connection:
        assert await rewrap_all(connection, record) == 0
    # Row-level security binds the owner too: each tenant's key was read in that tenant's transaction.
    assert {tenant: visited.get(tenant) for tenant in tenants} == dict.fromkeys(tenants, "local:k1")
    assert keyless not in visited


def test_the_rewrap_command(migrated_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, old_key, new_key = new_tenant(migrated_database), os.urandom(32), os.urandom(32)
    old = LocalMasterKey(old_key, "2024")

    async def seal_with_old_key() -> bytes:
        pool = create_pool(migrated_database, max_size=1, name="test-rewrap")
        await pool.open(wait=True)
        try:
            return await TenantSecretSealer(old, PostgresDataKeys(pool)).seal(tenant, "con_a", SECRETS)
        finally:
            await pool.close()

    asyncio.run(seal_with_old_key())
    for name, value in {
        "DATABASE_URL": migrated_database,
        "SECRETS_PROVIDER": "local",
        "SECRETS_MASTER_KEY": base64.b64encode(new_key).decode(),
        "SECRETS_MASTER_KEY_ID": "2025",
        "SECRETS_PREVIOUS_MASTER_KEY": base64.b64encode(old_key).decode(),
        "SECRETS_PREVIOUS_MASTER_KEY_ID": "2024",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["rewrap", "--tenant", tenant]) == 0
    assert stored_keys(migrated_database, tenant) == [("local:2025",)]
    monkeypatch.delenv("SECRETS_PREVIOUS_MASTER_KEY")
    monkeypatch.setenv("SECRETS_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SECRETS_MASTER_KEY_ID", "2026")
    assert main(["rewrap", "--tenant", tenant]) == 1  # 2025 is not configured: refused, nothing changed
    assert stored_keys(migrated_database, tenant) == [("local:2025",)]

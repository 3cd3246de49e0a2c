"""The connectors worker's state in the real Postgres, under its own login (`ragstream_connectors`, migration
0009): connectors, sync state, items and deliveries round-trip; row-level security hides other tenants; the
scheduler's due list works across tenants and only one of two racing replicas claims a connector."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import create_pool
from ragstream_connectors.adapters.state_pg import PostgresConnectorStore
from ragstream_connectors.ports import ItemRecord, PageWrite
from ragstream_connectors.providers.base import Subscription

pytestmark = pytest.mark.integration


@pytest.fixture
async def connectors_pool(
    service_database_urls: dict[str, str], migrated_database: str
) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(service_database_urls.get("connectors", migrated_database), max_size=4, name="test-connectors")
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture
def store(connectors_pool: AsyncConnectionPool) -> PostgresConnectorStore:
    return PostgresConnectorStore(connectors_pool)


def new_connector(admin_url: str, provider: str = "sharepoint", *, tenant_id: str = "") -> tuple[str, str]:
    """A tenant (new unless given) with one connector and its sync state, as the gateway creates them."""
    tenant_id = tenant_id or f"cs-{uuid.uuid4().hex[:10]}"
    connector_id = f"con_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant_id, tenant_id)
        )
        connection.execute(
            "INSERT INTO connectors (connector_id, tenant_id, provider, name, config, secrets_ciphertext)"
            " VALUES (%s, %s, %s, 'Docs', '{\"drive_id\": \"d1\"}', %s)",
            (connector_id, tenant_id, provider, b"\x01sealed"),
        )
        connection.execute(
            "INSERT INTO connector_sync_state (connector_id, tenant_id) VALUES (%s, %s)", (connector_id, tenant_id)
        )
    return tenant_id, connector_id


def admin_execute(admin_url: str, query: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        cursor = connection.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


async def test_connectors_are_found_in_their_tenant_only_and_removed(
    store: PostgresConnectorStore, migrated_database: str
) -> None:
    tenant, connector = new_connector(migrated_database)
    record = await store.find(tenant, connector)
    assert record is not None
    assert (record.provider, record.name, record.status, dict(record.config)) == (
        "sharepoint",
        "Docs",
        "active",
        {"drive_id": "d1"},
    )
    assert record.secrets_ciphertext == b"\x01sealed"
    other, _ = new_connector(migrated_database)
    assert await store.find(other, connector) is None
    await store.mark_removed(tenant, connector)
    removed = await store.find(tenant, connector)
    assert removed is not None and removed.status == "removed"
    (removed_at,) = admin_execute(
        migrated_database, "SELECT removed_at FROM connectors WHERE connector_id = %s", (connector,)
    )
    assert removed_at[0] is not None


async def test_a_sync_round_trips_items_cursor_and_enumeration(
    store: PostgresConnectorStore, migrated_database: str
) -> None:
    tenant, connector = new_connector(migrated_database)
    old = ItemRecord("old", f"{connector}:old", 1, "e1#m1", "sha-old", "old.txt")
    await store.save_page(tenant, connector, PageWrite(items=[old], listed=1))
    started = await store.start_full_sync(tenant, connector)
    state = await store.sync_state(tenant, connector)
    assert state.cursor is None and state.full_sync_started_at == started
    kept = ItemRecord("a", f"{connector}:a", 2, "e2#m1", "sha-a", "a.txt")
    await store.save_page(tenant, connector, PageWrite(items=[kept], cursor="page-2", listed=2, error="big: too large"))
    assert await store.items(tenant, connector, ["a", "old", "missing"]) == {"a": kept, "old": old}
    # "old" was not listed since the enumeration began: it is what the final page deletes.
    assert [r.item_id for r in await store.unseen_live_items(tenant, connector, 10)] == ["old"]
    await store.save_page(tenant, connector, PageWrite(seen=["old"], cursor="delta-3"))
    assert await store.unseen_live_items(tenant, connector, 10) == []
    await store.save_page(tenant, connector, PageWrite(items=[ItemRecord("old", f"{connector}:old", 1, deleted=True)]))
    assert [r.item_id for r in await store.live_items(tenant, connector, 10)] == ["a"]
    await store.finish_sync(tenant, connector, 900)
    state = await store.sync_state(tenant, connector)
    assert state.cursor == "delta-3" and state.full_sync_started_at is None and state.items_synced == 3
    assert state.error_count == 1 and state.last_error == "big: too large"
    assert state.last_sync_at is not None and state.next_poll_at is not None
    assert state.next_poll_at - state.last_sync_at == timedelta(seconds=900)
    # No enumeration runs: nothing is unseen.
    assert await store.unseen_live_items(tenant, connector, 10) == []
    await store.record_error(tenant, connector, "401 invalid_client")
    state = await store.sync_state(tenant, connector)
    assert (state.error_count, state.last_error) == (2, "401 invalid_client")


async def test_subscriptions_round_trip(store: PostgresConnectorStore, migrated_database: str) -> None:
    tenant, connector = new_connector(migrated_database)
    assert (await store.sync_state(tenant, connector)).subscription is None
    subscription = Subscription("sub-1", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), "drives/d1/root")
    await store.save_subscription(tenant, connector, subscription)
    assert (await store.sync_state(tenant, connector)).subscription == subscription
    await store.save_subscription(tenant, connector, None)
    assert (await store.sync_state(tenant, connector)).subscription is None


async def test_deliveries_are_marked_processed_once(store: PostgresConnectorStore, migrated_database: str) -> None:
    tenant, connector = new_connector(migrated_database)
    # The gateway recorded "d1" on receipt; "d2" reaches the worker without a row (a replayed event).
    admin_execute(
        migrated_database,
        "INSERT INTO connector_deliveries (connector_id, delivery_id, tenant_id) VALUES (%s, 'd1', %s)",
        (connector, tenant),
    )
    assert await store.processed_deliveries(tenant, connector, ["d1", "d2"]) == set()
    await store.mark_processed(tenant, connector, ["d1", "d2"])
    await store.mark_processed(tenant, connector, ["d1"])
    assert await store.processed_deliveries(tenant, connector, ["d1", "d2", "d3"]) == {"d1", "d2"}
    # Items a delivery named and the delivery itself are written together.
    await store.save_page(tenant, connector, PageWrite(items=[ItemRecord("x", f"{connector}:x", 1)], deliveries=["d3"]))
    assert await store.processed_deliveries(tenant, connector, ["d3"]) == {"d3"}
    other, _ = new_connector(migrated_database)
    assert await store.processed_deliveries(other, connector, ["d1"]) == set()


async def test_due_connectors_are_claimed_by_one_replica(
    connectors_pool: AsyncConnectionPool, service_database_urls: dict[str, str], migrated_database: str
) -> None:
    tenant, connector = new_connector(migrated_database)
    _, later = new_connector(migrated_database, tenant_id=tenant)
    _, expiring = new_connector(migrated_database, "gdrive", tenant_id=tenant)
    admin_execute(
        migrated_database,
        "UPDATE connector_sync_state SET next_poll_at = now() + interval '1 hour' WHERE connector_id IN (%s, %s)",
        (later, expiring),
    )
    admin_execute(
        migrated_database,
        "UPDATE connector_sync_state SET subscription_expires_at = now() + interval '2 hours' WHERE connector_id = %s",
        (expiring,),
    )
    admin_execute(
        migrated_database,
        "INSERT INTO connector_deliveries (connector_id, delivery_id, tenant_id, received_at)"
        " VALUES (%s, 'ancient', %s, now() - interval '8 days'), (%s, 'recent', %s, now())",
        (connector, tenant, connector, tenant),
    )
    store = PostgresConnectorStore(connectors_pool)
    due = {d.connector_id: d for d in await store.due_connectors(86400, 1000) if d.tenant_id == tenant}
    assert set(due) == {connector, expiring}
    assert due[expiring].provider == "gdrive" and due[expiring].subscription_expires_at is not None
    other_pool = create_pool(service_database_urls.get("connectors", migrated_database), max_size=2, name="replica-2")
    await other_pool.open(wait=True)
    try:
        replicas = [store, PostgresConnectorStore(other_pool)]
        won = await asyncio.gather(*(replica.claim(due[connector], 900, 7 * 86400) for replica in replicas))
    finally:
        await other_pool.close()
    assert sorted(won) == [False, True]
    remaining = admin_execute(
        migrated_database, "SELECT delivery_id FROM connector_deliveries WHERE connector_id = %s", (connector,)
    )
    assert remaining == [("recent",)]
    assert connector not in {d.connector_id for d in await store.due_connectors(0, 1000)}

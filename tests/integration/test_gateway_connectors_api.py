"""The connector API over real Postgres and Kafka: creation publishes a first sync and stores secrets sealed, reads
never show a secret, tenants cannot see each other's connectors, removal and resync go to the connectors topic,
webhook secrets rotate with a grace period, and the admin API manages any tenant's connectors, audited."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from rag.v1 import connectors_pb2
from ragstream_common.db import create_pool
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.secret_envelope import SecretsSettings
from ragstream_gateway.adapters.tenants_pg import PostgresTenantDirectory
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.security import hash_api_key
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT, OTHER = f"conn-{RUN}", f"conn-other-{RUN}"
KEY, OTHER_KEY = f"conn-key-{RUN}", f"conn-other-key-{RUN}"
ADMIN_TOKEN = "admin-secret-for-connector-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE_URL = "https://rag.example.test"
Notified = connectors_pb2.ConnectorNotified


def box_body(marker: str) -> dict[str, Any]:
    """A Box connector whose secrets carry `marker`, so any leak of them is found by searching for it."""
    return {
        "type": "box",
        "name": "Box legal",
        "config": {"client_id": "boxclient01", "subject_type": "enterprise", "subject_id": "1234"},
        "secrets": {
            "client_secret": f"client-{marker}",
            "primary_signature_key": f"primary-{marker}",
            "secondary_signature_key": f"secondary-{marker}",
        },
    }


class ConnectorTail:
    """rag.connectors.notified.v1 from the offsets it had when opened."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)

    async def __aenter__(self) -> ConnectorTail:
        await self._consumer.start()
        partitions = [TopicPartition(CONNECTORS_NOTIFIED.name, p) for p in range(CONNECTORS_NOTIFIED.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self._consumer.position(partition)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()

    async def events(self, tenant_id: str, connector_id: str, count: int, timeout_s: float = 15) -> list[Notified]:
        found: list[Notified] = []
        key = f"{tenant_id}/{connector_id}".encode()
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for batch in batches.values() for r in batch if r.key == key):
                    headers = cloudevents.headers_to_dict(list(record.headers))
                    message, _ = cloudevents.decode(record.value, headers, CONNECTORS_NOTIFIED.event_types)
                    assert isinstance(message, Notified)
                    found.append(message)
        return found


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[tuple[GatewaySettings, GatewayDeps]]:
    urls = service_database_urls
    settings = GatewaySettings(
        DATABASE_URL=urls["gateway"],
        admin_database_url=SecretStr(urls["gateway-admin"]),
        kafka=kafka_principals["gateway"],
        dev_tenant=TENANT,
        dev_api_key=SecretStr(KEY),
        admin_token=SecretStr(ADMIN_TOKEN),
        public_base_url=BASE_URL,
        secrets=SecretsSettings(master_key=SecretStr(base64.b64encode(os.urandom(32)).decode())),
        db_pool_size=4,
    )
    async with AsyncExitStack() as stack:
        deps = await open_deps(settings, stack)
        admin_pool = create_pool(urls["gateway-admin"], max_size=1, name="test-connectors-admin")
        await admin_pool.open(wait=True)
        stack.push_async_callback(admin_pool.close)
        await PostgresTenantDirectory(admin_pool).ensure_tenant_key(OTHER, OTHER_KEY, key_id=f"other_{RUN}")
        yield settings, deps


def client_for(gateway: tuple[GatewaySettings, GatewayDeps], headers: dict[str, str]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*gateway), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)


@pytest.fixture
async def tenant(gateway: tuple[GatewaySettings, GatewayDeps]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway, {"X-API-Key": KEY}) as client:
        yield client


@pytest.fixture
async def tail(kafka_admin: KafkaSettings) -> AsyncIterator[ConnectorTail]:
    async with ConnectorTail(kafka_admin) as t:
        yield t


async def superuser_rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """What is really stored (row-level security does not bind the session's superuser)."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(query, params)
        return await cursor.fetchall()


async def create(client: httpx.AsyncClient, body: dict[str, Any], path: str = "/v1/connectors") -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_publishes_a_first_sync_and_stores_secrets_only_sealed(
    tenant: httpx.AsyncClient, tail: ConnectorTail, migrated_database: str
) -> None:
    marker = uuid.uuid4().hex
    created = await create(tenant, box_body(marker))
    connector_id = created["connector_id"]
    assert created == {
        "connector_id": connector_id,
        "webhook_url": f"{BASE_URL}/v1/webhooks/{connector_id}",
        "status": "active",
    }
    [event] = await tail.events(TENANT, connector_id, 1)
    assert (event.kind, event.provider, event.tenant_id) == (Notified.RESYNC, "box", TENANT)
    [(ciphertext, config)] = await superuser_rows(
        migrated_database, "SELECT secrets_ciphertext, config FROM connectors WHERE connector_id = %s", connector_id
    )
    assert marker.encode() not in bytes(ciphertext) and marker not in json.dumps(config)
    [(due,)] = await superuser_rows(
        migrated_database,
        "SELECT next_poll_at <= now() FROM connector_sync_state WHERE connector_id = %s",
        connector_id,
    )
    assert due  # the scheduler starts it even if the RESYNC were lost
    [(wrapping,)] = await superuser_rows(
        migrated_database, "SELECT wrapping FROM tenant_data_keys WHERE tenant_id = %s", TENANT
    )
    assert wrapping == "local:default"


async def test_reads_never_show_a_secret(
    tenant: httpx.AsyncClient, gateway: tuple[GatewaySettings, GatewayDeps], migrated_database: str
) -> None:
    marker = uuid.uuid4().hex
    connector_id = (await create(tenant, box_body(marker)))["connector_id"]
    one, listing = await tenant.get(f"/v1/connectors/{connector_id}"), await tenant.get("/v1/connectors")
    assert one.status_code == 200 and listing.status_code == 200
    view = one.json()
    assert view["config"] == box_body(marker)["config"] | {"folder_id": "0", "manage_webhook": False}
    assert (view["provider"], view["status"], view["items_synced"], view["error_count"]) == ("box", "active", 0, 0)
    assert view["next_poll_at"] and view["created_at"] and view["last_sync_at"] is None
    assert connector_id in [item["connector_id"] for item in listing.json()["items"]]
    assert marker not in one.text + listing.text
    audited = await superuser_rows(
        migrated_database, "SELECT action, actor, details::text FROM audit_log WHERE resource = %s", connector_id
    )
    dev_key_id = f"dev_{hash_api_key(KEY)[:16]}"  # as open_deps provisions it
    assert [(action, actor) for action, actor, _ in audited] == [("connector.create", f"key:{dev_key_id}")]
    assert marker not in audited[0][2]
    # The webhook path's lookup (any tenant, by id) opens them.
    found = await gateway[1].connectors.find(connector_id)  # type: ignore[union-attr]
    assert found is not None and found.tenant_id == TENANT
    assert found.secrets["primary_signature_key"] == f"primary-{marker}"


async def test_another_tenants_connector_is_not_found(
    tenant: httpx.AsyncClient, gateway: tuple[GatewaySettings, GatewayDeps], tail: ConnectorTail
) -> None:
    connector_id = (await create(tenant, {"type": "webhook", "name": "cms"}))["connector_id"]
    await tail.events(TENANT, connector_id, 1)
    async with client_for(gateway, {"X-API-Key": OTHER_KEY}) as other:
        for method, path in [
            ("GET", f"/v1/connectors/{connector_id}"),
            ("DELETE", f"/v1/connectors/{connector_id}?purge=true"),
            ("POST", f"/v1/connectors/{connector_id}/sync"),
            ("POST", f"/v1/connectors/{connector_id}/rotate-secret"),
        ]:
            response = await other.request(method, path)
            assert response.status_code == 404, f"{method} {path}: {response.text}"
            assert response.headers["content-type"] == PROBLEM_JSON
        assert connector_id not in (await other.get("/v1/connectors")).text
    assert (await tenant.get(f"/v1/connectors/{connector_id}")).json()["status"] == "active"
    with pytest.raises(TimeoutError):
        await tail.events(TENANT, connector_id, 1, timeout_s=1.5)


async def test_delete_with_purge_publishes_remove(
    tenant: httpx.AsyncClient, tail: ConnectorTail, migrated_database: str
) -> None:
    connector_id = (await create(tenant, {"type": "webhook", "name": "to remove"}))["connector_id"]
    removed = await tenant.delete(f"/v1/connectors/{connector_id}", params={"purge": "true"})
    assert removed.status_code == 202 and removed.json() == {"connector_id": connector_id, "status": "removing"}
    resync, remove = await tail.events(TENANT, connector_id, 2)
    assert resync.kind == Notified.RESYNC and (remove.kind, remove.purge) == (Notified.REMOVE, True)
    assert (await tenant.post(f"/v1/connectors/{connector_id}/sync")).status_code == 409
    # The worker finishes the removal: removed connectors leave the listing unless asked for.
    async with await psycopg.AsyncConnection.connect(migrated_database) as connection:
        await connection.execute("UPDATE connectors SET status = 'removed' WHERE connector_id = %s", (connector_id,))
    assert connector_id not in (await tenant.get("/v1/connectors")).text
    assert connector_id in (await tenant.get("/v1/connectors", params={"include_removed": "true"})).text


async def test_resync_publishes_a_resync(tenant: httpx.AsyncClient, tail: ConnectorTail) -> None:
    connector_id = (await create(tenant, box_body("resync")))["connector_id"]
    response = await tenant.post(f"/v1/connectors/{connector_id}/sync")
    assert response.status_code == 202 and response.json()["status"] == "active"
    assert [e.kind for e in await tail.events(TENANT, connector_id, 2)] == [Notified.RESYNC, Notified.RESYNC]


async def test_rotation_keeps_the_previous_signing_secret_a_day(
    tenant: httpx.AsyncClient, gateway: tuple[GatewaySettings, GatewayDeps]
) -> None:
    created = await create(tenant, {"type": "webhook", "name": "rotating"})
    connector_id, first = created["connector_id"], created["signing_secret"]
    assert first.startswith("whsec_") and len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    rotated = await tenant.post(f"/v1/connectors/{connector_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["signing_secret"]
    found = await gateway[1].connectors.find(connector_id)  # type: ignore[union-attr]
    assert found is not None
    assert (found.secrets["signing_secret"], found.secrets["previous_signing_secret"]) == (second, first)
    expires = datetime.fromisoformat(found.secrets["previous_signing_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    shown = (await tenant.get(f"/v1/connectors/{connector_id}")).text
    assert first not in shown and second not in shown
    box = (await create(tenant, box_body("not rotatable")))["connector_id"]
    assert (await tenant.post(f"/v1/connectors/{box}/rotate-secret")).status_code == 409


async def test_admin_manages_any_tenants_connectors_audited(
    gateway: tuple[GatewaySettings, GatewayDeps], tail: ConnectorTail, migrated_database: str
) -> None:
    base = f"/v1/admin/tenants/{OTHER}/connectors"
    async with client_for(gateway, ADMIN) as admin:
        created = await create(admin, box_body("admin"), base)
        connector_id = created["connector_id"]
        assert (await admin.get(f"{base}/{connector_id}")).json()["connector_id"] == connector_id
        assert connector_id in (await admin.get(base)).text
        assert (await admin.post(f"{base}/{connector_id}/sync")).status_code == 202
        assert (await admin.delete(f"{base}/{connector_id}")).json()["status"] == "removing"
        assert (await admin.get(f"/v1/admin/tenants/{TENANT}/connectors/{connector_id}")).status_code == 404
        assert (await admin.get(f"/v1/admin/tenants/no-such-{RUN}/connectors")).status_code == 404
    kinds = [(e.kind, e.purge) for e in await tail.events(OTHER, connector_id, 3)]
    assert kinds == [(Notified.RESYNC, False), (Notified.RESYNC, False), (Notified.REMOVE, False)]
    audited = await superuser_rows(
        migrated_database,
        "SELECT tenant_id, actor, action FROM audit_log WHERE resource = %s AND action LIKE %s ORDER BY seq",
        connector_id,
        "connector.%",
    )
    assert audited == [
        (OTHER, "admin", "connector.create"),
        (OTHER, "admin", "connector.resync"),
        (OTHER, "admin", "connector.remove"),
    ]


async def test_deliveries_are_remembered_and_stamp_the_last_notification(
    tenant: httpx.AsyncClient, gateway: tuple[GatewaySettings, GatewayDeps]
) -> None:
    directory = gateway[1].connectors
    assert directory is not None
    connector_id = (await create(tenant, {"type": "webhook", "name": "deliveries"}))["connector_id"]
    assert not await directory.delivery_seen(TENANT, connector_id, "msg_1")
    await directory.record_delivery(TENANT, connector_id, "msg_1")
    await directory.record_delivery(TENANT, connector_id, "msg_1")  # idempotent
    assert await directory.delivery_seen(TENANT, connector_id, "msg_1")
    assert not await directory.delivery_seen(OTHER, connector_id, "msg_1")
    assert (await tenant.get(f"/v1/connectors/{connector_id}")).json()["last_notification_at"] is not None
    assert await directory.find("con_doesnotexist00") is None


async def test_invalid_requests_are_problems_naming_the_field(tenant: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex
    body = box_body(marker)
    body["secrets"]["extra_key"] = "x"
    response = await tenant.post("/v1/connectors", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON
    assert ["body", "box", "secrets", "extra_key"] in [error["loc"] for error in response.json()["errors"]]
    assert marker not in response.text

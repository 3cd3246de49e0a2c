"""The connectors worker as deployed: its composition root on real Kafka and Postgres, under its own login.

A generic `webhook` connector is created as the gateway would (row, sync state, secrets sealed with the tenant's
data key); ConnectorNotified events are published to rag.connectors.notified.v1 as the gateway's webhook intake
would; what comes out on rag.documents.received.v1 is what indexing sees: ids, versions, metadata, blobs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from rag.v1 import connectors_pb2, documents_pb2
from ragstream_common.blobs import PostgresBlobStore, blob_key_of
from ragstream_common.db import create_pool
from ragstream_common.grpc_server import check_health
from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED, DOCUMENTS_RECEIVED, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import now_timestamp
from ragstream_common.secret_envelope import SecretsSettings, build_secret_sealer
from ragstream_connectors.app import start
from ragstream_connectors.config import ConnectorsSettings
from ragstream_devstack.processes import free_port
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration
Kind = connectors_pb2.ConnectorNotified.Kind
SECRETS = SecretsSettings(master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()), master_key_id="worker-test")


class Collector:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        self.events.extend(envelope.message for envelope in batch)

    def of_tenant(self, tenant: str) -> list[Any]:
        return [e for e in self.events if e.tenant_id == tenant]


async def eventually(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not met within {timeout_s} s")


async def skip_history(kafka: KafkaSettings, topic: TopicSpec, group: str) -> None:
    """Commit the group at the topic's end (as the super user): the worker under test handles only this test's
    events, not those other tests of the session left on the shared topic."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **client_kwargs(kafka))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def worker(
    kafka_admin: KafkaSettings,
    kafka_principals: dict[str, KafkaSettings],
    service_database_urls: dict[str, str],
    migrated_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    settings = ConnectorsSettings(
        # The worker's own identities: its Kafka principal (its group, its topics, its DLQ) and Postgres login.
        kafka=kafka_principals["connectors"],
        DATABASE_URL=service_database_urls["connectors"],
        grpc_port=free_port("127.0.0.1"),
        metrics_port=0,
        batch_wait_ms=20,
        # Other tests' connectors share the database: no periodic polls of them from here.
        scheduler_interval_s=0,
        download_dir=tmp_path_factory.mktemp("downloads"),
        secrets=SECRETS,
    )
    await skip_history(kafka_admin, CONNECTORS_NOTIFIED, settings.group_id)
    collector = Collector()
    async with AsyncExitStack() as exits:
        stop = asyncio.Event()
        loops = [asyncio.ensure_future(loop) for loop in await start(settings, exits, stop)]
        # ConnectorNotified comes from the gateway, under its principal.
        publisher = EventPublisher(kafka_principals["gateway"], source="ragstream/gateway")
        await publisher.start()
        exits.push_async_callback(publisher.stop)
        options = ConsumerOptions(group_id=f"test-connectors-observer-{run}", topics=(DOCUMENTS_RECEIVED.name,))
        observer = EventConsumer(kafka_admin, options, collector, publisher)  # reads as the super user
        await observer.start()
        exits.push_async_callback(observer.stop)
        loops.append(asyncio.ensure_future(observer.run(stop)))
        admin_pool = create_pool(migrated_database, max_size=2, name="test-admin")
        await admin_pool.open(wait=True)
        exits.push_async_callback(admin_pool.close)
        yield {"settings": settings, "publisher": publisher, "collector": collector, "admin_pool": admin_pool}
        stop.set()
        await asyncio.gather(*loops)


async def new_webhook_connector(worker: dict[str, Any], admin_url: str) -> tuple[str, str]:
    tenant_id, connector_id = f"cw-{uuid.uuid4().hex[:10]}", f"con_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant_id, tenant_id))
    sealer = build_secret_sealer(SECRETS, worker["admin_pool"])
    sealed = await sealer.seal(tenant_id, connector_id, {"signing_secret": "whsec_" + "A" * 44})
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO connectors (connector_id, tenant_id, provider, name, secrets_ciphertext)"
            " VALUES (%s, %s, 'webhook', 'Help center', %s)",
            (connector_id, tenant_id, sealed),
        )
        connection.execute(
            "INSERT INTO connector_sync_state (connector_id, tenant_id) VALUES (%s, %s)", (connector_id, tenant_id)
        )
    return tenant_id, connector_id


async def notify(worker: dict[str, Any], tenant: str, connector: str, kind: int, **fields: Any) -> None:
    message = connectors_pb2.ConnectorNotified(
        tenant_id=tenant, connector_id=connector, provider="webhook", kind=kind, received_at=now_timestamp(), **fields
    )
    await worker["publisher"].publish(OutgoingEvent(CONNECTORS_NOTIFIED.name, f"{tenant}/{connector}", message))


async def deliver(worker: dict[str, Any], tenant: str, connector: str, delivery_id: str, body: Any) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    await notify(worker, tenant, connector, Kind.NOTIFICATION, delivery_id=delivery_id, payload=payload)


def of_document(collector: Collector, tenant: str, document_id: str) -> list[Any]:
    return [e for e in collector.of_tenant(tenant) if e.document_id == document_id]


def upserted(item_id: str, **data: Any) -> dict[str, Any]:
    return {"type": "document.upserted", "data": {"id": item_id, **data}}


def admin_rows(admin_url: str, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        return connection.execute(query, params).fetchall()  # type: ignore[arg-type]


async def test_the_worker_answers_health_checks(worker: dict[str, Any]) -> None:
    port = worker["settings"].grpc_port
    assert await eventually_async(lambda: check_health(f"127.0.0.1:{port}"), "SERVING")


async def eventually_async(probe: Callable[[], Any], expected: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe() == expected:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_webhook_document_lives_through_versions_deletion_restore_and_removal(
    worker: dict[str, Any], migrated_database: str
) -> None:
    tenant, connector = await new_webhook_connector(worker, migrated_database)
    collector: Collector = worker["collector"]
    document = f"{connector}:kb-1"
    await deliver(
        worker,
        tenant,
        connector,
        "msg_1",
        upserted("kb-1", title="Refunds", text="Refunds take 30 days.", metadata={"team": "support"}),
    )
    await deliver(worker, tenant, connector, "msg_url", upserted("kb-2", url="https://help.example.com/kb-2.html"))
    await eventually(lambda: len(collector.of_tenant(tenant)) >= 2)
    received, linked = (of_document(collector, tenant, d)[0] for d in (document, f"{connector}:kb-2"))
    assert isinstance(received, documents_pb2.DocumentReceived)
    assert (received.version, received.title) == (1, "Refunds")
    assert received.metadata["connector_id"] == connector and received.metadata["provider"] == "webhook"
    assert received.metadata["item_id"] == "kb-1" and received.metadata["team"] == "support"
    assert json.loads(received.metadata["permissions"]) == []
    blob = await PostgresBlobStore(worker["admin_pool"]).get(tenant, blob_key_of(received.source.uri))
    assert blob is not None and blob.data == b"Refunds take 30 days." and blob.sha256 == received.source.sha256
    assert linked.source.uri == "https://help.example.com/kb-2.html" and linked.version == 1

    # The same delivery again (a provider retry) is processed once; a new one is a new version.
    await deliver(worker, tenant, connector, "msg_1", upserted("kb-1", title="Refunds", text="Changed by a replay"))
    await deliver(worker, tenant, connector, "msg_2", upserted("kb-1", title="Refunds", text="Refunds take 14 days."))
    await deliver(worker, tenant, connector, "msg_3", {"type": "document.deleted", "data": {"id": "kb-1"}})
    await deliver(worker, tenant, connector, "msg_4", b"{not json")  # dead-lettered, holds nothing back
    await deliver(worker, tenant, connector, "msg_5", upserted("kb-1", title="Refunds", text="Refunds are back."))
    events = await eventually(
        lambda: len(of_document(collector, tenant, document)) >= 4 and of_document(collector, tenant, document)
    )
    kb1 = [(type(e).__name__, e.version) for e in events]
    assert kb1 == [("DocumentReceived", 1), ("DocumentUpdated", 2), ("DocumentDeleted", 2), ("DocumentUpdated", 3)]
    assert events[1].previous_version == 1 and events[3].previous_version == 2
    # msg_4 failed its batch, which the consumer then retried event by event: applied once all the same.
    expected = [("msg_1",), ("msg_2",), ("msg_3",), ("msg_5",), ("msg_url",)]
    query = (
        "SELECT delivery_id FROM connector_deliveries WHERE connector_id = %s AND processed_at IS NOT NULL"
        " ORDER BY delivery_id"
    )
    await eventually(lambda: admin_rows(migrated_database, query, (connector,)) == expected)
    assert len(of_document(collector, tenant, document)) == 4

    # Removing the connector with purge deletes what it brought in, and nothing comes in after that.
    await notify(worker, tenant, connector, Kind.REMOVE, purge=True)
    await deliver(worker, tenant, connector, "msg_6", upserted("kb-3", text="too late"))
    purged = {(document, 3), (f"{connector}:kb-2", 1)}
    await eventually(
        lambda: (
            purged
            <= {
                (e.document_id, e.version)
                for e in collector.of_tenant(tenant)
                if isinstance(e, documents_pb2.DocumentDeleted)
            }
        )
    )
    status = await eventually(
        lambda: (
            admin_rows(migrated_database, "SELECT status FROM connectors WHERE connector_id = %s", (connector,))
            == [("removed",)]
        )
    )
    assert status
    await asyncio.sleep(1.0)
    assert not [e for e in collector.of_tenant(tenant) if e.document_id == f"{connector}:kb-3"]
    items = admin_rows(
        migrated_database,
        "SELECT item_id, version, deleted FROM connector_items WHERE connector_id = %s ORDER BY item_id",
        (connector,),
    )
    assert items == [("kb-1", 3, True), ("kb-2", 1, True)]

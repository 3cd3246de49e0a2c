"""The gateway's Kafka projections against real Kafka and Postgres: status events and external producers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from rag.v1 import documents_pb2, status_pb2
from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, DOCUMENTS_STATUS
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.projector import project_registrations, project_status

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT = f"gwp-{RUN}"
KEY = f"gwp-key-{RUN}"


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_topics: str, kafka_admin: KafkaSettings
) -> AsyncIterator[tuple[GatewaySettings, GatewayDeps]]:
    """The gateway's collaborators with both projections consuming, as `app.start` runs them (its own logins)."""
    settings = GatewaySettings(
        DATABASE_URL=service_database_urls["gateway"],
        admin_database_url=service_database_urls["gateway-admin"],
        # Kafka as its super user: the run's own consumer groups are outside the gateway principal's grants.
        kafka=kafka_admin,
        dev_tenant=TENANT,
        dev_api_key=KEY,
        db_pool_size=4,
        status_group_id=f"gw-status-{RUN}",
        registry_group_id=f"gw-registry-{RUN}",
    )
    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        deps = await open_deps(settings, stack)
        assert isinstance(deps.publisher, EventPublisher)
        loops = []
        for group, topic, handler in (
            (settings.status_group_id, DOCUMENTS_STATUS.name, project_status),
            (settings.registry_group_id, DOCUMENTS_RECEIVED.name, project_registrations),
        ):
            options = ConsumerOptions(group_id=group, topics=(topic,))
            consumer = EventConsumer(settings.kafka, options, partial(handler, registry=deps.registry), deps.publisher)
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            loops.append(asyncio.create_task(consumer.run(stop)))
        yield settings, deps
        stop.set()
        await asyncio.gather(*loops)


@pytest.fixture
async def client(gateway: tuple[GatewaySettings, GatewayDeps]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(*gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"X-API-Key": KEY}) as c:
        yield c


async def publish(gateway: tuple[GatewaySettings, GatewayDeps], topic: str, message: Message) -> None:
    key = document_key(message.tenant_id, message.document_id)  # type: ignore[attr-defined]
    await gateway[1].publisher.publish(OutgoingEvent(topic, key, message))


async def eventually(
    client: httpx.AsyncClient, doc: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 30
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(f"/v1/documents/{doc}")
            if response.status_code == 200:
                body = response.json()
                if check(body):
                    return body
            await asyncio.sleep(0.1)


async def settle() -> None:
    """Give the consumers time to have handled (and ignored) what was just published."""
    await asyncio.sleep(2)


async def test_status_events_move_the_registry_forward_only(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"status-{uuid.uuid4().hex[:8]}"
    await client.post("/v1/documents", json={"id": doc, "text": "one"})
    await client.post("/v1/documents", json={"id": doc, "text": "two"})
    ids = {"tenant_id": TENANT, "document_id": doc}
    await publish(gateway, DOCUMENTS_STATUS.name, status_pb2.DocumentProcessing(**ids, version=2, stage="ingest"))
    await eventually(client, doc, lambda b: b["status"] == "processing")
    await publish(gateway, DOCUMENTS_STATUS.name, status_pb2.DocumentIndexed(**ids, version=2, chunk_count=7))
    body = await eventually(client, doc, lambda b: b["status"] == "indexed")
    assert (body["version"], body["chunk_count"]) == (2, 7) and body["indexed_at"]
    # Older versions and backward steps within a version are ignored.
    stale = status_pb2.DocumentFailed(**ids, version=1, stage="embed", reason="x")
    await publish(gateway, DOCUMENTS_STATUS.name, stale)
    await publish(gateway, DOCUMENTS_STATUS.name, status_pb2.DocumentProcessing(**ids, version=2, stage="embed"))
    await settle()
    body = (await client.get(f"/v1/documents/{doc}")).json()
    assert (body["status"], body["version"], body["chunk_count"]) == ("indexed", 2, 7)


async def test_failed_status_carries_the_reason(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"fails-{uuid.uuid4().hex[:8]}"
    await client.post("/v1/documents", json={"id": doc, "text": "broken"})
    failed = status_pb2.DocumentFailed(
        tenant_id=TENANT,
        document_id=doc,
        version=1,
        stage="parse",
        reason="no text in PDF",
        error_class="ExtractionError",
    )
    await publish(gateway, DOCUMENTS_STATUS.name, failed)
    body = await eventually(client, doc, lambda b: b["status"] == "failed")
    assert body["error"] == {"stage": "parse", "message": "ExtractionError: no text in PDF"}


async def test_removed_status_marks_deleted(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"removed-{uuid.uuid4().hex[:8]}"
    await client.post("/v1/documents", json={"id": doc, "text": "short-lived"})
    removed = status_pb2.DocumentRemoved(tenant_id=TENANT, document_id=doc, version=1)
    await publish(gateway, DOCUMENTS_STATUS.name, removed)
    body = await eventually(client, doc, lambda b: b["status"] == "deleted")
    assert body["chunk_count"] == 0


async def test_external_producers_are_registered_version_aware(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"external-{uuid.uuid4().hex[:8]}"
    newer = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=doc, version=5, title="CRM export")
    newer.source.text = "exported straight to Kafka"
    newer.metadata["source"] = "crm"
    await publish(gateway, DOCUMENTS_RECEIVED.name, newer)
    body = await eventually(client, doc, lambda b: b["version"] == 5)
    assert (body["status"], body["title"], body["metadata"], body["size_bytes"]) == (
        "received",
        "CRM export",
        {"source": "crm"},
        len(newer.source.text),
    )
    older = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=doc, version=3, title="stale")
    older.source.text = "older"
    await publish(gateway, DOCUMENTS_RECEIVED.name, older)
    await settle()
    assert (await client.get(f"/v1/documents/{doc}")).json()["title"] == "CRM export"
    # The gateway continues the version sequence from what the producer registered.
    response = await client.post("/v1/documents", json={"id": doc, "text": "edited in the gateway"})
    assert response.json()["version"] == 6
    await settle()  # our own DocumentUpdated(6) comes back through the registry projection and changes nothing
    body = (await client.get(f"/v1/documents/{doc}")).json()
    assert (body["version"], body["status"], body["title"]) == (6, "received", "")


async def test_status_before_registration_leaves_a_placeholder_the_registration_fills(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"early-{uuid.uuid4().hex[:8]}"
    ids = {"tenant_id": TENANT, "document_id": doc}
    await publish(gateway, DOCUMENTS_STATUS.name, status_pb2.DocumentIndexed(**ids, version=1, chunk_count=2))
    await eventually(client, doc, lambda b: b["status"] == "indexed")
    received = documents_pb2.DocumentReceived(**ids, version=1, title="Late registration")
    received.source.uri = "https://example.com/a.txt"
    await publish(gateway, DOCUMENTS_RECEIVED.name, received)
    body = await eventually(client, doc, lambda b: b["title"] == "Late registration")
    assert (body["status"], body["chunk_count"]) == ("indexed", 2)


async def test_status_for_a_new_version_before_its_registration_is_filled_by_it(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    """The two projections race: the pipeline's status for version 2 lands before version 2's registration."""
    doc = f"race-{uuid.uuid4().hex[:8]}"
    ids = {"tenant_id": TENANT, "document_id": doc}
    first = documents_pb2.DocumentReceived(**ids, version=1, title="First title")
    first.source.text = "version one"
    await publish(gateway, DOCUMENTS_RECEIVED.name, first)
    await eventually(client, doc, lambda b: b["title"] == "First title")
    await publish(gateway, DOCUMENTS_STATUS.name, status_pb2.DocumentIndexed(**ids, version=2, chunk_count=3))
    await eventually(client, doc, lambda b: b["version"] == 2 and b["status"] == "indexed")
    second = documents_pb2.DocumentUpdated(**ids, version=2, title="Second title")
    second.source.uri = "https://example.com/second.txt"
    second.source.sha256 = "ab" * 32
    second.metadata["path"] = "/docs/second.txt"
    await publish(gateway, DOCUMENTS_RECEIVED.name, second)
    body = await eventually(client, doc, lambda b: b["title"] == "Second title")
    assert (body["version"], body["status"], body["chunk_count"]) == (2, "indexed", 3)
    assert (body["metadata"], body["content_sha256"]) == ({"path": "/docs/second.txt"}, "ab" * 32)
    record = await gateway[1].registry.get(TENANT, doc)
    assert record is not None and record.source_uri == "https://example.com/second.txt"
    # A redelivered (or conflicting) registration of the now-filled version changes nothing.
    again = documents_pb2.DocumentUpdated(**ids, version=2, title="Replayed title")
    again.source.text = "replayed"
    await publish(gateway, DOCUMENTS_RECEIVED.name, again)
    await settle()
    body = (await client.get(f"/v1/documents/{doc}")).json()
    assert (body["title"], body["status"], body["chunk_count"]) == ("Second title", "indexed", 3)


async def test_external_delete_marks_the_document_deleted(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    doc = f"ext-delete-{uuid.uuid4().hex[:8]}"
    await client.post("/v1/documents", json={"id": doc, "text": "to be removed elsewhere"})
    await publish(
        gateway, DOCUMENTS_RECEIVED.name, documents_pb2.DocumentDeleted(tenant_id=TENANT, document_id=doc, version=1)
    )
    await eventually(client, doc, lambda b: b["status"] == "deleted")

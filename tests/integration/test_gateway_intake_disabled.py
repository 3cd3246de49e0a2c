"""A disabled tenant's Kafka intake on the real broker and database: the bridge dead-letters its events as
`tenant-disabled` (so they can be redriven) until the tenant is enabled again, then forwards them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from rag.v1 import documents_pb2
from ragstream_common.db import create_pool
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.tenant_topics import tenant_topics
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.service import start_publisher
from ragstream_devstack.credentials import LocalCredentials
from ragstream_gateway.adapters.intake_kafka import start_intake_bridge
from ragstream_gateway.adapters.key_events_pg import open_key_directory
from ragstream_gateway.adapters.tenant_kafka_admin import KafkaTenantProvisioner
from ragstream_gateway.adapters.tenants_pg import PostgresTenantDirectory
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.ports import TenantUpdate
from ragstream_gateway.tenant_kafka import TenantListener, issue_credentials
from support.kafka_clients import signed_in_as
from support.tenant_kafka import produce, provisioner_kafka, service_kafka, until_signed_in, wait_for_records

pytestmark = pytest.mark.integration
TENANT = f"off-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def setup(
    service_identities: LocalCredentials, kafka_topics: str, service_database_urls: dict[str, str]
) -> AsyncIterator[tuple[PostgresTenantDirectory, KafkaSettings]]:
    """The tenant (row and Kafka access) and the gateway's intake bridge, gated by the tenant directory as the
    gateway wires it (key cache and change listener)."""
    gateway_kafka = await until_signed_in(service_kafka("gateway", service_identities, kafka_topics))
    provisioner = KafkaTenantProvisioner(await until_signed_in(provisioner_kafka(service_identities, kafka_topics)))
    settings = GatewaySettings(
        DATABASE_URL=service_database_urls["gateway"], kafka=gateway_kafka, intake_metadata_max_age_ms=1000
    )
    async with AsyncExitStack() as stack:
        pool = create_pool(service_database_urls["gateway"], max_size=2, name="test-intake-gate")
        admin_pool = create_pool(service_database_urls["gateway-admin"], max_size=2, name="test-intake-admin")
        for opened in (pool, admin_pool):
            await opened.open(wait=True)
            stack.push_async_callback(opened.close)
        directory = PostgresTenantDirectory(pool, admin_pool)
        assert await directory.create_tenant(TENANT, "Disabled intake", None, ()) is not None
        listener = TenantListener(gateway_kafka.bootstrap_servers, gateway_kafka.security_protocol)
        credentials = await issue_credentials(provisioner, TENANT, listener)
        stack.push_async_callback(provisioner.deprovision, TENANT)
        publisher = await start_publisher(stack, settings)
        gate = await open_key_directory(stack, settings, directory)
        consumer = await start_intake_bridge(stack, settings, publisher, gate)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        yield directory, signed_in_as(gateway_kafka, credentials.username, credentials.password)
        stop.set()
        await running


def _document(document_id: str) -> documents_pb2.DocumentReceived:
    source = documents_pb2.DocumentSource(text="Sent while disabled.", content_type="text/plain")
    return documents_pb2.DocumentReceived(document_id=document_id, version=1, source=source)


async def test_a_disabled_tenants_intake_is_dead_lettered_until_it_is_enabled(
    setup: tuple[PostgresTenantDirectory, KafkaSettings], kafka_admin: KafkaSettings
) -> None:
    directory, tenant = setup
    topics = tenant_topics(TENANT)
    assert await directory.update_tenant(TENANT, TenantUpdate(disabled=True)) is not None
    refused = str(uuid.uuid4())
    await produce(tenant, topics.documents, "d1", _document("d1"), refused)
    documents_dlq, _ = topics.dead_letters
    [dead] = await wait_for_records(kafka_admin, documents_dlq, {refused})
    assert dead.headers[h.ERROR_CLASS] == "TenantDisabled"
    assert dead.headers[h.ERROR_MESSAGE].startswith("tenant-disabled: ")

    assert await directory.update_tenant(TENANT, TenantUpdate(disabled=False)) is not None
    admitted = str(uuid.uuid4())
    await produce(tenant, topics.documents, "d2", _document("d2"), admitted)
    [forwarded] = await wait_for_records(kafka_admin, DOCUMENTS_RECEIVED.name, {admitted})
    assert forwarded.key == f"{TENANT}/d2"

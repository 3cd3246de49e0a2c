"""The intake bridge on the real SASL broker: tenants write their own intake topics as their own principals; the
gateway's bridge (as `ragstream-gateway`) forwards them onto the internal topics stamped with the topic's tenant,
dead-letters an event that claims another tenant (`tenant-mismatch`), drops a Kafka query's reply_to, and picks
up a tenant provisioned while it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.tenant_topics import tenant_topics
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, QUERIES_REQUESTED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.service import start_publisher
from ragstream_devstack.credentials import LocalCredentials
from ragstream_gateway.adapters.intake_kafka import start_intake_bridge
from ragstream_gateway.adapters.tenant_kafka_admin import KafkaTenantProvisioner
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.tenant_kafka import TenantListener, issue_credentials
from support.kafka_clients import signed_in_as
from support.tenant_kafka import (
    produce,
    provisioner_kafka,
    read_topic,
    service_kafka,
    until_signed_in,
    wait_for_records,
)

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
# B's id starts with A's id and a dot: names and groups must still keep them apart.
A, B, LATE = f"acme-{RUN}", f"acme-{RUN}.b", f"late-{RUN}"


@pytest.fixture(scope="module")
async def provisioner(service_identities: LocalCredentials, kafka_topics: str) -> KafkaTenantProvisioner:
    await until_signed_in(service_kafka("gateway", service_identities, kafka_topics))
    return KafkaTenantProvisioner(await until_signed_in(provisioner_kafka(service_identities, kafka_topics)))


async def _provision(provisioner: KafkaTenantProvisioner, gateway: KafkaSettings, tenant: str) -> KafkaSettings:
    """The tenant's own client settings, from the credentials provisioning hands out."""
    listener = TenantListener(gateway.bootstrap_servers, gateway.security_protocol)
    credentials = await issue_credentials(provisioner, tenant, listener)
    return signed_in_as(gateway, credentials.username, credentials.password)


@pytest.fixture(scope="module")
async def tenants(
    provisioner: KafkaTenantProvisioner, service_identities: LocalCredentials, kafka_topics: str
) -> AsyncIterator[dict[str, KafkaSettings]]:
    gateway = service_kafka("gateway", service_identities, kafka_topics)
    yield {tenant: await _provision(provisioner, gateway, tenant) for tenant in (A, B)}
    for tenant in (A, B, LATE):
        await provisioner.deprovision(tenant)


@pytest.fixture(scope="module")
async def bridge(
    tenants: dict[str, KafkaSettings], service_identities: LocalCredentials, kafka_topics: str
) -> AsyncIterator[GatewaySettings]:
    """The gateway's intake bridge, running as `ragstream-gateway` with a one-second metadata refresh."""
    settings = GatewaySettings(
        kafka=service_kafka("gateway", service_identities, kafka_topics), intake_metadata_max_age_ms=1000
    )
    async with AsyncExitStack() as stack:
        publisher = await start_publisher(stack, settings)
        consumer = await start_intake_bridge(stack, settings, publisher)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        yield settings
        stop.set()
        await running


def _document(tenant_id: str, document_id: str) -> documents_pb2.DocumentReceived:
    return documents_pb2.DocumentReceived(
        tenant_id=tenant_id,
        document_id=document_id,
        version=1,
        title="Bridged",
        source=documents_pb2.DocumentSource(text="Bridged through the tenant's own topic.", content_type="text/plain"),
    )


def _soon() -> Timestamp:
    # Queries of these tests expire before any worker of a later test could answer them.
    deadline = Timestamp()
    deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=5))
    return deadline


@pytest.mark.parametrize("claimed", ["", "own"])
async def test_a_tenants_document_reaches_the_pipeline_stamped_with_its_tenant(
    bridge: GatewaySettings, tenants: dict[str, KafkaSettings], kafka_admin: KafkaSettings, claimed: str
) -> None:
    document_id, event_id = f"doc-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    message = _document(A if claimed == "own" else "", document_id)
    await produce(tenants[A], tenant_topics(A).documents, f"anything/{document_id}", message, event_id)

    [record] = await wait_for_records(kafka_admin, DOCUMENTS_RECEIVED.name, {event_id})
    assert record.key == f"{A}/{document_id}"  # keyed like the gateway's own events, whatever the producer used
    assert record.headers["ce_type"] == "rag.v1.DocumentReceived" and record.headers["ce_source"] == "crm/exporter"
    forwarded = documents_pb2.DocumentReceived.FromString(record.value)
    assert (forwarded.tenant_id, forwarded.document_id, forwarded.version) == (A, document_id, 1)
    assert forwarded.source.text == "Bridged through the tenant's own topic."


async def test_an_event_claiming_another_tenant_is_dead_lettered_as_tenant_mismatch(
    bridge: GatewaySettings, tenants: dict[str, KafkaSettings], kafka_admin: KafkaSettings
) -> None:
    document_id, forged, after = f"forged-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), str(uuid.uuid4())
    await produce(tenants[A], tenant_topics(A).documents, f"{B}/{document_id}", _document(B, document_id), forged)
    # A good event right behind it passes: one bad record holds nothing up.
    await produce(tenants[A], tenant_topics(A).documents, "k", _document("", f"{document_id}-ok"), after)

    documents_dlq, _ = tenant_topics(A).dead_letters
    [dead] = await wait_for_records(kafka_admin, documents_dlq, {forged})
    assert dead.headers[h.ERROR_CLASS] == "TenantMismatch"
    assert dead.headers[h.ERROR_MESSAGE].startswith("tenant-mismatch: ")
    assert B in dead.headers[h.ERROR_MESSAGE]
    assert (dead.headers[h.FAILURE_KIND], dead.headers[h.CONSUMER_GROUP]) == ("permanent", bridge.intake_group_id)
    assert dead.headers[h.ORIGINAL_TOPIC] == tenant_topics(A).documents

    assert await wait_for_records(kafka_admin, DOCUMENTS_RECEIVED.name, {after})
    pipeline = await read_topic(kafka_admin, DOCUMENTS_RECEIVED.name)
    assert forged not in {r.event_id for r in pipeline}
    assert not [r for r in pipeline if r.key.startswith(f"{B}/")]


async def test_a_kafka_query_is_bridged_without_its_reply_to(
    bridge: GatewaySettings, tenants: dict[str, KafkaSettings], kafka_admin: KafkaSettings
) -> None:
    query_id, event_id = f"crm-q-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    query = queries_pb2.QueryRequested(
        query_id=query_id, question="What changed?", reply_to="attacker.example:50051", deadline=_soon()
    )
    await produce(tenants[B], tenant_topics(B).queries, query_id, query, event_id)

    [record] = await wait_for_records(kafka_admin, QUERIES_REQUESTED.name, {event_id})
    forwarded = queries_pb2.QueryRequested.FromString(record.value)
    assert (record.key, forwarded.query_id, forwarded.tenant_id) == (query_id, query_id, B)
    assert forwarded.reply_to == "" and forwarded.question == "What changed?"


async def test_a_tenant_provisioned_while_the_bridge_runs_is_bridged_within_seconds(
    bridge: GatewaySettings,
    provisioner: KafkaTenantProvisioner,
    service_identities: LocalCredentials,
    kafka_topics: str,
    kafka_admin: KafkaSettings,
) -> None:
    late = await _provision(provisioner, service_kafka("gateway", service_identities, kafka_topics), LATE)
    event_id = str(uuid.uuid4())
    await produce(late, tenant_topics(LATE).documents, "k", _document("", f"late-{RUN}"), event_id)
    [record] = await wait_for_records(kafka_admin, DOCUMENTS_RECEIVED.name, {event_id}, timeout_s=30)
    assert documents_pb2.DocumentReceived.FromString(record.value).tenant_id == LATE

"""Generate's answers on the real SASL broker: a Kafka caller's answer goes to its own tenant's answers topic and
nowhere else; an HTTP caller's answer (reply_to set) goes live to its gateway and to no topic at all.

Generate runs as `ragstream-generate` (its consumer group, its per-tenant grants); the tenants read their
answers topics as their own principals. The live reply channel is the handler-test stand-in for the gateway: the
point here is what reaches Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from fakes.generate import RecordingReplyChannel
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import queries_pb2
from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.tenant_topics import TENANT_TOPIC_PREFIX, group_prefix, tenant_topics
from ragstream_common.kafka.topics import QUERIES_RETRIEVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_gateway.adapters.tenant_kafka_admin import KafkaTenantProvisioner
from ragstream_gateway.tenant_kafka import TenantListener, issue_credentials
from ragstream_generate.adapters.routes import GENERATE_ROUTES
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from ragstream_generate.handlers import answer_batch
from support.kafka_clients import signed_in_as
from support.tenant_kafka import provisioner_kafka, read_topic, service_kafka, until_signed_in, wait_for_records

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
A, B = f"ans-{RUN}", f"ans-{RUN}.b"
GATEWAY = "127.0.0.1:9"
CHUNK = queries_pb2.ScoredChunk(
    chunk_id="c1",
    document_id="crm-note-42",
    version=1,
    title="ACME renewal",
    score=0.9,
    text="ACME renews for three years if support response stays under four hours.",
)


@pytest.fixture(scope="module")
async def tenants(service_identities: LocalCredentials, kafka_topics: str) -> AsyncIterator[dict[str, KafkaSettings]]:
    gateway = await until_signed_in(service_kafka("gateway", service_identities, kafka_topics))
    provisioner = KafkaTenantProvisioner(await until_signed_in(provisioner_kafka(service_identities, kafka_topics)))
    listener = TenantListener(gateway.bootstrap_servers, gateway.security_protocol)
    settings = {}
    for tenant in (A, B):
        credentials = await issue_credentials(provisioner, tenant, listener)
        settings[tenant] = signed_in_as(gateway, credentials.username, credentials.password)
    yield settings
    for tenant in (A, B):
        await provisioner.deprovision(tenant)


@pytest.fixture(scope="module")
async def generate(
    tenants: dict[str, KafkaSettings], service_identities: LocalCredentials, kafka_topics: str
) -> AsyncIterator[RecordingReplyChannel]:
    """Generate's consumer and sink as the service wires them, as `ragstream-generate`; yields the live replies."""
    kafka = await until_signed_in(service_kafka("generate", service_identities, kafka_topics))
    publisher = EventPublisher(kafka, source="ragstream/generate")
    await publisher.start()
    replies = RecordingReplyChannel()
    handler = partial(
        answer_batch,
        backend=ExtractiveBackend(ExtractiveConfig()),
        replies=replies,
        sink=RoutedEventSink(publisher, GENERATE_ROUTES),
    )
    options = ConsumerOptions(group_id="ragstream-generate", topics=(QUERIES_RETRIEVED.name,), dlq_depth_interval_s=0)
    consumer = EventConsumer(kafka, options, handler, publisher)
    await consumer.start()
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    yield replies
    stop.set()
    await running
    await consumer.stop()
    await publisher.stop()


def _retrieved(tenant: str, reply_to: str = "") -> queries_pb2.QueryRetrieved:
    deadline = Timestamp()
    deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=60))
    query = queries_pb2.QueryRequested(
        query_id=f"q-{uuid.uuid4().hex[:10]}",
        tenant_id=tenant,
        question="How long does ACME renew for?",
        reply_to=reply_to,
        deadline=deadline,
    )
    return queries_pb2.QueryRetrieved(query=query, chunks=[CHUNK])


async def _retrieve(service_identities: LocalCredentials, kafka: str, *events: queries_pb2.QueryRetrieved) -> None:
    """Publish as the retrieve service does (its own principal)."""
    publisher = EventPublisher(await until_signed_in(service_kafka("retrieve", service_identities, kafka)), source="t")
    await publisher.start()
    try:
        await publisher.publish_many([OutgoingEvent(QUERIES_RETRIEVED.name, e.query.query_id, e) for e in events])
    finally:
        await publisher.stop()


async def test_answers_reach_only_their_own_tenants_topic_and_http_answers_no_topic(
    generate: RecordingReplyChannel,
    tenants: dict[str, KafkaSettings],
    service_identities: LocalCredentials,
    kafka_topics: str,
    kafka_admin: KafkaSettings,
) -> None:
    kafka_a, kafka_b = _retrieved(A), _retrieved(B)
    http_a, http_b = _retrieved(A, reply_to=GATEWAY), _retrieved(B, reply_to=GATEWAY)
    await _retrieve(service_identities, kafka_topics, http_a, kafka_a, http_b, kafka_b)
    ids = {e.query.query_id for e in (kafka_a, kafka_b, http_a, http_b)}

    [answer_a] = await wait_for_records(tenants[A], tenant_topics(A).answers, {kafka_a.query.query_id}, group=_probe(A))
    [answer_b] = await wait_for_records(tenants[B], tenant_topics(B).answers, {kafka_b.query.query_id}, group=_probe(B))
    produced = queries_pb2.AnswerProduced.FromString(answer_a.value)
    assert (produced.tenant_id, produced.query_id) == (A, kafka_a.query.query_id)
    assert answer_a.headers["ce_type"] == "rag.v1.AnswerProduced"
    assert queries_pb2.AnswerProduced.FromString(answer_b.value).tenant_id == B

    # The HTTP callers got theirs live ...
    async with asyncio.timeout(30):
        while {s.query_id for s in generate.streams if s.answer() is not None} != {
            http_a.query.query_id,
            http_b.query.query_id,
        }:
            await asyncio.sleep(0.1)
    # ... and nothing of this run is on any answers topic but each Kafka caller's own answer on its own topic.
    on_a = {r.key for r in await read_topic(tenants[A], tenant_topics(A).answers, _probe(A))} & ids
    on_b = {r.key for r in await read_topic(tenants[B], tenant_topics(B).answers, _probe(B))} & ids
    assert (on_a, on_b) == ({kafka_a.query.query_id}, {kafka_b.query.query_id})
    everywhere = await _every_answers_topic(kafka_admin)
    seen = {r.key for records in everywhere.values() for r in records} & ids
    assert seen == {kafka_a.query.query_id, kafka_b.query.query_id}
    assert not [name for name in everywhere if not name.startswith(TENANT_TOPIC_PREFIX)]


def _probe(tenant: str) -> str:
    return f"{group_prefix(tenant)}probe"


async def _every_answers_topic(admin: KafkaSettings) -> dict[str, list]:
    """Every answers topic on the cluster, read whole by the super user."""
    from confluent_kafka.admin import AdminClient
    from ragstream_common.kafka.access_admin import admin_config

    topics = (await asyncio.to_thread(AdminClient(admin_config(admin)).list_topics, timeout=10)).topics
    names = [name for name in topics if "answers" in name and not name.endswith(".dlq")]
    return {name: await read_topic(admin, name) for name in names}

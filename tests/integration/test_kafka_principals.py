"""The local broker's authentication and each principal's authorization, against the real SASL/SCRAM broker.

Unauthenticated and wrongly authenticated clients are refused promptly; every service principal may do on each
internal topic exactly what kafka/acls.py grants (the broker's own answer: the authorized operations it reports
for the caller), cannot read or write outside it, cannot create topics and cannot touch users or ACLs.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic
from pydantic import SecretStr
from ragstream_common.kafka.access_admin import AclGrant, KafkaAccessAdmin, KafkaAccessError, admin_config
from ragstream_common.kafka.acls import PROVISIONER_USER, service_grants, service_user
from ragstream_common.kafka.topics import (
    ALL_TOPICS,
    DOCUMENTS_RECEIVED,
    DOCUMENTS_STATUS,
    QUERIES_RETRIEVED,
)
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.registry import SERVICE_NAMES
from support.kafka_clients import client_kwargs, signed_in_as

pytestmark = pytest.mark.integration
REFUSAL_BOUND_S = 20.0
_OPERATIONS = {AclOperation.READ: "read", AclOperation.WRITE: "write", AclOperation.DESCRIBE: "describe"}


async def _bootstrap(settings: KafkaSettings) -> None:
    client = AIOKafkaClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await client.bootstrap()
    finally:
        await client.close()


async def test_a_client_without_credentials_is_refused_promptly(kafka_admin: KafkaSettings) -> None:
    plaintext = KafkaSettings(bootstrap_servers=kafka_admin.bootstrap_servers, security_protocol="PLAINTEXT")
    async with asyncio.timeout(REFUSAL_BOUND_S):
        with pytest.raises(KafkaConnectionError):
            await _bootstrap(plaintext)
        producer = AIOKafkaProducer(**client_kwargs(plaintext), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()


async def test_a_wrong_password_or_unknown_user_is_refused_promptly(kafka_admin: KafkaSettings) -> None:
    async with asyncio.timeout(REFUSAL_BOUND_S):
        for user, password in ((kafka_admin.sasl_username or "", "not-the-password"), ("nobody", "x")):
            with pytest.raises(KafkaError):
                await _bootstrap(signed_in_as(kafka_admin, user, password))


async def test_each_service_is_authorized_for_exactly_its_map(kafka_principals: dict[str, KafkaSettings]) -> None:
    """The broker's own view: per internal topic, the operations each principal may perform."""
    for service in SERVICE_NAMES:
        expected: dict[str, set[str]] = {}
        for grant in service_grants(service):
            if grant.resource_type == "topic":
                expected.setdefault(grant.name, set()).add(grant.operation)
        actual = await asyncio.to_thread(_authorized_topic_operations, kafka_principals[service])
        assert actual == expected, service


def _authorized_topic_operations(settings: KafkaSettings) -> dict[str, set[str]]:
    """{topic: read/write/describe allowed} over every declared topic the principal may describe at all."""
    client = AdminClient(admin_config(settings))
    names = [spec.name for spec in ALL_TOPICS]
    futures = client.describe_topics(TopicCollection(names), include_authorized_operations=True, request_timeout=30)
    allowed: dict[str, set[str]] = {}
    for name, future in futures.items():
        try:
            description = future.result()
        except KafkaException:
            continue  # TOPIC_AUTHORIZATION_FAILED: not even DESCRIBE
        operations = {_OPERATIONS[op] for op in description.authorized_operations or () if op in _OPERATIONS}
        if operations:
            allowed[name] = operations
    return allowed


async def test_generate_cannot_read_received_documents(kafka_principals: dict[str, KafkaSettings]) -> None:
    """The broker answers its metadata request for the topic with TOPIC_AUTHORIZATION_FAILED (aiokafka's
    consumers only log that, and then see nothing)."""
    client = AIOKafkaClient(**client_kwargs(kafka_principals["generate"]), request_timeout_ms=5000)
    await client.bootstrap()
    try:
        await client.set_topics([DOCUMENTS_RECEIVED.name, QUERIES_RETRIEVED.name])
        assert client.cluster.unauthorized_topics == {DOCUMENTS_RECEIVED.name}
        assert client.cluster.partitions_for_topic(QUERIES_RETRIEVED.name)
    finally:
        await client.close()


async def test_generate_reads_its_own_topic_in_its_own_group(kafka_principals: dict[str, KafkaSettings]) -> None:
    consumer = AIOKafkaConsumer(
        QUERIES_RETRIEVED.name,
        **client_kwargs(kafka_principals["generate"]),
        group_id="ragstream-generate",
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)  # joins the group and fetches: no authorization error
        assert consumer.assignment()
    finally:
        await consumer.stop()


async def test_embed_cannot_write_document_status(kafka_principals: dict[str, KafkaSettings]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(kafka_principals["embed"]), request_timeout_ms=5000)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            async with asyncio.timeout(REFUSAL_BOUND_S):
                await producer.send_and_wait(DOCUMENTS_STATUS.name, b"forged", key=b"acme/doc")
    finally:
        await producer.stop()


async def test_a_consumer_group_outside_the_map_is_refused(kafka_principals: dict[str, KafkaSettings]) -> None:
    consumer = AIOKafkaConsumer(
        QUERIES_RETRIEVED.name,
        **client_kwargs(kafka_principals["generate"]),
        group_id="ragstream-ingest",  # another service's group
        enable_auto_commit=False,
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            async with asyncio.timeout(REFUSAL_BOUND_S):
                await consumer.start()
    finally:
        await consumer.stop()


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_no_service_can_create_topics_or_change_access(
    service: str, kafka_principals: dict[str, KafkaSettings]
) -> None:
    settings = kafka_principals[service]
    name = f"rag.documents.forged{uuid.uuid4().hex[:6]}.v1"
    with pytest.raises(KafkaException, match="AUTHORIZATION"):
        await asyncio.to_thread(_create_topic, settings, name)
    access = KafkaAccessAdmin(settings)
    who = f"User:{service_user(service)}"
    with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
        await access.grant([AclGrant(who, "topic", "rag.", "prefixed", "read")])
    with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
        await access.upsert_scram_user(service_user(service), SecretStr("taken-over"))
    with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
        await access.grants_of(who)
    await access.close()


async def test_the_provisioner_manages_tenant_topics_users_and_acls_only(
    kafka_principals: dict[str, KafkaSettings], kafka_admin: KafkaSettings
) -> None:
    settings = kafka_principals["provisioner"]
    assert settings.sasl_username == PROVISIONER_USER
    tenant_topic = f"rag.tenant.t{uuid.uuid4().hex[:8]}.documents.v1"
    await asyncio.to_thread(_create_topic, settings, tenant_topic)
    await asyncio.to_thread(_delete_topic, settings, tenant_topic)
    with pytest.raises(KafkaException, match="AUTHORIZATION"):
        await asyncio.to_thread(_create_topic, settings, f"rag.documents.forged{uuid.uuid4().hex[:6]}.v1")

    user = f"tenant-t{uuid.uuid4().hex[:8]}"
    principal = f"User:{user}"
    access = KafkaAccessAdmin(settings)
    grant = AclGrant(principal, "topic", tenant_topic, "literal", "write")
    await access.upsert_scram_user(user, SecretStr("tenant-password"))
    await access.grant([grant])
    assert await access.grants_of(principal) == [grant]
    await access.revoke([grant])
    await access.delete_scram_user(user)
    await access.close()

    # ... and reads no internal topic.
    assert await asyncio.to_thread(_authorized_topic_operations, settings) == {}


def _create_topic(settings: KafkaSettings, name: str) -> None:
    client = AdminClient(admin_config(settings))
    futures = client.create_topics([NewTopic(name, 1, 1)], request_timeout=30)
    futures[name].result()


def _delete_topic(settings: KafkaSettings, name: str) -> None:
    client = AdminClient(admin_config(settings))
    client.delete_topics([name], request_timeout=30)[name].result()

"""Tenant Kafka tests: principals' settings, producing as a tenant, reading a topic whole, and asking the broker
what a principal may do (its own answer, not ours)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicCollection
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AclOperation, AdminClient
from google.protobuf.message import Message
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.access_admin import admin_config
from ragstream_common.kafka.acls import PROVISIONER_USER
from ragstream_common.kafka.connection import wait_until_signed_in
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka_identities import kafka_identity_env
from ragstream_gateway.config import GatewaySettings

from support.kafka_clients import client_kwargs, service_settings, signed_in_as

REFUSAL_BOUND_S = 20.0
_OPERATIONS = {AclOperation.READ: "read", AclOperation.WRITE: "write", AclOperation.DESCRIBE: "describe"}


def service_kafka(service: str, credentials: LocalCredentials, kafka: str) -> KafkaSettings:
    """`ragstream-<service>`'s own settings (identities must be provisioned: the `service_identities` fixture)."""
    return service_settings(KafkaSettings(), kafka_identity_env(service, credentials=credentials, kafka=kafka))


async def until_signed_in(settings: KafkaSettings, timeout_s: float = 15) -> KafkaSettings:
    """`settings` once the broker accepts them (a new SCRAM credential arrives a moment after the controller's)."""
    assert await wait_until_signed_in(settings, timeout_s), f"{settings.sasl_username} still refused"
    return settings


def provisioner_kafka(credentials: LocalCredentials, kafka: str) -> KafkaSettings:
    gateway = kafka_identity_env("gateway", credentials=credentials, kafka=kafka)
    assert gateway["GATEWAY_KAFKA_PROVISIONER_USERNAME"] == PROVISIONER_USER
    return signed_in_as(
        service_kafka("gateway", credentials, kafka), PROVISIONER_USER, gateway["GATEWAY_KAFKA_PROVISIONER_PASSWORD"]
    )


async def provisioning_gateway_settings(
    database_urls: dict[str, str], credentials: LocalCredentials, kafka: str, admin_token: str
) -> GatewaySettings:
    """Gateway settings with its own Kafka login, its provisioner login and both of its database logins: what
    the tenant admin routes need to create and remove tenants' Kafka access."""
    provisioner = await until_signed_in(provisioner_kafka(credentials, kafka))
    return GatewaySettings(
        DATABASE_URL=database_urls["gateway"],
        admin_database_url=database_urls["gateway-admin"],
        kafka=await until_signed_in(service_kafka("gateway", credentials, kafka)),
        kafka_provisioner_username=provisioner.sasl_username,
        kafka_provisioner_password=provisioner.sasl_password,
        admin_token=admin_token,
        db_pool_size=2,
    )


@dataclass(frozen=True)
class Produced:
    topic: str
    key: str
    event_id: str


async def produce(
    settings: KafkaSettings, topic: str, key: str, message: Message, event_id: str, *, json: bool = True
) -> Produced:
    """One CloudEvent as an external producer sends it (proto3 JSON by default), acknowledged."""
    content_type = cloudevents.JSON if json else "application/protobuf"
    value, headers = cloudevents.encode(message, source="crm/exporter", content_type=content_type, event_id=event_id)
    producer = AIOKafkaProducer(**client_kwargs(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        async with asyncio.timeout(REFUSAL_BOUND_S):
            await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()
    return Produced(topic, key, event_id)


@dataclass(frozen=True)
class Record:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]

    @property
    def event_id(self) -> str:
        return self.headers.get("ce_id", "")


async def read_topic(settings: KafkaSettings, topic: str, group: str = "unused") -> list[Record]:
    """Every record the topic holds now; KafkaException when the principal may not read it. Nothing is
    committed, but librdkafka still looks the `group` up: a tenant passes one of its own prefix."""
    return await asyncio.to_thread(_read_topic, settings, topic, group)


def _read_topic(settings: KafkaSettings, topic: str, group: str) -> list[Record]:
    consumer = Consumer({**admin_config(settings), "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=REFUSAL_BOUND_S).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        ends = {
            p: consumer.get_watermark_offsets(ConfluentPartition(topic, p), timeout=10)[1] for p in metadata.partitions
        }
        consumer.assign([ConfluentPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        records: list[Record] = []
        seen = dict.fromkeys(ends, -1)
        deadline = time.monotonic() + REFUSAL_BOUND_S
        while any(seen[p] < end - 1 for p, end in ends.items() if end > 0) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            seen[message.partition()] = message.offset()
            raw_headers = [(name, value or b"") for name, value in message.headers() or ()]
            key = (message.key() or b"").decode()
            records.append(Record(topic, key, message.value() or b"", cloudevents.headers_to_dict(raw_headers)))
        return records
    finally:
        consumer.close()


async def wait_for_records(
    settings: KafkaSettings, topic: str, match: set[str], wanted: int = 1, timeout_s: float = 30, group: str = "unused"
) -> list[Record]:
    """Records of `topic` whose key or ce_id is in `match`, once there are `wanted` of them (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in await read_topic(settings, topic, group) if r.key in match or r.event_id in match]
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


def authorized_topic_operations(settings: KafkaSettings, topics: list[str]) -> dict[str, set[str]]:
    """{topic: read/write/describe the principal may do}, as the broker reports it, over `topics` it may see."""
    client = AdminClient(admin_config(settings))
    futures = client.describe_topics(TopicCollection(topics), include_authorized_operations=True, request_timeout=30)
    allowed: dict[str, set[str]] = {}
    for name, future in futures.items():
        try:
            description = future.result()
        except KafkaException:
            continue  # TOPIC_AUTHORIZATION_FAILED (not even DESCRIBE) or unknown
        operations = {_OPERATIONS[op] for op in description.authorized_operations or () if op in _OPERATIONS}
        if operations:
            allowed[name] = operations
    return allowed

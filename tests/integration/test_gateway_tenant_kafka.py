"""Tenant Kafka provisioning through the admin API, against the real SASL broker and Postgres: a new tenant's
credentials (shown once) work for its own intake topics and nothing else, rotation replaces them, deletion
removes every access, and a provisioning that fails half-way is reported and finished by a retry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.kafka.access_admin import KafkaAccessAdmin, admin_config
from ragstream_common.kafka.tenant_topics import GATEWAY_PRINCIPAL, GENERATE_PRINCIPAL, tenant_topics
from ragstream_common.kafka.topics import ALL_TOPICS
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_gateway.adapters.tenant_kafka_admin import KafkaTenantProvisioner
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from support.kafka_clients import client_kwargs, signed_in_as
from support.tenant_kafka import (
    REFUSAL_BOUND_S,
    authorized_topic_operations,
    produce,
    provisioning_gateway_settings,
    read_topic,
    service_kafka,
)

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
# B's id starts with A's id and a dot: its topics and groups must still be out of A's reach (and A's of B's).
A, B = f"t-{RUN}", f"t-{RUN}.b"
ADMIN = {"Authorization": "Bearer admin-secret-for-tests-32-chars-min"}
Gateway = tuple[GatewaySettings, GatewayDeps]


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], service_identities: LocalCredentials, kafka_topics: str
) -> AsyncIterator[Gateway]:
    settings = await provisioning_gateway_settings(
        service_database_urls, service_identities, kafka_topics, "admin-secret-for-tests-32-chars-min"
    )
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


def _client(gateway: Gateway, headers: dict[str, str] = ADMIN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*gateway), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)


@pytest.fixture(scope="module")
async def created(gateway: Gateway) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """Tenants A and B as POST /v1/admin/tenants answered them (their Kafka credentials included)."""
    async with _client(gateway) as client:
        bodies = {}
        for tenant in (A, B):
            response = await client.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": tenant})
            assert response.status_code == 201, response.text
            bodies[tenant] = response.json()
        yield bodies
        for tenant in (A, B):
            assert (await client.delete(f"/v1/admin/tenants/{tenant}")).status_code == 204


def _signed_in(gateway: Gateway, kafka: dict[str, Any]) -> KafkaSettings:
    settings = gateway[0].kafka.model_copy(update={"bootstrap_servers": kafka["bootstrap_servers"]})
    return signed_in_as(settings, kafka["username"], kafka["password"])


async def _signs_in(settings: KafkaSettings) -> bool:
    client = AIOKafkaClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


def _document(document_id: str) -> documents_pb2.DocumentReceived:
    return documents_pb2.DocumentReceived(
        document_id=document_id, version=1, source=documents_pb2.DocumentSource(text="Provisioned.")
    )


async def test_a_created_tenant_gets_its_kafka_credentials_once(gateway: Gateway, created: dict[str, Any]) -> None:
    kafka = created[A]["kafka"]
    names = tenant_topics(A)
    assert kafka["username"] == f"tenant-{A}" and len(kafka["password"]) >= 32
    assert (kafka["sasl_mechanism"], kafka["security_protocol"]) == ("SCRAM-SHA-512", "SASL_PLAINTEXT")
    assert kafka["bootstrap_servers"] == gateway[0].kafka.bootstrap_servers
    assert kafka["topics"] == {"documents": names.documents, "queries": names.queries, "answers": names.answers}
    assert kafka["group_prefix"] == f"rag.tenant.{A}:"
    async with _client(gateway) as client:
        shown = await client.get(f"/v1/admin/tenants/{A}")
        audit = await client.get(f"/v1/admin/tenants/{A}/audit")
    assert shown.status_code == 200 and "kafka" not in shown.json()
    actions = [item["action"] for item in audit.json()["items"] if item["action"] != "admin.read"]  # reads: audited
    assert actions[:2] == ["tenant.kafka.credentials", "tenant.create"]
    assert kafka["password"] not in audit.text and kafka["password"] not in json.dumps(shown.json())


async def test_the_credentials_write_the_tenants_intake_and_read_its_answers(
    gateway: Gateway, created: dict[str, Any]
) -> None:
    tenant = _signed_in(gateway, created[A]["kafka"])
    names = tenant_topics(A)
    await produce(tenant, names.documents, "k", _document(f"d-{RUN}"), str(uuid.uuid4()))
    await produce(tenant, names.queries, "q", queries_pb2.QueryRequested(query_id=f"q-{RUN}"), str(uuid.uuid4()))
    assert await read_topic(tenant, names.answers, f"rag.tenant.{A}:probe") == []
    consumer = AIOKafkaConsumer(
        names.answers, **client_kwargs(tenant), group_id=f"rag.tenant.{A}:crm", enable_auto_commit=False
    )
    await consumer.start()  # joins a group of its own prefix
    try:
        await consumer.getmany(timeout_ms=1000)
        assert consumer.assignment()
    finally:
        await consumer.stop()


async def test_a_tenant_principal_may_do_exactly_its_own_grants(gateway: Gateway, created: dict[str, Any]) -> None:
    topics = [spec.name for spec in ALL_TOPICS] + [*tenant_topics(A).all, *tenant_topics(B).all]
    allowed = await asyncio.to_thread(authorized_topic_operations, _signed_in(gateway, created[A]["kafka"]), topics)
    names = tenant_topics(A)
    assert allowed == {
        names.documents: {"write", "describe"},
        names.queries: {"write", "describe"},
        names.answers: {"read", "describe"},
    }


async def test_a_tenant_cannot_write_anothers_intake_or_read_its_answers_or_any_internal_topic(
    gateway: Gateway, created: dict[str, Any]
) -> None:
    tenant_a = _signed_in(gateway, created[A]["kafka"])
    producer = AIOKafkaProducer(**client_kwargs(tenant_a), request_timeout_ms=5000)
    await producer.start()
    try:
        for topic in (tenant_topics(B).documents, tenant_topics(B).queries, "rag.documents.received.v1"):
            with pytest.raises(TopicAuthorizationFailedError):
                async with asyncio.timeout(REFUSAL_BOUND_S):
                    await producer.send_and_wait(topic, b"{}", key=b"forged")
    finally:
        await producer.stop()
    unreadable = [
        tenant_topics(B).answers,
        *tenant_topics(A).dead_letters,  # dead letters are for operators, not for the tenant
        "rag.queries.requested.v1",
        "rag.chunks.ready.v1",
        "rag.queries.retrieved.v1",
        "rag.documents.received.v1",
    ]
    for topic in unreadable:
        # The broker does not even admit the topic exists to it (READ implies DESCRIBE; it has neither).
        with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
            await read_topic(tenant_a, topic, f"rag.tenant.{A}:probe")


@pytest.mark.parametrize(("who", "group"), [(A, f"rag.tenant.{B}:crm"), (A, f"rag.tenant.{A}.b"), (B, "crm")])
async def test_a_tenant_cannot_use_a_group_outside_its_prefix(
    gateway: Gateway, created: dict[str, Any], who: str, group: str
) -> None:
    settings = _signed_in(gateway, created[who]["kafka"])
    consumer = AIOKafkaConsumer(
        tenant_topics(who).answers, **client_kwargs(settings), group_id=group, enable_auto_commit=False
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            async with asyncio.timeout(REFUSAL_BOUND_S):
                await consumer.start()
    finally:
        await consumer.stop()


async def test_rotation_replaces_the_password(gateway: Gateway, created: dict[str, Any]) -> None:
    before = _signed_in(gateway, created[B]["kafka"])
    async with _client(gateway) as client:
        response = await client.post(f"/v1/admin/tenants/{B}/kafka-credentials")
        missing = await client.post(f"/v1/admin/tenants/nobody-{RUN}/kafka-credentials")
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["username"] == f"tenant-{B}" and rotated["password"] != created[B]["kafka"]["password"]
    assert await _signs_in(_signed_in(gateway, rotated))
    assert not await _signs_in(before)
    assert missing.status_code == 404
    created[B]["kafka"] = rotated


async def test_deleting_a_tenant_removes_its_api_keys_principal_topics_and_grants(
    gateway: Gateway, kafka_admin: KafkaSettings
) -> None:
    tenant = f"gone-{RUN}"
    async with _client(gateway) as client:
        body = (await client.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": "Gone"})).json()
        key = (await client.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": "k"})).json()["api_key"]
        assert (await client.delete(f"/v1/admin/tenants/{tenant}")).status_code == 204
        assert (await client.delete(f"/v1/admin/tenants/{tenant}")).status_code == 204  # idempotent
        audit = (await client.get(f"/v1/admin/tenants/{tenant}/audit")).json()["items"]
    async with _client(gateway, {"X-API-Key": key}) as tenant_client:
        assert (await tenant_client.get("/v1/documents")).status_code == 401
    assert not await _signs_in(_signed_in(gateway, body["kafka"]))
    existing = (await asyncio.to_thread(AdminClient(admin_config(kafka_admin)).list_topics, timeout=10)).topics
    assert not set(tenant_topics(tenant).all) & set(existing)
    access = KafkaAccessAdmin(kafka_admin)
    assert await access.grants_of(f"User:tenant-{tenant}") == []
    for service in (GATEWAY_PRINCIPAL, GENERATE_PRINCIPAL):
        assert not [g for g in await access.grants_of(service) if g.name.startswith(f"rag.tenant.{tenant}.")]
    await access.close()
    assert audit[0]["action"] == "tenant.delete" and audit[0]["details"]["revoked_api_keys"] in (0, 1)


async def test_a_provisioning_failure_after_the_tenant_exists_is_reported_and_a_retry_finishes_it(
    gateway: Gateway, service_identities: LocalCredentials, kafka_topics: str
) -> None:
    tenant = f"half-{RUN}"
    settings, deps = gateway
    # The gateway's own principal may list topics but create none: provisioning fails after the tenant row.
    unable = KafkaTenantProvisioner(service_kafka("gateway", service_identities, kafka_topics))
    async with _client((settings, dataclasses.replace(deps, tenant_kafka=unable))) as client:
        failed = await client.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": "Half"})
    assert failed.status_code == 503 and failed.headers["content-type"] == "application/problem+json"
    problem = failed.json()
    assert problem["type"] == "urn:ragstream:problem:kafka-provisioning-incomplete"
    assert problem["tenant_id"] == tenant
    assert problem["retry"] == f"POST /v1/admin/tenants/{tenant}/kafka-credentials"
    async with _client(gateway) as client:
        assert (await client.get(f"/v1/admin/tenants/{tenant}")).status_code == 200
        audit = (await client.get(f"/v1/admin/tenants/{tenant}/audit")).json()["items"]
        changes = [item["action"] for item in audit if item["action"] != "admin.read"]  # reads are audited too
        assert changes[:2] == ["tenant.kafka.failed", "tenant.create"]
        finished = await client.post(problem["retry"].removeprefix("POST "))
        assert finished.status_code == 200, finished.text
        tenant_kafka = _signed_in(gateway, finished.json())
        await produce(tenant_kafka, tenant_topics(tenant).documents, "k", _document("d"), str(uuid.uuid4()))
        assert (await client.delete(f"/v1/admin/tenants/{tenant}")).status_code == 204


async def test_a_tenant_whose_topics_would_collide_is_refused_before_it_exists(
    gateway: Gateway, created: dict[str, Any]
) -> None:
    clashing = B.replace(".", "_")  # the same metric names as B's topics: Kafka would refuse them
    async with _client(gateway) as client:
        refused = await client.post("/v1/admin/tenants", json={"tenant_id": clashing, "name": "Clash"})
        assert refused.status_code == 409
        assert refused.json()["type"] == "urn:ragstream:problem:tenant-topic-collision"
        assert (await client.get(f"/v1/admin/tenants/{clashing}")).status_code == 404


async def test_without_provisioner_credentials_tenants_get_no_kafka_access(gateway: Gateway) -> None:
    settings, deps = gateway
    tenant = f"plain-{RUN}"
    async with _client((settings, dataclasses.replace(deps, tenant_kafka=None))) as client:
        created = await client.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": "Plain"})
        rotate = await client.post(f"/v1/admin/tenants/{tenant}/kafka-credentials")
    assert created.status_code == 201 and created.json()["kafka"] is None
    assert rotate.status_code == 503
    assert rotate.json()["type"] == "urn:ragstream:problem:kafka-provisioning-disabled"


def test_secret_str_keeps_the_provisioner_password_out_of_reprs(gateway: Gateway) -> None:
    settings = gateway[0]
    assert isinstance(settings.kafka_provisioner_password, SecretStr)
    assert settings.kafka_provisioner_password.get_secret_value() not in repr(settings)

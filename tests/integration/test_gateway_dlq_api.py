"""The gateway's DLQ admin API against real Kafka and Postgres: a real consumer dead-letters an event, the API
lists, inspects and redrives it (once), and every redrive is in the tenant's audit log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rag.v1 import documents_pb2
from ragstream_common.kafka import (
    ConsumerOptions,
    Envelope,
    EventConsumer,
    EventPublisher,
    OutgoingEvent,
    PermanentError,
)
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from support.kafka_clients import client_kwargs, settings_env

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT = f"dlq-{RUN}"
ADMIN = {"Authorization": "Bearer admin-secret-for-tests-32-chars-min"}
DLQ = DOCUMENTS_RECEIVED.dlq
MINE = {"tenant": TENANT, "limit": 1000}


@pytest.fixture(scope="module")
async def gateway(
    migrated_database: str, kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[tuple[GatewaySettings, GatewayDeps]]:
    # The DLQ API as the gateway's own Kafka principal: its grants (kafka/acls.py) must cover it.
    settings = GatewaySettings(
        DATABASE_URL=migrated_database,
        kafka=kafka_principals["gateway"],
        dev_tenant=TENANT,
        dev_api_key=f"key-{RUN}",
        admin_token="admin-secret-for-tests-32-chars-min",
        db_pool_size=2,
    )
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


@pytest.fixture
async def client(gateway: tuple[GatewaySettings, GatewayDeps]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(*gateway), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as c:
        yield c


async def _dead_letter_one(kafka: KafkaSettings, document_id: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """Publish a DocumentReceived and let a real consumer refuse it (PermanentError); its listed dead letter."""
    publisher = EventPublisher(kafka, source="test/dlq-api")
    await publisher.start()
    message = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=1)
    message.source.text = "refused"
    await publisher.publish(OutgoingEvent(DOCUMENTS_RECEIVED.name, document_key(TENANT, document_id), message))

    async def refuse(batch: Sequence[Envelope[Any]]) -> None:
        if any(e.message.document_id == document_id for e in batch):
            raise PermanentError(f"{document_id} is refused")

    consumer = EventConsumer(
        kafka, ConsumerOptions(group_id=f"dlq-api-{RUN}", topics=(DOCUMENTS_RECEIVED.name,)), refuse, publisher
    )
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(40):
            while True:
                page = await client.get(f"/v1/admin/dlq/{DLQ}/events", params=MINE, headers=ADMIN)
                found = [i for i in page.json()["items"] if i["key"] == document_key(TENANT, document_id)]
                if found:
                    return found[0]
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        await consumer.stop()
        await publisher.stop()


async def _records_after(kafka: KafkaSettings, ends: dict[TopicPartition, int], key: str) -> list[Any]:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        for partition, offset in ends.items():
            consumer.seek(partition, offset)
        found: list[Any] = []
        async with asyncio.timeout(3):
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                found += [r for rs in batch.values() for r in rs if r.key == key.encode()]
    except TimeoutError:
        return found
    finally:
        await consumer.stop()


async def _source_ends(kafka: KafkaSettings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka))
    await consumer.start()
    try:
        partitions = [TopicPartition(DOCUMENTS_RECEIVED.name, p) for p in range(DOCUMENTS_RECEIVED.partitions)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_list_inspect_and_redrive_once_with_audit(client: httpx.AsyncClient, kafka_admin: KafkaSettings) -> None:
    kafka = kafka_admin  # the test's own clients and the operator's command; the API runs as the gateway
    document_id = f"refused-{RUN}"
    listed = await _dead_letter_one(kafka, document_id, client)
    offset = listed["dlq_offset"]
    assert (listed["tenant_id"], listed["reason_class"], listed["redriven"]) == (TENANT, "PermanentError", None)
    assert listed["consumer_group"] == f"dlq-api-{RUN}" and listed["event_type"] == "rag.v1.DocumentReceived"

    depths = {t["dlq_topic"]: t for t in (await client.get("/v1/admin/dlq", headers=ADMIN)).json()["topics"]}
    assert depths[DLQ]["depth"] >= 1 and f"{DOCUMENTS_RECEIVED.name}.dlq" in depths
    detail = (await client.get(f"/v1/admin/dlq/{DOCUMENTS_RECEIVED.name}/events/{offset}", headers=ADMIN)).json()
    assert detail["payload"]["encoding"] == "json" and f'"documentId": "{document_id}"' in detail["payload"]["text"]

    ends = await _source_ends(kafka)
    first = await client.post(f"/v1/admin/dlq/{DLQ}/events/{offset}/redrive", headers=ADMIN)
    again = await client.post(f"/v1/admin/dlq/{DLQ}/events/{offset}/redrive", headers=ADMIN)
    bulk = await client.post(f"/v1/admin/dlq/{DLQ}/redrive", params=MINE, headers=ADMIN)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], again.json()["status"]) == ("redriven", "already_redriven")
    assert bulk.json() == {"redriven": 0, "already_redriven": 1}

    [republished] = await _records_after(kafka, ends, document_key(TENANT, document_id))
    headers = dict(republished.headers)
    assert headers[h.REDRIVE_OF] == f"{DLQ}:{offset}".encode() and h.ERROR_CLASS not in headers

    audit = (await client.get(f"/v1/admin/tenants/{TENANT}/audit", headers=ADMIN)).json()["items"]
    redrives = [e for e in audit if e["action"] == "dlq.redrive"]
    assert [e["details"]["status"] for e in reversed(redrives)] == ["redriven", "already_redriven", "already_redriven"]
    assert {e["resource"] for e in redrives} == {f"{DLQ}:{offset}"}
    after = (await client.get(f"/v1/admin/dlq/{DLQ}/events/{offset}", headers=ADMIN)).json()
    assert after["redriven"]["actor"] == "admin"

    # The command sees the same dead letter and the same ledger.
    shown = await _command(kafka, "show", DOCUMENTS_RECEIVED.name, str(offset))
    assert shown[0]["tenant_id"] == TENANT and shown[0]["redriven"]["actor"] == "admin"
    listed_by_command = await _command(kafka, "list", DLQ, "--tenant", TENANT, "--limit", "1000", "--json")
    assert offset in [item["dlq_offset"] for item in listed_by_command]
    [outcome] = await _command(kafka, "redrive", DLQ, str(offset), "--actor", "cli-test")
    assert outcome["status"] == "already_redriven"


async def _command(kafka: KafkaSettings, *args: str) -> list[dict[str, Any]]:
    """`python -m ragstream_common.dlq ...`, its JSON lines."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ragstream_common.dlq", *args],
        env={**os.environ, **settings_env(kafka)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


async def test_problems(client: httpx.AsyncClient) -> None:
    for response, status, slug in [
        (await client.get("/v1/admin/dlq"), 401, "unauthorized"),
        (await client.get("/v1/admin/dlq/rag.nope.v1/events", headers=ADMIN), 404, "dlq-topic-not-found"),
        (await client.get(f"/v1/admin/dlq/{DLQ}/events/999999999", headers=ADMIN), 404, "dead-letter-not-found"),
        (await client.post(f"/v1/admin/dlq/{DLQ}/events/-1/redrive", headers=ADMIN), 422, "validation"),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["type"] == f"urn:ragstream:problem:{slug}"

"""Documents through the running system: gateway -> Kafka -> ingest -> embed -> retrieve -> Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf import json_format
from rag.v1 import documents_pb2
from ragstream_common.kafka import EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from support.kafka_clients import client_kwargs, signed_in_as
from support.pipeline import metric_value, wait_drained, wait_for_status
from support.samples import ARTICLE, FORMATS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TENANT = "default"


def chunk_rows(database_url: str, document_id: str, tenant: str = TENANT) -> list[tuple[int, str]]:
    """(version, text) of the document's chunks, read as the owner (no row-level security)."""
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT version, text FROM chunks WHERE tenant_id = %s AND document_id = %s ORDER BY position",
            (tenant, document_id),
        ).fetchall()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_each_format_is_indexed(gateway: httpx.AsyncClient, migrated_database: str, fmt: str) -> None:
    filename, content_type, make = FORMATS[fmt]
    document_id = f"format-{fmt}-{uuid.uuid4().hex[:6]}"
    response = await gateway.post(
        "/v1/documents",
        files={"file": (filename, make(), content_type)},
        data={"id": document_id, "title": f"Sample {fmt}", "metadata": json.dumps({"format": fmt})},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["document_id"], accepted["version"], accepted["status"]) == (document_id, 1, "received")
    body = await wait_for_status(gateway, document_id, {"indexed", "failed"})
    assert body["status"] == "indexed", body
    rows = chunk_rows(migrated_database, document_id)
    assert body["chunk_count"] == len(rows) >= 1
    text = " ".join(t for _, t in rows)
    assert "Calvin cycle" in text
    if fmt == "html":
        assert "newsletter" not in text and "catalogue" not in text


async def test_identical_reupload_is_a_no_op_and_unchanged_chunks_are_not_embedded_again(
    gateway: httpx.AsyncClient, embed_metrics_port: int
) -> None:
    document_id = f"dedupe-{uuid.uuid4().hex[:6]}"
    first = await gateway.post("/v1/documents", json={"id": document_id, "title": "A", "text": ARTICLE})
    assert first.status_code == 202
    await wait_for_status(gateway, document_id, {"indexed"})
    again = await gateway.post("/v1/documents", json={"id": document_id, "title": "A", "text": ARTICLE})
    assert again.json()["version"] == 1

    async with httpx.AsyncClient() as metrics:
        before = (await metrics.get(f"http://127.0.0.1:{embed_metrics_port}/metrics")).text
        retitled = await gateway.post("/v1/documents", json={"id": document_id, "title": "B", "text": ARTICLE})
        assert retitled.json()["version"] == 2
        await wait_for_status(gateway, document_id, {"indexed"}, version=2)
        after = (await metrics.get(f"http://127.0.0.1:{embed_metrics_port}/metrics")).text
    name = "ragstream_embed_chunks_total"
    assert metric_value(after, name, 'outcome="encoded"') == metric_value(before, name, 'outcome="encoded"')
    assert metric_value(after, name, 'outcome="reused"') > metric_value(before, name, 'outcome="reused"')


async def test_update_replaces_chunks_and_delete_removes_them(
    gateway: httpx.AsyncClient, migrated_database: str
) -> None:
    document_id = f"lifecycle-{uuid.uuid4().hex[:6]}"
    await gateway.post("/v1/documents", json={"id": document_id, "text": ARTICLE})
    await wait_for_status(gateway, document_id, {"indexed"})
    assert {v for v, _ in chunk_rows(migrated_database, document_id)} == {1}

    update = "Mitochondria produce ATP through oxidative phosphorylation across the inner membrane."
    response = await gateway.post("/v1/documents", json={"id": document_id, "text": update})
    assert response.json()["version"] == 2
    await wait_for_status(gateway, document_id, {"indexed"}, version=2)
    rows = chunk_rows(migrated_database, document_id)
    assert {v for v, _ in rows} == {2}
    assert "Mitochondria" in rows[0][1] and all("Calvin" not in t for _, t in rows)

    assert (await gateway.delete(f"/v1/documents/{document_id}")).status_code == 202
    for _ in range(150):
        if not chunk_rows(migrated_database, document_id):
            break
        await asyncio.sleep(0.2)
    assert chunk_rows(migrated_database, document_id) == []
    status = (await gateway.get(f"/v1/documents/{document_id}")).json()
    assert status["status"] == "deleted"


async def _publish_external(kafka: KafkaSettings, message: documents_pb2.DocumentReceived, content_type: str) -> None:
    publisher = EventPublisher(kafka, source="crm/exporter")
    await publisher.start()
    try:
        key = document_key(message.tenant_id, message.document_id)
        await publisher.publish(OutgoingEvent(DOCUMENTS_RECEIVED.name, key, message, content_type=content_type))
    finally:
        await publisher.stop()


async def test_out_of_order_older_version_is_ignored(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, migrated_database: str
) -> None:
    document_id = f"ordering-{uuid.uuid4().hex[:6]}"
    newer = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=5)
    newer.source.text = "Version five says the enzyme RuBisCO fixes carbon."
    await _publish_external(kafka_admin, newer, "application/protobuf")
    await wait_for_status(gateway, document_id, {"indexed"}, version=5)

    older = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=3)
    older.source.text = "Version three is stale and must never be indexed."
    await _publish_external(kafka_admin, older, "application/protobuf")
    await wait_drained(kafka_admin)
    rows = chunk_rows(migrated_database, document_id)
    assert rows and {v for v, _ in rows} == {5}
    assert (await gateway.get(f"/v1/documents/{document_id}")).json()["version"] == 5


async def test_poison_event_goes_to_dlq_and_the_next_event_is_indexed(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings
) -> None:
    key = document_key(TENANT, "poison")
    producer = AIOKafkaProducer(**client_kwargs(kafka_admin))
    await producer.start()
    try:
        headers = [
            ("ce_id", uuid.uuid4().hex.encode()),
            ("ce_type", b"rag.v1.DocumentReceived"),
            ("ce_source", b"broken/producer"),
            ("ce_specversion", b"1.0"),
            ("content-type", b"application/json"),
        ]
        sent = await producer.send_and_wait(
            DOCUMENTS_RECEIVED.name, b"{this is not json", key=key.encode(), headers=headers
        )
    finally:
        await producer.stop()
    document_id = f"after-poison-{uuid.uuid4().hex[:6]}"
    good = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=1)
    good.source.text = ARTICLE
    await _publish_external(kafka_admin, good, "application/json")
    await wait_for_status(gateway, document_id, {"indexed"})

    dlq = AIOKafkaConsumer(
        f"{DOCUMENTS_RECEIVED.name}.dlq", **client_kwargs(kafka_admin), auto_offset_reset="earliest", group_id=None
    )
    await dlq.start()
    try:
        found = None
        async with asyncio.timeout(30):
            while found is None:
                batch = await dlq.getmany(timeout_ms=500)
                for record in (r for records in batch.values() for r in records):
                    reasons = {n: v.decode() for n, v in record.headers}
                    if reasons.get("dlq_original_offset") == str(sent.offset) and reasons.get(
                        "dlq_original_partition"
                    ) == str(sent.partition):
                        found = reasons
    finally:
        await dlq.stop()
    assert found["dlq_original_topic"] == DOCUMENTS_RECEIVED.name
    assert found["dlq_error_class"] == "InvalidEvent"
    assert "cannot decode" in found["dlq_error_message"]


def _documented_json_example() -> tuple[dict[str, str], dict]:
    """The DocumentReceived example of docs/events.md: its headers table and its JSON payload."""
    text = (ROOT / "docs" / "events.md").read_text()
    section = text.split("<!-- example:document-received -->", 1)[1]
    payload = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    headers = dict(re.findall(r"^\| `([a-z_-]+)` \| `([^`]*)` \|", section.split("```json")[0], re.M))
    return headers, payload


async def test_documented_external_json_example_is_indexed(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings
) -> None:
    headers, payload = _documented_json_example()
    document_id = f"{payload['documentId']}-{uuid.uuid4().hex[:6]}"
    payload["documentId"] = document_id
    json_format.ParseDict(payload, documents_pb2.DocumentReceived())  # the example is a valid message
    headers["ce_id"] = uuid.uuid4().hex
    # Sent as the documented producer does: the tenant's own principal, to the tenant's own documents topic.
    admin = {"Authorization": "Bearer admin-token-for-e2e-tests-32-chars-min"}
    kafka = (await gateway.post(f"/v1/admin/tenants/{payload['tenantId']}/kafka-credentials", headers=admin)).json()
    producer = AIOKafkaProducer(**client_kwargs(signed_in_as(kafka_admin, kafka["username"], kafka["password"])))
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka["topics"]["documents"],
            json.dumps(payload).encode(),
            key=document_key(payload["tenantId"], document_id).encode(),
            headers=[(name, value.encode()) for name, value in headers.items()],
        )
    finally:
        await producer.stop()
    body = await wait_for_status(gateway, document_id, {"indexed", "failed"})
    assert body["status"] == "indexed", body
    assert body["chunk_count"] >= 1


async def test_unparseable_and_empty_documents_fail_with_a_reason(gateway: httpx.AsyncClient) -> None:
    broken = await gateway.post(
        "/v1/documents", files={"file": ("broken.pdf", b"%PDF-1.7\n garbage without objects", "application/pdf")}
    )
    assert broken.status_code == 202
    body = await wait_for_status(gateway, broken.json()["document_id"], {"indexed", "failed"})
    assert body["status"] == "failed" and body["error"]

    empty = await gateway.post("/v1/documents", files={"file": ("empty.txt", b"   \n\n  ", "text/plain")})
    if empty.status_code == 202:
        body = await wait_for_status(gateway, empty.json()["document_id"], {"indexed", "failed"})
        assert body["status"] == "failed" and "empty" in json.dumps(body["error"]).lower()
    else:
        assert empty.status_code == 422

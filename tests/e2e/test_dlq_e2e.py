"""A dead-lettered document event is redriven through the admin API, twice, and indexed once, with the chunk
count of the same text uploaded normally. Even a second real republish (a lost ledger mark) changes nothing: the
pipeline's writes are version-aware.

The dead letter is written the way the ingest consumer writes one (`kafka.dead_letters.reason_headers` over the
original record: its bytes, CloudEvents headers and the `dlq_*` reasons, here an unclassified error that kept
failing), since no healthy ingest dead-letters a good event on purpose."""

from __future__ import annotations

import hashlib
import uuid
from contextlib import AsyncExitStack

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from rag.v1 import documents_pb2
from ragstream_common.blobs import PostgresBlobStore, blob_uri
from ragstream_common.db import create_pool
from ragstream_common.dlq import open_dead_letter_service
from ragstream_common.failures import FailureKind
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.dead_letters import reason_headers
from ragstream_common.kafka.topics import DLQ_REDRIVES, DOCUMENTS_RECEIVED, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from support.kafka_clients import client_kwargs
from support.pipeline import wait_drained, wait_for_status
from support.samples import ARTICLE

pytestmark = pytest.mark.e2e
TENANT = "default"
ADMIN = {"Authorization": "Bearer admin-token-for-e2e-tests-32-chars-min"}
DLQ = DOCUMENTS_RECEIVED.dlq


def chunk_positions(database_url: str, document_id: str) -> list[tuple[int, int]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT version, position FROM chunks WHERE tenant_id = %s AND document_id = %s ORDER BY position",
            (TENANT, document_id),
        ).fetchall()


async def _dead_letter(kafka: KafkaSettings, event: documents_pb2.DocumentReceived) -> int:
    """Write `event` to the DLQ as the ingest consumer would after giving up on it; its DLQ offset."""
    key = document_key(TENANT, event.document_id).encode()
    value, headers = cloudevents.encode(event, source="ragstream/gateway")
    original = ConsumerRecord(DOCUMENTS_RECEIVED.name, 0, 0, 0, 0, key, value, None, len(key), len(value), headers)
    failure = RuntimeError("blob store returned HTTP 500 three times")
    reasons = reason_headers(original, failure, kind=FailureKind.UNCLASSIFIED, attempts=3, group="ragstream-ingest")
    producer = AIOKafkaProducer(**client_kwargs(kafka), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(DLQ, value=value, key=key, headers=headers + reasons)
    finally:
        await producer.stop()
    return int(sent.offset)


async def _restore_blob(database_url: str, key: str, data: bytes) -> None:
    pool = create_pool(database_url, max_size=1, name="e2e-restore")
    await pool.open(wait=True)
    try:
        await PostgresBlobStore(pool).put(TENANT, key, data, "text/plain")
    finally:
        await pool.close()


async def _republish_ignoring_the_ledger(kafka: KafkaSettings, offset: int) -> None:
    """What a lost ledger mark (or two operators in the same instant) would cause: a second real republish."""
    empty_ledger = TopicSpec(f"test.redrives.{uuid.uuid4().hex[:8]}.v1", 1, DLQ_REDRIVES.retention_ms)
    await ensure_topics(kafka, (empty_ledger,))
    async with AsyncExitStack() as stack:
        service = await open_dead_letter_service(stack, kafka, ledger_topic=empty_ledger.name)
        assert (await service.redrive(DLQ, offset, "e2e-duplicate")).status == "redriven"


async def test_a_dead_lettered_document_is_redriven_twice_and_indexed_once(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, migrated_database: str
) -> None:
    control = f"dlq-control-{uuid.uuid4().hex[:6]}"
    assert (await gateway.post("/v1/documents", json={"id": control, "text": ARTICLE})).status_code == 202
    expected_chunks = (await wait_for_status(gateway, control, {"indexed"}))["chunk_count"]

    document_id = f"dlq-blob-{uuid.uuid4().hex[:6]}"
    data = ARTICLE.encode()
    key = f"{document_id}/{hashlib.sha256(data).hexdigest()}"
    event = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=1, title="Blob")
    event.source.uri = blob_uri(key)
    event.source.content_type = "text/plain"
    kafka = kafka_admin

    await _restore_blob(migrated_database, key, data)
    offset = await _dead_letter(kafka, event)
    listed = await gateway.get(f"/v1/admin/dlq/{DLQ}/events/{offset}", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert (listed.json()["tenant_id"], listed.json()["reason_class"]) == (TENANT, "RuntimeError")

    redrive = f"/v1/admin/dlq/{DLQ}/events/{offset}/redrive"
    first, again = (
        (await gateway.post(redrive, headers=ADMIN)).json(),
        (await gateway.post(redrive, headers=ADMIN)).json(),
    )
    assert (first["status"], again["status"]) == ("redriven", "already_redriven")
    await _republish_ignoring_the_ledger(kafka, offset)

    body = await wait_for_status(gateway, document_id, {"indexed"}, version=1)
    await wait_drained(kafka_admin)
    body = (await gateway.get(f"/v1/documents/{document_id}")).json()
    rows = chunk_positions(migrated_database, document_id)
    assert (body["status"], body["version"]) == ("indexed", 1)
    assert body["chunk_count"] == len(rows) == expected_chunks
    assert {v for v, _ in rows} == {1} and len({p for _, p in rows}) == len(rows)

    page = await gateway.get(f"/v1/admin/dlq/{DLQ}/events", params={"tenant": TENANT, "limit": 1000}, headers=ADMIN)
    mine = [i for i in page.json()["items"] if i["key"] == document_key(TENANT, document_id)]
    assert [i["dlq_offset"] for i in mine] == [offset]  # the redrives did not fail again
    assert mine[0]["redriven"]["actor"] == "admin"

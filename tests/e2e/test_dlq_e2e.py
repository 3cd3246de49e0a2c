"""A document whose blob was missing is dead-lettered by ingest; once the blob is restored an operator redrives
it through the admin API, twice, and it is indexed once, with the chunk count of the same text uploaded normally.
Even a second real republish (a lost ledger mark) changes nothing: the pipeline's writes are version-aware."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import httpx
import psycopg
import pytest
from rag.v1 import documents_pb2
from ragstream_common.blobs import PostgresBlobStore, blob_uri
from ragstream_common.db import create_pool
from ragstream_common.dlq import open_dead_letter_service
from ragstream_common.kafka import EventPublisher, OutgoingEvent
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.topics import DLQ_REDRIVES, DOCUMENTS_RECEIVED, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from support.pipeline import wait_drained, wait_for_status
from support.samples import ARTICLE

pytestmark = pytest.mark.e2e
TENANT = "default"
ADMIN = {"Authorization": "Bearer admin-token"}
DLQ = DOCUMENTS_RECEIVED.dlq


def chunk_positions(database_url: str, document_id: str) -> list[tuple[int, int]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT version, position FROM chunks WHERE tenant_id = %s AND document_id = %s ORDER BY position",
            (TENANT, document_id),
        ).fetchall()


async def _wait_dead_letter(gateway: httpx.AsyncClient, document_id: str, timeout_s: float = 90) -> dict[str, Any]:
    """The ingest dead letter of `document_id` (xfail when ingest reports a missing blob as DocumentFailed)."""
    key = document_key(TENANT, document_id)
    deadline = time.monotonic() + timeout_s
    failed_since: float | None = None
    while time.monotonic() < deadline:
        page = await gateway.get(f"/v1/admin/dlq/{DLQ}/events", params={"tenant": TENANT, "limit": 1000}, headers=ADMIN)
        assert page.status_code == 200, page.text
        found = [i for i in page.json()["items"] if i["key"] == key and i["consumer_group"] == "ragstream-ingest"]
        if found:
            return found[0]
        status = await gateway.get(f"/v1/documents/{document_id}")
        if status.status_code == 200 and status.json()["status"] == "failed":
            failed_since = failed_since or time.monotonic()
            if time.monotonic() - failed_since > 10:
                pytest.xfail(f"ingest reported the missing blob as DocumentFailed, not a dead letter: {status.json()}")
        await asyncio.sleep(0.3)
    raise AssertionError(f"no dead letter for {key} in {DLQ}")


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
    gateway: httpx.AsyncClient, kafka_topics: str, migrated_database: str
) -> None:
    control = f"dlq-control-{uuid.uuid4().hex[:6]}"
    assert (await gateway.post("/v1/documents", json={"id": control, "text": ARTICLE})).status_code == 202
    expected_chunks = (await wait_for_status(gateway, control, {"indexed"}))["chunk_count"]

    document_id = f"dlq-blob-{uuid.uuid4().hex[:6]}"
    data = ARTICLE.encode()
    key = f"{document_id}/{hashlib.sha256(data).hexdigest()}"
    event = documents_pb2.DocumentReceived(tenant_id=TENANT, document_id=document_id, version=1, title="Blob")
    event.source.uri = blob_uri(key)  # the blob is not there (yet)
    event.source.content_type = "text/plain"
    kafka = KafkaSettings(bootstrap_servers=kafka_topics)
    publisher = EventPublisher(kafka, source="e2e/dlq")
    await publisher.start()
    try:
        await publisher.publish(OutgoingEvent(DOCUMENTS_RECEIVED.name, document_key(TENANT, document_id), event))
    finally:
        await publisher.stop()

    letter = await _wait_dead_letter(gateway, document_id)
    offset = letter["dlq_offset"]
    await _restore_blob(migrated_database, key, data)

    redrive = f"/v1/admin/dlq/{DLQ}/events/{offset}/redrive"
    first, again = (
        (await gateway.post(redrive, headers=ADMIN)).json(),
        (await gateway.post(redrive, headers=ADMIN)).json(),
    )
    assert (first["status"], again["status"]) == ("redriven", "already_redriven")
    await _republish_ignoring_the_ledger(kafka, offset)

    body = await wait_for_status(gateway, document_id, {"indexed"}, version=1)
    await wait_drained(kafka_topics)
    body = (await gateway.get(f"/v1/documents/{document_id}")).json()
    rows = chunk_positions(migrated_database, document_id)
    assert (body["status"], body["version"]) == ("indexed", 1)
    assert body["chunk_count"] == len(rows) == expected_chunks
    assert {v for v, _ in rows} == {1} and len({p for _, p in rows}) == len(rows)

    page = await gateway.get(f"/v1/admin/dlq/{DLQ}/events", params={"tenant": TENANT, "limit": 1000}, headers=ADMIN)
    mine = [i for i in page.json()["items"] if i["key"] == document_key(TENANT, document_id)]
    assert [i["dlq_offset"] for i in mine] == [offset]  # the redrives did not fail again
    assert mine[0]["redriven"]["actor"] == "admin"

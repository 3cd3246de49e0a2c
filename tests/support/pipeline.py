"""Waiting on the running system the way an operator would: document status, consumer lag, metrics."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from ragstream_common.kafka_settings import KafkaSettings

from support.kafka_clients import client_kwargs

DOCUMENT_PIPELINE_GROUPS = {
    "ragstream-ingest": "rag.documents.received.v1",
    "ragstream-embed-chunks": "rag.chunks.ready.v1",
    "ragstream-retrieve-indexer": "rag.chunks.embedded.v1",
}


async def wait_for_status(
    client: httpx.AsyncClient, document_id: str, statuses: set[str], timeout_s: float = 90, version: int | None = None
) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/documents/{document_id}")
        if response.status_code == 200:
            body = response.json()
            if body["status"] in statuses and (version is None or body["version"] == version):
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"document {document_id} never reached {statuses} (last: {body})")


async def group_lag(kafka: KafkaSettings, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp in partitions
        )
    finally:
        await consumer.stop()
        await admin.close()


async def wait_drained(
    kafka: KafkaSettings, groups: dict[str, str] = DOCUMENT_PIPELINE_GROUPS, timeout_s: float = 90
) -> None:
    """Until every stage's consumer group has committed everything on its topic (checked twice in a row,
    since one stage's commit can produce work for the next)."""
    deadline = time.monotonic() + timeout_s
    clean_rounds = 0
    while time.monotonic() < deadline:
        lags = [await group_lag(kafka, group, topic) for group, topic in groups.items()]
        clean_rounds = clean_rounds + 1 if not any(lags) else 0
        if clean_rounds >= 2:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"pipeline not drained: {dict(zip(groups, lags, strict=True))}")


def metric_value(metrics_text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} ([0-9.e+-]+)$", re.M)
    match = pattern.search(metrics_text)
    return float(match.group(1)) if match else 0.0

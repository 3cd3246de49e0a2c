"""The Kafka conventions against a real broker: CloudEvents, tracing, DLQ, bootstrap, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.kafka import Envelope, EventPublisher, OutgoingEvent
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.kafka.topics import TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from support.consuming import consume_until
from support.kafka_clients import client_kwargs, settings_env

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


async def _new_topic(kafka: KafkaSettings, partitions: int = 3) -> TopicSpec:
    spec = TopicSpec(f"test.kafka.{uuid.uuid4().hex[:8]}.v1", partitions=partitions, retention_ms=3_600_000)
    dlq = TopicSpec(spec.dlq, partitions=1, retention_ms=3_600_000)
    await ensure_topics(kafka, (spec, dlq))
    return spec


async def _first_dead_letter(kafka: KafkaSettings, dlq_topic: str) -> tuple[Any, dict[str, str]]:
    """The first record of a dead-letter topic and its headers."""
    dlq = AIOKafkaConsumer(dlq_topic, **client_kwargs(kafka), auto_offset_reset="earliest")
    await dlq.start()
    try:
        record = await asyncio.wait_for(dlq.getone(), 20)
    finally:
        await dlq.stop()
    return record, {name: value.decode() for name, value in record.headers}


async def test_event_arrives_with_trace_id_and_cloudevents_headers(kafka_admin: KafkaSettings) -> None:
    spec = await _new_topic(kafka_admin)
    tracer = TracerProvider().get_tracer("test")
    publisher = EventPublisher(kafka_admin, source="test/producer")
    await publisher.start()
    with tracer.start_as_current_span("upload") as span:
        sent_trace = span.get_span_context().trace_id
        message = queries_pb2.QueryRequested(query_id="q-1", tenant_id="acme", question="why?")
        await publisher.publish(OutgoingEvent(spec.name, "q-1", message))
    await publisher.stop()

    seen: list[Envelope[Any]] = []

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        seen.extend(batch)

    await consume_until(kafka_admin, spec.name, f"g-{uuid.uuid4().hex}", handle, lambda: seen)
    envelope = seen[0]
    assert envelope.message == message
    assert envelope.event_type == "rag.v1.QueryRequested"
    assert envelope.source == "test/producer"
    assert envelope.key == "q-1"
    assert uuid.UUID(envelope.event_id)
    assert trace.get_current_span(envelope.trace_context).get_span_context().trace_id == sent_trace


async def test_poison_goes_to_dlq_with_reasons_and_the_partition_moves_on(kafka_admin: KafkaSettings) -> None:
    spec = await _new_topic(kafka_admin, partitions=1)
    producer = AIOKafkaProducer(**client_kwargs(kafka_admin))
    await producer.start()
    await producer.send_and_wait(spec.name, b"not protobuf", key=b"k", headers=[("ce_id", b"1")])
    good = queries_pb2.QueryRequested(query_id="good")
    headers = [
        ("ce_id", b"2"),
        ("ce_type", b"rag.v1.QueryRequested"),
        ("ce_source", b"ext"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    await producer.send_and_wait(spec.name, json_format.MessageToJson(good).encode(), key=b"k", headers=headers)
    await producer.stop()

    handled: list[str] = []

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        handled.extend(e.message.query_id for e in batch)

    await consume_until(kafka_admin, spec.name, f"g-{uuid.uuid4().hex}", handle, lambda: handled)
    assert handled == ["good"]

    record, reasons = await _first_dead_letter(kafka_admin, spec.dlq)
    assert record.value == b"not protobuf"
    assert reasons["dlq_original_topic"] == spec.name
    assert reasons["dlq_original_partition"] == "0"
    assert reasons["dlq_original_offset"] == "0"
    assert reasons["dlq_error_class"] == "InvalidEvent"
    assert "missing CloudEvents headers" in reasons["dlq_error_message"]


async def test_handler_permanent_error_is_dead_lettered(kafka_admin: KafkaSettings) -> None:
    from ragstream_common.kafka import PermanentError

    spec = await _new_topic(kafka_admin, partitions=1)
    publisher = EventPublisher(kafka_admin, source="test")
    await publisher.start()
    await publisher.publish_many(
        [OutgoingEvent(spec.name, "k", documents_pb2.DocumentDeleted(document_id=d)) for d in ("bad", "ok")]
    )
    await publisher.stop()
    handled: list[str] = []

    async def handle(batch: Sequence[Envelope[Any]]) -> None:
        if any(e.message.document_id == "bad" for e in batch):
            raise PermanentError("document id 'bad' is refused")
        handled.extend(e.message.document_id for e in batch)

    await consume_until(kafka_admin, spec.name, f"g-{uuid.uuid4().hex}", handle, lambda: handled)
    assert handled == ["ok"]
    record, reasons = await _first_dead_letter(kafka_admin, spec.dlq)
    assert record.key == b"k"
    assert reasons["dlq_error_class"] == "PermanentError"
    assert reasons["ce_type"] == "rag.v1.DocumentDeleted"


async def test_topic_bootstrap_is_idempotent(kafka_admin: KafkaSettings) -> None:
    first = await ensure_topics(kafka_admin)
    second = await ensure_topics(kafka_admin)
    assert second == []
    admin = AIOKafkaAdminClient(**client_kwargs(kafka_admin))
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert "rag.documents.received.v1" in topics and "rag.queries.requested.v1.dlq" in topics
    assert isinstance(first, list)


async def _committed_total(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in range(partitions):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def test_sigterm_mid_stream_commits_exactly_what_was_processed(
    kafka_admin: KafkaSettings, tmp_path: Path
) -> None:
    spec = await _new_topic(kafka_admin, partitions=3)
    count = 120
    publisher = EventPublisher(kafka_admin, source="test")
    await publisher.start()
    await publisher.publish_many(
        [OutgoingEvent(spec.name, f"k{i}", queries_pb2.QueryRequested(query_id=f"q{i}")) for i in range(count)]
    )
    await publisher.stop()
    group, out = f"g-{uuid.uuid4().hex}", tmp_path / "processed.txt"
    env = {**os.environ, **settings_env(kafka_admin)}  # credentials through the environment, not argv
    args = [
        sys.executable,
        str(HERE / "processes" / "counting_consumer.py"),
        kafka_admin.bootstrap_servers,
        spec.name,
        group,
        str(out),
    ]

    process = subprocess.Popen([*args, "0.02"], stdout=subprocess.PIPE, text=True, env=env)
    async with asyncio.timeout(60):
        while not out.exists() or len(out.read_text().split()) < 20:
            await asyncio.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    processed = out.read_text().split()
    assert 20 <= len(processed) < count
    assert await _committed_total(kafka_admin, group, spec.name, 3) == len(processed)

    process = subprocess.Popen([*args, "0"], stdout=subprocess.PIPE, text=True, env=env)
    async with asyncio.timeout(60):
        while len(out.read_text().split()) < count:
            await asyncio.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    everything = out.read_text().split()
    assert sorted(everything) == sorted(f"q{i}" for i in range(count)), "lost or duplicated events"
    assert signal.SIGTERM  # the second run also exited 0 above

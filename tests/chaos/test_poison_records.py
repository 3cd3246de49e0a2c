"""Poison records on every input topic go to its DLQ with reasons, and the good events behind them flow on.

On every partition of every topic a service consumes: garbage bytes, an unknown ce_type, and a valid envelope
whose payload does not decode as its type; on the topics that allow large records, a 10 MB one too. Then a small
corpus is uploaded behind them. Each poison must reach `<topic>.dlq` with `dlq_*` reason headers within
MAX_STALL_S of being written (no partition stalls), and the corpus must pass the audit.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf import symbol_database
from google.protobuf.descriptor import FieldDescriptor
from ragstream_common.kafka.topics import LARGE_MESSAGE_BYTES, PIPELINE_TOPICS, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings
from support.kafka_clients import client_kwargs

from chaos.audit import DeadLetter, read_dead_letters
from chaos.scenario import FAST_CORPUS, assert_clean, ingest_with_fault
from chaos.system import ChaosSystem

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_fast]

MAX_STALL_S = 5.0
# Kinds a handler may drop with a warning instead of dead-lettering; they must not stall their partition either.
MAY_BE_DROPPED = {"empty-message"}
BIG_RECORD_BYTES = 10 * 1024 * 1024
# Topics some service consumes (answers.produced is read by clients outside the platform).
INPUT_TOPICS = tuple(t for t in PIPELINE_TOPICS if t.name != "rag.answers.produced.v1")


@dataclass(frozen=True)
class Poison:
    topic: str
    partition: int
    offset: int
    kind: str
    written_ms: int


def _headers(event_type: str, content_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", uuid.uuid4().hex.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", b"chaos/poison"),
        ("content-type", content_type.encode()),
    ]


def _mistyped_json(event_type: str) -> bytes:
    """JSON of the right type whose first field holds a value of the wrong kind: json_format refuses it."""
    field = symbol_database.Default().GetSymbol(event_type).DESCRIPTOR.fields[0]
    wrong: object = 42 if field.type == FieldDescriptor.TYPE_MESSAGE else {"not": "a scalar"}
    return json.dumps({field.json_name: wrong}).encode()


def _poisons(spec: TopicSpec, partition: int) -> dict[str, tuple[bytes, list[tuple[str, bytes]]]]:
    event_type = spec.event_types[0]
    kinds = {
        "garbage": (os.urandom(512), _headers(event_type, "application/protobuf")),
        "unknown-type": (b"\x0a\x03abc", _headers("rag.v1.NoSuchEvent", "application/protobuf")),
        "invalid-payload": (_mistyped_json(event_type), _headers(event_type, "application/json")),
        # Decodes (to an empty message) but says nothing valid: its handler may dead-letter or drop it.
        "empty-message": (b"", _headers(event_type, "application/protobuf")),
    }
    large = int(spec.config().get("max.message.bytes", "0")) >= LARGE_MESSAGE_BYTES
    if large and partition == 0:
        kinds["10mb"] = (os.urandom(BIG_RECORD_BYTES), _headers(event_type, "application/protobuf"))
    return kinds


async def _write_poison(kafka: KafkaSettings) -> list[Poison]:
    producer = AIOKafkaProducer(**client_kwargs(kafka), max_request_size=LARGE_MESSAGE_BYTES, acks="all")
    await producer.start()
    written = []
    try:
        for spec in INPUT_TOPICS:
            for partition in range(spec.partitions):
                for kind, (value, headers) in _poisons(spec, partition).items():
                    key = f"chaos-poison/{kind}-{partition}".encode()
                    sent = await producer.send_and_wait(spec.name, value, key=key, partition=partition, headers=headers)
                    written.append(Poison(spec.name, partition, sent.offset, kind, sent.timestamp))
    finally:
        await producer.stop()
    return written


def _dead_lettered_at(letter: DeadLetter) -> float:
    return datetime.fromisoformat(letter.headers["dlq_failed_at"]).timestamp()


def _check_dead_letters(poisons: list[Poison], letters: list[DeadLetter]) -> list[str]:
    """What is wrong: poisons missing from their DLQ, without reasons, or dead-lettered too late."""
    by_origin: dict[tuple[str, str, str], list[DeadLetter]] = {}
    for letter in letters:
        origin = tuple(letter.headers.get(f"dlq_original_{h}", "") for h in ("topic", "partition", "offset"))
        by_origin.setdefault((origin[0], origin[1], origin[2]), []).append(letter)
    problems = []
    for poison in poisons:
        found = by_origin.get((poison.topic, str(poison.partition), str(poison.offset)), [])
        if not found and poison.kind in MAY_BE_DROPPED:
            continue
        if not found:
            problems.append(f"{poison.kind} on {poison.topic}[{poison.partition}]@{poison.offset} not dead-lettered")
            continue
        for letter in found:
            if letter.topic != f"{poison.topic}.dlq" or not letter.headers.get("dlq_error_class"):
                problems.append(f"{poison.kind} on {poison.topic}: no reason headers {letter.headers}")
            stall = _dead_lettered_at(letter) - poison.written_ms / 1000
            if stall > MAX_STALL_S:
                problems.append(f"{poison.kind} on {poison.topic}[{poison.partition}] held it {stall:.1f}s")
    return problems


@pytest.mark.timeout(600)
async def test_poison_on_every_input_topic_is_dead_lettered_and_good_events_flow(system: ChaosSystem) -> None:
    poisons: list[Poison] = []

    async def inject(system: ChaosSystem) -> None:
        poisons.extend(await _write_poison(system.admin))

    # Written into the idle system, so the time to its DLQ is the time the poison held its partition; the whole
    # corpus (and its chunks, statuses and queries) then comes behind it.
    report = await ingest_with_fault(system, "poison", inject, size=FAST_CORPUS, fault_at=None)
    assert_clean(report, system)
    problems = _check_dead_letters(poisons, await read_dead_letters(system.admin))
    assert not problems, "\n".join(problems[:20])

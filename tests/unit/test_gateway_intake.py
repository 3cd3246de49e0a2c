"""The intake bridge handler over an in-memory sink: the tenant comes from the topic name, a payload naming
another tenant is a permanent `tenant-mismatch`, event ids and traces are kept, reply_to never passes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import envelope, metric
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import documents_pb2, queries_pb2, usage_pb2
from ragstream_common.events import Envelope, PermanentError
from ragstream_common.failures import FailureKind, classify
from ragstream_common.kafka.tenant_topics import tenant_topics
from ragstream_gateway.intake import Forwarded, TenantMismatch, bridge_intake

pytestmark = pytest.mark.unit
ACME = tenant_topics("acme.eu")


@dataclass
class RecordingIntakeSink:
    """Keeps the forwarded pipeline events, and apart from them their usage records (test_gateway_usage.py)."""

    forwarded: list[Forwarded] = field(default_factory=list)
    usage: list[Forwarded] = field(default_factory=list)
    calls: int = 0
    fail_with: BaseException | None = None

    async def forward(self, events: Sequence[Forwarded]) -> None:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        for event in events:
            (self.usage if isinstance(event.message, usage_pb2.UsageRecorded) else self.forwarded).append(event)


def _document(tenant_id: str = "", document_id: str = "d1") -> documents_pb2.DocumentReceived:
    return documents_pb2.DocumentReceived(
        tenant_id=tenant_id, document_id=document_id, version=1, source=documents_pb2.DocumentSource(text="Hello.")
    )


def _on(message: Message, topic: str, offset: int = 0) -> Envelope[Any]:
    return envelope(message, "k", topic=topic, offset=offset)


async def _bridge(*envelopes: Envelope[Any]) -> RecordingIntakeSink:
    sink = RecordingIntakeSink()
    await bridge_intake(list(envelopes), sink)
    return sink


@pytest.mark.parametrize("claimed", ["", "acme.eu"])
async def test_a_document_is_forwarded_with_the_topics_tenant_and_its_event_id(claimed: str) -> None:
    before = metric("ragstream_gateway_intake_forwarded_total", kind="documents")
    incoming = _on(_document(claimed), ACME.documents, offset=7)
    sink = await _bridge(incoming)
    [out] = sink.forwarded
    assert isinstance(out.message, documents_pb2.DocumentReceived)
    assert out.message.tenant_id == "acme.eu"
    assert (out.message.document_id, out.message.version, out.message.source.text) == ("d1", 1, "Hello.")
    assert (out.event_id, out.source, out.context) == ("id-7", "test", incoming.trace_context)
    # The consumed message is left as it was (a retry starts from the same record).
    assert incoming.message.tenant_id == claimed
    assert metric("ragstream_gateway_intake_forwarded_total", kind="documents") - before == 1


async def test_updates_and_deletes_pass_like_new_documents() -> None:
    updated = documents_pb2.DocumentUpdated(document_id="d1", version=2)
    deleted = documents_pb2.DocumentDeleted(tenant_id="acme.eu", document_id="d1", version=3)
    sink = await _bridge(_on(updated, ACME.documents), _on(deleted, ACME.documents, 1))
    assert [(type(f.message), f.message.tenant_id) for f in sink.forwarded] == [
        (documents_pb2.DocumentUpdated, "acme.eu"),
        (documents_pb2.DocumentDeleted, "acme.eu"),
    ]


@pytest.mark.parametrize("claimed", ["acme", "acme.eu.x", "other", "ACME.EU"])
async def test_an_event_naming_another_tenant_is_a_permanent_tenant_mismatch(claimed: str) -> None:
    sink = RecordingIntakeSink()
    with pytest.raises(TenantMismatch, match=r"^tenant-mismatch: ") as raised:
        await bridge_intake([_on(_document(claimed), ACME.documents)], sink)
    assert "acme.eu" in str(raised.value) and repr(claimed) in str(raised.value)
    assert classify(raised.value) is FailureKind.PERMANENT
    assert TenantMismatch.reason == "tenant-mismatch"
    assert sink.calls == 0


async def test_one_mismatch_forwards_nothing_of_its_batch() -> None:
    # The consumer then retries one by one: the good events pass, only the bad one is dead-lettered.
    batch = [_on(_document("acme.eu", "d1"), ACME.documents), _on(_document("other", "d2"), ACME.documents, 1)]
    sink = RecordingIntakeSink()
    with pytest.raises(TenantMismatch):
        await bridge_intake(batch, sink)
    assert sink.calls == 0 and sink.forwarded == []


async def test_a_kafka_query_is_stamped_and_loses_its_reply_to() -> None:
    before = metric("ragstream_gateway_intake_reply_to_dropped_total")
    query = queries_pb2.QueryRequested(query_id="q1", question="Why?", reply_to="attacker.example:443", top_k=3)
    sink = await _bridge(_on(query, ACME.queries), _on(queries_pb2.QueryRequested(query_id="q2"), ACME.queries, 1))
    assert [(f.message.query_id, f.message.tenant_id, f.message.reply_to) for f in sink.forwarded] == [
        ("q1", "acme.eu", ""),
        ("q2", "acme.eu", ""),
    ]
    assert sink.forwarded[0].message.top_k == 3 and sink.forwarded[0].message.question == "Why?"
    assert metric("ragstream_gateway_intake_reply_to_dropped_total") - before == 1


@pytest.mark.parametrize(
    ("message", "topic"),
    [
        (queries_pb2.QueryRequested(query_id="q1"), ACME.documents),
        (documents_pb2.DocumentReceived(document_id="d1"), ACME.queries),
        (documents_pb2.DocumentReceived(document_id="d1"), ACME.answers),
        (documents_pb2.DocumentReceived(document_id="d1"), "rag.documents.received.v1"),
    ],
)
async def test_an_event_the_topic_does_not_carry_is_permanent(message: Message, topic: str) -> None:
    sink = RecordingIntakeSink()
    with pytest.raises(PermanentError):
        await bridge_intake([_on(message, topic)], sink)
    assert sink.calls == 0


async def test_a_failed_forward_propagates_and_counts_nothing() -> None:
    before = metric("ragstream_gateway_intake_forwarded_total", kind="queries")
    sink = RecordingIntakeSink(fail_with=ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        await bridge_intake([_on(queries_pb2.QueryRequested(query_id="q1"), ACME.queries)], sink)
    assert metric("ragstream_gateway_intake_forwarded_total", kind="queries") == before


async def test_each_forwarded_event_continues_the_trace_of_its_record() -> None:
    tracer = TracerProvider().get_tracer("test")
    batch = []
    for offset in range(2):
        with tracer.start_as_current_span(f"produce {offset}"):
            batch.append(_on(_document(document_id=f"d{offset}"), ACME.documents, offset))
    sink = await _bridge(*batch)
    assert [f.context for f in sink.forwarded] == [e.trace_context for e in batch]


@dataclass
class RecordingRawPublisher:
    """The producer's `send_raw`, recording (topic, key, value, headers); yields so concurrent sends interleave."""

    sent: list[tuple[str, bytes | None, bytes | None, dict[str, str]]] = field(default_factory=list)

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await asyncio.sleep(0)
        self.sent.append((topic, key, value, {name: raw.decode() for name, raw in headers}))


async def test_the_kafka_sink_keeps_event_ids_keys_and_each_keys_order() -> None:
    from ragstream_gateway.adapters.intake_kafka import KafkaIntakeSink

    events = [
        Forwarded(_document("acme.eu", "d1"), "e1", "crm/exporter", otel_context.get_current()),
        Forwarded(_document("acme.eu", "d2"), "e2", "crm/exporter", otel_context.get_current()),
        Forwarded(
            documents_pb2.DocumentDeleted(tenant_id="acme.eu", document_id="d1", version=1),
            "e3",
            "crm",
            otel_context.get_current(),
        ),
        Forwarded(
            queries_pb2.QueryRequested(query_id="q1", tenant_id="acme.eu"),
            "e4",
            "crm/asker",
            otel_context.get_current(),
        ),
    ]
    publisher = RecordingRawPublisher()
    await KafkaIntakeSink(publisher).forward(events)
    sent = {headers["ce_id"]: (topic, key, headers) for topic, key, _, headers in publisher.sent}
    assert {event_id: (topic, key) for event_id, (topic, key, _) in sent.items()} == {
        "e1": ("rag.documents.received.v1", b"acme.eu/d1"),
        "e2": ("rag.documents.received.v1", b"acme.eu/d2"),
        "e3": ("rag.documents.received.v1", b"acme.eu/d1"),
        "e4": ("rag.queries.requested.v1", b"q1"),
    }
    assert sent["e1"][2]["ce_source"] == "crm/exporter" and sent["e1"][2]["ce_type"] == "rag.v1.DocumentReceived"
    # One document's events keep their order; the value is the stamped message.
    d1 = [headers["ce_id"] for _, key, _, headers in publisher.sent if key == b"acme.eu/d1"]
    assert d1 == ["e1", "e3"]
    [value] = [value for _, _, value, headers in publisher.sent if headers["ce_id"] == "e4"]
    assert queries_pb2.QueryRequested.FromString(value or b"").tenant_id == "acme.eu"

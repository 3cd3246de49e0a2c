"""Dead letters over an in-memory store: parsing, filters, pagination, previews, idempotent redrive."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from fakes.dlq import DLQ, SOURCE, T0, FakeLedger, FakePublisher, FakeStore, dead_letter
from rag.v1 import documents_pb2
from ragstream_common import dlq_service
from ragstream_common.dlq_records import PREVIEW_CHARS, DeadLetterFilter, RawRecord, parse_dead_letter
from ragstream_common.dlq_service import (
    DeadLetterNotFound,
    DeadLetterService,
    RedriveMark,
    UnknownDeadLetterTopic,
)
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka import dlq_headers as h

pytestmark = pytest.mark.unit


def service_over(*records: RawRecord, first: int = 0) -> tuple[DeadLetterService, FakeStore, FakePublisher]:
    store = FakeStore({DLQ: list(records), "rag.chunks.ready.v1.dlq": []}, {DLQ: first})
    publisher = FakePublisher()
    return DeadLetterService(store, FakeLedger(), publisher), store, publisher


def test_a_record_becomes_a_typed_dead_letter() -> None:
    letter = parse_dead_letter(dead_letter(7))
    assert (letter.dlq_topic, letter.dlq_offset, letter.original_topic) == (DLQ, 7, SOURCE)
    assert (letter.original_partition, letter.original_offset, letter.attempts) == (2, 107, 3)
    assert (letter.event_type, letter.event_id, letter.tenant_id) == ("rag.v1.DocumentReceived", "event-7", "acme")
    assert (letter.reason_class, letter.reason_message, letter.consumer_group) == (
        "PermanentError",
        "it broke",
        "ragstream-ingest",
    )
    assert letter.failed_at == T0 and letter.size_bytes > 0 and letter.key == "acme/doc-7"


def test_an_undecodable_record_has_no_tenant_and_a_base64_preview() -> None:
    record = dead_letter(0, value=b"\xff" * 10_000, reason="InvalidEvent")
    letter = parse_dead_letter(record)
    assert letter.tenant_id is None and letter.size_bytes == 10_000

    bare = RawRecord(DLQ, 0, 3, None, b"x", (), int(T0.timestamp() * 1000))
    assert parse_dead_letter(bare).failed_at == T0  # no reason headers: the broker's timestamp
    assert parse_dead_letter(bare).original_topic == SOURCE


async def test_inspect_previews_json_or_a_bounded_base64_prefix() -> None:
    big_text = documents_pb2.DocumentReceived(tenant_id="acme", document_id="big", version=1)
    big_text.source.text = "word " * 5000
    value, headers = cloudevents.encode(big_text, source="test")
    large = RawRecord(DLQ, 0, 0, b"k", value, tuple(headers), 0)
    garbage = dead_letter(1, value=bytes(range(256)) * 100)
    service, _, _ = service_over(large, garbage)

    inspected, mark = await service.inspect(SOURCE, 0)
    assert mark is None
    assert inspected.payload.encoding == "json" and inspected.payload.truncated
    assert len(inspected.payload.text) == PREVIEW_CHARS and inspected.payload.text.startswith('{"tenantId": "acme"')

    inspected, _ = await service.inspect(DLQ, 1)
    assert inspected.payload.encoding == "base64" and inspected.payload.truncated
    assert len(inspected.payload.text) <= PREVIEW_CHARS
    assert base64.b64decode(inspected.payload.text) == (bytes(range(256)) * 100)[: PREVIEW_CHARS // 4 * 3]
    assert "traceparent" in inspected.headers and not any(n.startswith("dlq_") for n in inspected.headers)


async def test_filters_by_tenant_reason_and_time() -> None:
    service, _, _ = service_over(
        dead_letter(0, tenant="acme", reason="InvalidEvent", failed_at=T0),
        dead_letter(1, tenant="beta", reason="PermanentError", failed_at=T0 + timedelta(hours=1)),
        dead_letter(2, tenant="acme", reason="PermanentError", failed_at=T0 + timedelta(hours=2)),
    )

    async def offsets(where: DeadLetterFilter) -> list[int]:
        page = await service.list_page(DLQ, where)
        return [item.letter.dlq_offset for item in page.items]

    assert await offsets(DeadLetterFilter()) == [0, 1, 2]
    assert await offsets(DeadLetterFilter(tenant_id="acme")) == [0, 2]
    assert await offsets(DeadLetterFilter(reason_class="PermanentError")) == [1, 2]
    assert await offsets(DeadLetterFilter(since=T0 + timedelta(minutes=30))) == [1, 2]
    assert await offsets(DeadLetterFilter(until=T0 + timedelta(hours=1))) == [0]
    naive = (T0 + timedelta(hours=1)).replace(tzinfo=None)  # naive times are UTC
    assert await offsets(DeadLetterFilter(tenant_id="acme", since=naive)) == [2]


async def test_pages_continue_at_next_offset_across_scan_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq_service, "SCAN_BATCH", 3)
    records = [dead_letter(i, tenant="acme" if i % 2 == 0 else "beta") for i in range(10)]
    service, store, _ = service_over(*records)

    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = await service.list_page(DLQ, DeadLetterFilter(tenant_id="acme"), offset=offset, limit=2)
        seen += [item.letter.dlq_offset for item in page.items]
        assert len(page.items) <= 2
        offset = page.next_offset
    assert seen == [0, 2, 4, 6, 8]
    assert store.reads == 5  # pages span scan batches


async def test_offsets_before_retention_start_at_the_first_retained_record() -> None:
    service, _, _ = service_over(dead_letter(5), dead_letter(6), first=5)
    page = await service.list_page(DLQ, DeadLetterFilter(), offset=0, limit=10)
    assert [i.letter.dlq_offset for i in page.items] == [5, 6] and page.next_offset is None
    with pytest.raises(DeadLetterNotFound):
        await service.inspect(DLQ, 2)
    with pytest.raises(DeadLetterNotFound):
        await service.redrive(DLQ, 7, "admin")


async def test_unknown_topics_are_refused() -> None:
    service, _, _ = service_over()
    with pytest.raises(UnknownDeadLetterTopic):
        await service.list_page("rag.unknown.v1", DeadLetterFilter())
    with pytest.raises(UnknownDeadLetterTopic):
        await service.redrive("rag.dlq.redrives.v1", 0, "admin")


async def test_redrive_republishes_the_original_once() -> None:
    # A failed redrive dead-lettered again, and a header naming some other topic (the last value counts).
    earlier = ((h.REDRIVE_OF, b"older.dlq:1"), (h.ORIGINAL_TOPIC, b"rag.dlq.redrives.v1"))
    record = dead_letter(4, extra_headers=earlier)
    service, _, publisher = service_over(record)

    first = await service.redrive(SOURCE, 4, "admin")
    again = await service.redrive(DLQ, 4, "someone-else")
    assert (first.status, again.status) == ("redriven", "already_redriven")
    assert again.mark == first.mark and first.mark.actor == "admin" and first.mark.event_id == "event-4"

    [(topic, key, value, headers)] = publisher.sent
    # The DLQ's name decides the target, whatever a header claims.
    assert topic == SOURCE and key == record.key and value == record.value
    names = [name for name, _ in headers]
    assert not any(name.startswith("dlq_") for name in names)
    assert dict(headers)[h.REDRIVE_OF] == f"{DLQ}:4".encode() and names.count(h.REDRIVE_OF) == 1
    assert {"ce_id", "ce_type", "traceparent"} <= set(names)

    page = await service.list_page(DLQ, DeadLetterFilter())
    assert page.items[0].redriven == first.mark


async def test_bulk_redrive_counts_and_skips_what_was_redriven() -> None:
    records = [dead_letter(i, reason="InvalidEvent" if i < 3 else "PermanentError") for i in range(6)]
    service, _, publisher = service_over(*records)
    await service.redrive(DLQ, 1, "admin")

    result = await service.redrive_matching(DLQ, DeadLetterFilter(reason_class="InvalidEvent"), "admin")
    assert (result.redriven, result.already_redriven) == (2, 1)
    limited = await service.redrive_matching(DLQ, DeadLetterFilter(), "admin", offset=2, limit=2)
    assert [(o.letter.dlq_offset, o.status) for o in limited.outcomes] == [(2, "already_redriven"), (3, "redriven")]
    assert len(publisher.sent) == 4

    depths = {d.dlq_topic: d for d in await service.depths()}
    assert (depths[DLQ].depth, depths[DLQ].redriven) == (6, 4)
    assert depths["rag.chunks.ready.v1.dlq"].depth == 0


def test_marks_round_trip_as_json() -> None:
    mark = RedriveMark(T0, "admin", SOURCE, "event-1")
    assert RedriveMark.from_json(mark.to_json()) == mark
    assert json.loads(mark.to_json())["target_topic"] == SOURCE

"""In-memory stand-ins for the DLQ service's ports (store, ledger, publisher) and a dead-letter builder."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rag.v1 import documents_pb2
from ragstream_common.dlq_records import RawRecord
from ragstream_common.dlq_service import RecordBatch, RedriveMark
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka import dlq_headers as h

SOURCE = "rag.documents.received.v1"
DLQ = f"{SOURCE}.dlq"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeStore:
    """DLQ topics as lists; `first` offsets model records gone with retention."""

    def __init__(self, records: dict[str, list[RawRecord]], first: Mapping[str, int] | None = None) -> None:
        self.records = records
        self.first = dict(first or {})
        self.reads = 0

    def topics(self) -> tuple[str, ...]:
        return tuple(self.records)

    async def bounds(self, dlq_topic: str) -> tuple[int, int]:
        records = self.records[dlq_topic]
        return self.first.get(dlq_topic, 0), (records[-1].offset + 1 if records else 0)

    async def read_batch(self, dlq_topic: str, start: int, max_records: int) -> RecordBatch:
        self.reads += 1
        first, end = await self.bounds(dlq_topic)
        found = [r for r in self.records[dlq_topic] if r.offset >= max(start, first)][:max_records]
        return RecordBatch(found, found[-1].offset + 1 if found else max(start, first), end)


class FakeLedger:
    def __init__(self) -> None:
        self.entries: dict[str, RedriveMark] = {}

    async def marks(self) -> Mapping[str, RedriveMark]:
        return self.entries

    async def mark(self, key: str, mark: RedriveMark) -> None:
        self.entries[key] = mark


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, key, value, headers))


def dead_letter(
    offset: int,
    *,
    tenant: str = "acme",
    reason: str = "PermanentError",
    failed_at: datetime = T0,
    value: bytes | None = None,
    extra_headers: tuple[tuple[str, bytes], ...] = (),
) -> RawRecord:
    message = documents_pb2.DocumentReceived(tenant_id=tenant, document_id=f"doc-{offset}", version=1)
    encoded, ce_headers = cloudevents.encode(message, source="test", event_id=f"event-{offset}")
    reasons = [
        (h.ORIGINAL_TOPIC, SOURCE.encode()),
        (h.ORIGINAL_PARTITION, b"2"),
        (h.ORIGINAL_OFFSET, str(100 + offset).encode()),
        (h.ERROR_CLASS, reason.encode()),
        (h.ERROR_MESSAGE, b"it broke"),
        (h.CONSUMER_GROUP, b"ragstream-ingest"),
        (h.FAILED_AT, failed_at.isoformat().encode()),
        (h.ATTEMPTS, b"3"),
    ]
    return RawRecord(
        DLQ,
        0,
        offset,
        f"{tenant}/doc-{offset}".encode(),
        encoded if value is None else value,
        (*ce_headers, ("traceparent", b"00-abc-def-01"), *reasons, *extra_headers),
        int(failed_at.timestamp() * 1000),
    )

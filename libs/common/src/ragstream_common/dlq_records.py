"""What a dead letter is, read from a raw DLQ record: typed fields, filters and a bounded payload preview.

Pure functions over `RawRecord` (no Kafka client here): the store adapter reads records, this module makes
sense of them. The event's tenant comes from decoding the payload with the CloudEvents binding; a record that
cannot be decoded (often the very reason it was dead-lettered) has no tenant.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from google.protobuf import json_format
from google.protobuf.message import Message

from ragstream_common.kafka import cloudevents
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.topics import TOPICS_BY_NAME

DLQ_SUFFIX = ".dlq"
# The most characters of payload a preview shows (JSON text, or base64 of the first bytes).
PREVIEW_CHARS = 4096


@dataclass(frozen=True)
class RawRecord:
    """One record of a DLQ topic as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    dlq_offset: int
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    key: str
    event_type: str
    event_id: str
    # None when the payload cannot be decoded or its message carries no tenant.
    tenant_id: str | None
    reason_class: str
    reason_message: str
    consumer_group: str
    attempts: int | None
    # `permanent` or `unclassified` when the consumer recorded it.
    failure_kind: str | None
    failed_at: datetime
    size_bytes: int
    # `<dlq topic>:<offset>` when this record is itself a failed redrive of an earlier dead letter.
    redrive_of: str | None = None

    @property
    def ledger_key(self) -> str:
        return redrive_key(self.dlq_topic, self.dlq_offset)


@dataclass(frozen=True)
class PayloadPreview:
    encoding: Literal["json", "base64", "empty"]
    text: str
    truncated: bool


@dataclass(frozen=True)
class InspectedDeadLetter:
    dead_letter: DeadLetter
    payload: PayloadPreview
    # Every header except the `dlq_*` reasons (those are fields of `dead_letter`), values as text.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a listing or a bulk redrive covers; unset fields match everything."""

    tenant_id: str | None = None
    reason_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.tenant_id is not None and letter.tenant_id != self.tenant_id:
            return False
        if self.reason_class is not None and letter.reason_class != self.reason_class:
            return False
        if self.since is not None and letter.failed_at < _aware(self.since):
            return False
        return self.until is None or letter.failed_at < _aware(self.until)


def redrive_key(dlq_topic: str, offset: int) -> str:
    """The identity of a dead letter: a DLQ topic has one partition, so topic and offset name one record."""
    return f"{dlq_topic}:{offset}"


def dlq_topic_of(topic: str) -> str:
    """`<topic>.dlq` for a source topic; a DLQ topic's name unchanged."""
    return topic if topic.endswith(DLQ_SUFFIX) else f"{topic}{DLQ_SUFFIX}"


def parse_dead_letter(record: RawRecord) -> DeadLetter:
    return _parse(record)[0]


def _parse(record: RawRecord) -> tuple[DeadLetter, Message | None]:
    headers = cloudevents.headers_to_dict(list(record.headers))
    original_topic = headers.get(h.ORIGINAL_TOPIC) or record.topic.removesuffix(DLQ_SUFFIX)
    message = decode_payload(record, original_topic)
    letter = DeadLetter(
        dlq_topic=record.topic,
        dlq_offset=record.offset,
        original_topic=original_topic,
        original_partition=_int_or_none(headers.get(h.ORIGINAL_PARTITION)),
        original_offset=_int_or_none(headers.get(h.ORIGINAL_OFFSET)),
        key=(record.key or b"").decode("utf-8", "replace"),
        event_type=headers.get("ce_type", ""),
        event_id=headers.get("ce_id", ""),
        tenant_id=_tenant_of(message),
        reason_class=headers.get(h.ERROR_CLASS, ""),
        reason_message=headers.get(h.ERROR_MESSAGE, ""),
        consumer_group=headers.get(h.CONSUMER_GROUP, ""),
        attempts=_int_or_none(headers.get(h.ATTEMPTS)),
        failure_kind=headers.get(h.FAILURE_KIND) or None,
        failed_at=_failed_at(headers.get(h.FAILED_AT), record.timestamp_ms),
        size_bytes=len(record.value or b""),
        redrive_of=headers.get(h.REDRIVE_OF) or None,
    )
    return letter, message


def inspect_record(record: RawRecord) -> InspectedDeadLetter:
    letter, message = _parse(record)
    shown = {
        name: (value or b"").decode("utf-8", "replace")[:PREVIEW_CHARS]
        for name, value in record.headers
        if not name.startswith(h.DLQ_PREFIX)
    }
    return InspectedDeadLetter(letter, payload_preview(record.value, message), shown)


def decode_payload(record: RawRecord, original_topic: str) -> Message | None:
    """The event as its consumer would have decoded it, or None when it cannot be."""
    headers = cloudevents.headers_to_dict(list(record.headers))
    spec = TOPICS_BY_NAME.get(original_topic)
    try:
        message, _ = cloudevents.decode(record.value, headers, spec.event_types if spec else ())
    except cloudevents.InvalidEvent:
        return None
    return message


def payload_preview(value: bytes | None, message: Message | None) -> PayloadPreview:
    """The decoded message as JSON when there is one, else base64 of the first bytes; never over PREVIEW_CHARS."""
    if message is not None:
        text = json.dumps(json_format.MessageToDict(message), ensure_ascii=False)
        return PayloadPreview("json", text[:PREVIEW_CHARS], len(text) > PREVIEW_CHARS)
    if not value:
        return PayloadPreview("empty", "", False)
    head = value[: PREVIEW_CHARS // 4 * 3]
    return PayloadPreview("base64", base64.b64encode(head).decode("ascii"), len(head) < len(value))


def redrive_headers(record: RawRecord) -> list[tuple[str, bytes]]:
    """The original headers again (no `dlq_*` reasons, no earlier redrive mark) plus this redrive's mark."""
    kept = [
        (name, value or b"")
        for name, value in record.headers
        if not name.startswith(h.DLQ_PREFIX) and name != h.REDRIVE_OF
    ]
    return [*kept, (h.REDRIVE_OF, redrive_key(record.topic, record.offset).encode())]


def _tenant_of(message: Message | None) -> str | None:
    if message is None or "tenant_id" not in message.DESCRIPTOR.fields_by_name:
        return None
    tenant = getattr(message, "tenant_id", "")
    return tenant if isinstance(tenant, str) and tenant else None


def _failed_at(header: str | None, timestamp_ms: int) -> datetime:
    if header:
        try:
            return _aware(datetime.fromisoformat(header.replace("Z", "+00:00")))
        except ValueError:
            pass  # a foreign producer's header: the broker's timestamp is the next best thing
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None

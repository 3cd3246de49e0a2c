"""Dead-lettering: a record that cannot succeed goes, bytes and headers as received, to `<topic>.dlq`.

The `dlq_*` headers say why: where it came from, the error, its kind, how many attempts it got, which group
gave up and when. Earlier `dlq_*` headers (a redriven record failing again) are replaced.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import ConsumerRecord

from ragstream_common.failures import FailureKind, classify
from ragstream_common.kafka import dlq_headers as h
from ragstream_common.kafka.metrics import DEAD_LETTERED
from ragstream_common.kafka.producer import EventPublisher
from ragstream_common.kafka.retry import Backoff
from ragstream_common.logs import get_logger

log = get_logger(__name__)
# A DLQ send that keeps failing transiently is retried this long, below the default max_poll_interval (300 s),
# then raised: the consumer stops uncommitted and its restart re-reads the record (nothing is lost).
SEND_PATIENCE_S = 240.0
# permanent or unclassified (ragstream_common.failures): whether a redrive can help without a fix.
FAILURE_KIND = f"{h.DLQ_PREFIX}failure_kind"


class DeadLetters:
    """Sends records of one consumer group to their topics' DLQs."""

    def __init__(self, publisher: EventPublisher, group: str) -> None:
        self._publisher = publisher
        self._group = group

    async def send(self, record: ConsumerRecord, exc: BaseException, kind: FailureKind, attempts: int) -> None:
        reason = reason_headers(record, exc, kind=kind, attempts=attempts, group=self._group)
        headers = [kv for kv in (record.headers or ()) if not kv[0].startswith(h.DLQ_PREFIX)] + reason
        await self._send_patiently(f"{record.topic}.dlq", record, headers)
        DEAD_LETTERED.labels(record.topic, self._group).inc()
        log.error(
            "dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            kind=str(kind),
            attempts=attempts,
            error=repr(exc),
        )

    async def _send_patiently(self, topic: str, record: ConsumerRecord, headers: list[tuple[str, bytes]]) -> None:
        backoff, give_up_at = Backoff(base_s=0.2, cap_s=10.0), time.monotonic() + SEND_PATIENCE_S
        while True:
            try:
                await self._publisher.send_raw(topic, record.key, record.value, headers)
                return
            except Exception as exc:
                if classify(exc) is not FailureKind.TRANSIENT or time.monotonic() >= give_up_at:
                    raise
                log.warning("dead-letter send failed, retrying", topic=topic, error=repr(exc))
                await asyncio.sleep(backoff.next_delay())


class RecordPosition(Protocol):
    """Where a record was read: an aiokafka ConsumerRecord, or a faust message (services/metering)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


def reason_headers(
    record: RecordPosition, exc: BaseException, *, kind: FailureKind, attempts: int, group: str
) -> list[tuple[str, bytes]]:
    return [
        (h.ORIGINAL_TOPIC, record.topic.encode()),
        (h.ORIGINAL_PARTITION, str(record.partition).encode()),
        (h.ORIGINAL_OFFSET, str(record.offset).encode()),
        (h.ERROR_CLASS, type(exc).__name__.encode()),
        (h.ERROR_MESSAGE, str(exc)[:2000].encode()),
        (FAILURE_KIND, str(kind).encode()),
        (h.ATTEMPTS, str(attempts).encode()),
        (h.CONSUMER_GROUP, group.encode()),
        (h.FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]

"""At-least-once event consumption with manual commits and a dead-letter topic.

Handlers see `Envelope`s (typed message plus CloudEvents attributes), never aiokafka types. Offsets are
committed as {partition: offset + 1} only after the handler returned, i.e. after its own output was produced
and acknowledged; the commit request overlaps the next batch, and commits are issued in order. Records that
cannot be decoded, or whose handler raises `PermanentError` or keeps failing, go to
`<topic>.dlq` with reason headers, and the partition moves on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter

from ragstream_common.events import BatchHandler, Envelope, PermanentError
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka.producer import EventPublisher
from ragstream_common.kafka.topics import TOPICS_BY_NAME
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger
from ragstream_common.tracing import ending, extract_headers

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.kafka")

CONSUMED = Counter("ragstream_events_consumed_total", "Events handled", ["topic", "group"])
DEAD_LETTERED = Counter("ragstream_events_dead_lettered_total", "Events sent to a DLQ", ["topic", "group"])


@dataclass(frozen=True)
class ConsumerOptions:
    group_id: str
    topics: tuple[str, ...]
    max_batch: int = 64
    # Optional second bound on a batch: the summed weight of its messages (e.g. chunks per ChunksReady).
    max_batch_weight: int = 0
    weigh: Callable[[Any], int] | None = None
    # How long to wait to fill a batch once at least one record is in.
    batch_wait_ms: int = 0
    # The broker answers a fetch as soon as a record arrives, so a long wait costs no latency; a short one
    # only multiplies empty fetches (CPU on the broker and here).
    fetch_max_wait_ms: int = 500
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 30_000
    max_partition_fetch_bytes: int = 16 * 1024 * 1024
    attempts: int = 3
    retry_backoff_s: float = 0.5


class EventConsumer:
    """Consumes `options.topics` into a batch handler until `stop` is set, then commits and leaves."""

    def __init__(
        self,
        kafka: KafkaSettings,
        options: ConsumerOptions,
        handler: BatchHandler,
        dead_letters: EventPublisher,
    ) -> None:
        self.options = options
        self._handler = handler
        self._dead_letters = dead_letters
        self._consumer = AIOKafkaConsumer(
            *options.topics,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            max_poll_interval_ms=options.max_poll_interval_ms,
            session_timeout_ms=options.session_timeout_ms,
            max_partition_fetch_bytes=options.max_partition_fetch_bytes,
            fetch_max_bytes=max(options.max_partition_fetch_bytes, 52_428_800),
            isolation_level="read_committed",
            **client_options(kafka),
        )
        self.processed = 0
        self._records_by_position: dict[tuple[str, int, int], ConsumerRecord] = {}
        self._commit_in_flight: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch, handle, commit; a batch in flight when `stop` is set is finished and committed."""
        try:
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch:
                    await self._process(batch)
        finally:
            await self._settle_commit()

    async def _next_batch(self, stop: asyncio.Event) -> list[tuple[ConsumerRecord, Envelope[Any] | Exception]]:
        """Records decoded as they arrive, until `max_batch` records or `max_batch_weight` (e.g. chunks) is
        reached or `batch_wait_ms` passed since the first one (one record may overshoot the weight)."""
        options = self.options
        batch: list[tuple[ConsumerRecord, Envelope[Any] | Exception]] = []
        weight, deadline = 0, 0.0
        while not stop.is_set() and len(batch) < options.max_batch:
            if batch:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0 or (options.max_batch_weight and weight >= options.max_batch_weight):
                    break
            fetched = await self._consumer.getmany(
                timeout_ms=remaining_ms if batch else 200, max_records=options.max_batch - len(batch)
            )
            for record in (r for records in fetched.values() for r in records):
                decoded = self._decode_or_error(record)
                batch.append((record, decoded))
                weight += options.weigh(decoded.message) if options.weigh and isinstance(decoded, Envelope) else 1
            if not batch:
                return batch
            deadline = deadline or time.monotonic() + options.batch_wait_ms / 1000
        return batch

    def _decode_or_error(self, record: ConsumerRecord) -> Envelope[Any] | Exception:
        try:
            return self._decode(record)
        except cloudevents.InvalidEvent as exc:
            return exc

    async def _process(self, batch: list[tuple[ConsumerRecord, Envelope[Any] | Exception]]) -> None:
        records = [record for record, _ in batch]
        self._records_by_position = {(r.topic, r.partition, r.offset): r for r in records}
        envelopes: list[Envelope[Any]] = []
        for record, decoded in batch:
            if isinstance(decoded, Envelope):
                envelopes.append(decoded)
            else:
                await self._dead_letter(record, decoded)
        if envelopes:
            await self._handle(envelopes)
        # The commit travels while the next batch is fetched and handled; commits stay in order because each
        # one waits for the one before.
        await self._settle_commit()
        self._commit_in_flight = asyncio.ensure_future(self._commit(records))
        self.processed += len(records)

    async def _settle_commit(self) -> None:
        if self._commit_in_flight is not None:
            in_flight, self._commit_in_flight = self._commit_in_flight, None
            await in_flight

    async def _handle(self, envelopes: list[Envelope[Any]]) -> None:
        try:
            await self._traced(envelopes)
            return
        except Exception as exc:
            if len(envelopes) == 1 and isinstance(exc, PermanentError):
                await self._dead_letter_envelope(envelopes[0], exc)
                return
            log.warning("batch failed, retrying one by one", error=repr(exc), size=len(envelopes))
        for envelope in envelopes:
            await self._handle_one(envelope)

    async def _handle_one(self, envelope: Envelope[Any]) -> None:
        for attempt in range(1, self.options.attempts + 1):
            try:
                await self._traced([envelope])
                return
            except PermanentError as exc:
                await self._dead_letter_envelope(envelope, exc)
                return
            except Exception as exc:
                if attempt == self.options.attempts:
                    await self._dead_letter_envelope(envelope, exc)
                    return
                log.warning("handler failed, will retry", error=repr(exc), attempt=attempt)
                await asyncio.sleep(self.options.retry_backoff_s * attempt)

    async def _traced(self, envelopes: list[Envelope[Any]]) -> None:
        spans = [
            tracer.start_span(
                f"{e.topic} process",
                context=e.trace_context,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": e.topic,
                    "messaging.kafka.destination.partition": e.partition,
                    "messaging.kafka.message.offset": e.offset,
                    "messaging.message.id": e.event_id,
                    "messaging.consumer.group.name": self.options.group_id,
                },
            )
            for e in envelopes
        ]
        traced = [
            _with_context(e, trace.set_span_in_context(s, e.trace_context))
            for e, s in zip(envelopes, spans, strict=True)
        ]
        with ending(spans):
            if len(traced) == 1:
                token = otel_context.attach(traced[0].trace_context)
                try:
                    await self._handler(traced)
                finally:
                    otel_context.detach(token)
            else:
                await self._handler(traced)
        for e in envelopes:
            CONSUMED.labels(e.topic, self.options.group_id).inc()

    def _decode(self, record: ConsumerRecord) -> Envelope[Any]:
        headers = cloudevents.headers_to_dict(list(record.headers or ()))
        spec = TOPICS_BY_NAME.get(record.topic)
        message, attributes = cloudevents.decode(record.value, headers, spec.event_types if spec else ())
        return Envelope(
            message=message,
            key=(record.key or b"").decode("utf-8", "replace"),
            event_id=attributes.event_id,
            event_type=attributes.event_type,
            source=attributes.source,
            time=attributes.time,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            trace_context=extract_headers(list(record.headers or ())),
        )

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> None:
        reason = _reason_headers(record.topic, record.partition, record.offset, exc, self.options.group_id)
        headers = [h for h in (record.headers or ()) if not h[0].startswith("dlq_")] + reason
        await self._dead_letters.send_raw(f"{record.topic}.dlq", record.key, record.value, headers)
        DEAD_LETTERED.labels(record.topic, self.options.group_id).inc()
        log.error("dead-lettered", topic=record.topic, offset=record.offset, error=repr(exc))

    async def _dead_letter_envelope(self, envelope: Envelope[Any], exc: BaseException) -> None:
        record = self._records_by_position.get((envelope.topic, envelope.partition, envelope.offset))
        if record is not None:
            await self._dead_letter(record, exc)

    async def _commit(self, records: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: the new owner re-reads them (at-least-once).
            log.warning("commit failed", error=repr(exc))


def _with_context(envelope: Envelope[Any], context: otel_context.Context) -> Envelope[Any]:
    return Envelope(**{**envelope.__dict__, "trace_context": context})


def _reason_headers(topic: str, partition: int, offset: int, exc: BaseException, group: str) -> list[tuple[str, bytes]]:
    return [
        ("dlq_original_topic", topic.encode()),
        ("dlq_original_partition", str(partition).encode()),
        ("dlq_original_offset", str(offset).encode()),
        ("dlq_error_class", type(exc).__name__.encode()),
        ("dlq_error_message", str(exc)[:2000].encode()),
        ("dlq_consumer_group", group.encode()),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
    ]

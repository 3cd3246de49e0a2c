"""Kafka adapters of the DLQ tools: `DeadLetterStore` reads DLQ topics, `KafkaRedriveLedger` remembers redrives.

Both read without a consumer group (assign + seek, up to the high-water mark), so looking at a DLQ never moves
anybody's offsets and two readers never share work. DLQ topics have one partition, so `<topic>:<offset>` names
one dead letter.

Why the redrive ledger is a compacted Kafka topic (`rag.dlq.redrives.v1`, key `<dlq topic>:<offset>`) and not a
Postgres table: the dead letters it describes live in Kafka, so the tools need nothing but KAFKA_* settings (the
command runs where no database credentials are), and a mark is written the way every other Ragstream output is
(acks=all, after the republished record was acknowledged). A crash between the two leaves a dead letter
redriven but unmarked; redriving it again republishes an event the pipeline's version-aware writes ignore,
which is the at-least-once contract everywhere else too. Compaction keeps one mark per dead letter; the topic's
retention (60 days) outlives the DLQ's (30 days), so a mark never disappears before its record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ragstream_common.dlq_records import RawRecord
from ragstream_common.dlq_service import (
    DeadLetterService,
    DeadLetterUnavailable,
    RawPublisher,
    RecordBatch,
    RedriveMark,
)
from ragstream_common.kafka.connection import client_options, stop_consumer
from ragstream_common.kafka.producer import EventPublisher
from ragstream_common.kafka.topics import DLQ_REDRIVES, LARGE_MESSAGE_BYTES, PIPELINE_TOPICS
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

log = get_logger(__name__)
DECLARED_DLQ_TOPICS = tuple(spec.dlq for spec in PIPELINE_TOPICS)
# How long one read may wait for the broker before the DLQ counts as unreachable.
READ_TIMEOUT_S = 15.0


class PartitionReader:
    """Reads partition 0 of a topic between offsets, with one group-less consumer shared under a lock."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "ragstream-dlq") -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=LARGE_MESSAGE_BYTES,
            fetch_max_bytes=max(LARGE_MESSAGE_BYTES, 52_428_800),
            **client_options(kafka),
        )
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await stop_consumer(self._consumer)

    async def bounds(self, topic: str) -> tuple[int, int]:
        async with self._lock, _unavailable_on_error(topic):
            return await self._bounds(TopicPartition(topic, 0))

    async def read_batch(self, topic: str, start: int, max_records: int) -> RecordBatch:
        """Up to `max_records` records from `start` (or the first retained offset), stopping at the high-water
        mark as it was when the read began."""
        partition = TopicPartition(topic, 0)
        async with self._lock, _unavailable_on_error(topic):
            first, end = await self._bounds(partition)
            position = max(start, first)
            if position >= end:
                return RecordBatch([], position, end)
            self._consumer.assign([partition])
            self._consumer.seek(partition, position)
            records: list[RawRecord] = []
            while len(records) < max_records and position < end:
                fetched = await self._consumer.getmany(
                    partition, timeout_ms=200, max_records=max_records - len(records)
                )
                records.extend(_raw(r) for r in fetched.get(partition, []) if r.offset < end)
                position = await self._consumer.position(partition)
        # Records fetched past `end` were dropped: the next read starts at `end` again, not after them.
        return RecordBatch(records, min(position, end), end)

    async def _bounds(self, partition: TopicPartition) -> tuple[int, int]:
        first = (await self._consumer.beginning_offsets([partition]))[partition]
        end = (await self._consumer.end_offsets([partition]))[partition]
        return int(first), int(end)


@asynccontextmanager
async def _unavailable_on_error(topic: str) -> AsyncIterator[None]:
    """Broker errors and reads that stall become DeadLetterUnavailable (the callers' 503)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            yield
    except (KafkaError, TimeoutError) as exc:
        raise DeadLetterUnavailable(f"{topic} could not be read: {exc!r}") from exc


class AcknowledgedPublisher:
    """`EventPublisher.send_raw` (acks=all) whose broker errors become DeadLetterUnavailable."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        try:
            await self._publisher.send_raw(topic, key, value, headers)
        except KafkaError as exc:
            raise DeadLetterUnavailable(f"{topic} did not acknowledge: {exc!r}") from exc


class DeadLetterStore:
    """The DLQ topics this process may read (the declared ones unless told otherwise)."""

    def __init__(self, reader: PartitionReader, topics: tuple[str, ...] = DECLARED_DLQ_TOPICS) -> None:
        self._reader = reader
        self._topics = topics

    def topics(self) -> tuple[str, ...]:
        return self._topics

    async def bounds(self, dlq_topic: str) -> tuple[int, int]:
        return await self._reader.bounds(dlq_topic)

    async def read_batch(self, dlq_topic: str, start: int, max_records: int) -> RecordBatch:
        return await self._reader.read_batch(dlq_topic, start, max_records)


class KafkaRedriveLedger:
    """Marks in a compacted topic, read to its end before every answer (later marks replace earlier ones)."""

    def __init__(self, reader: PartitionReader, publisher: RawPublisher, topic: str = DLQ_REDRIVES.name) -> None:
        self._reader = reader
        self._publisher = publisher
        self._topic = topic
        self._marks: dict[str, RedriveMark] = {}
        self._position = 0

    async def marks(self) -> Mapping[str, RedriveMark]:
        while True:
            batch = await self._reader.read_batch(self._topic, self._position, 1000)
            for record in batch.records:
                self._remember(record)
            self._position = batch.next_offset
            if not batch.records or self._position >= batch.end_offset:
                return self._marks

    async def mark(self, key: str, mark: RedriveMark) -> None:
        await self._publisher.send_raw(self._topic, key.encode(), mark.to_json(), [])
        self._marks[key] = mark

    def _remember(self, record: RawRecord) -> None:
        if record.key is None or record.value is None:
            return
        try:
            self._marks[record.key.decode()] = RedriveMark.from_json(record.value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable redrive mark", offset=record.offset, error=repr(exc))


async def open_dead_letter_service(
    stack: AsyncExitStack,
    kafka: KafkaSettings,
    publisher: EventPublisher | None = None,
    *,
    topics: tuple[str, ...] = DECLARED_DLQ_TOPICS,
    ledger_topic: str = DLQ_REDRIVES.name,
) -> DeadLetterService:
    """A started service over Kafka, closed by `stack`; it opens its own acks=all publisher unless given one."""
    reader = PartitionReader(kafka)
    await reader.start()
    stack.push_async_callback(reader.stop)
    if publisher is None:
        publisher = EventPublisher(kafka, source="ragstream/dlq-redrive", client_id="ragstream-dlq")
        await publisher.start()
        stack.push_async_callback(publisher.stop)
    acknowledged = AcknowledgedPublisher(publisher)
    ledger = KafkaRedriveLedger(reader, acknowledged, ledger_topic)
    return DeadLetterService(DeadLetterStore(reader, topics), ledger, acknowledged)


def _raw(record: ConsumerRecord) -> RawRecord:
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple((name, value or b"") for name, value in record.headers or ()),
        timestamp_ms=record.timestamp,
    )

"""At-least-once event consumption with manual commits, classified failures and a dead-letter topic.

Handlers see `Envelope`s (typed message plus CloudEvents attributes), never aiokafka types. Offsets are
committed as {partition: offset + 1} only after the handler returned, i.e. after its own output was produced
and acknowledged; the commit request overlaps the next batch, and commits are issued in order. With
`commit_interval_ms`, handled offsets are committed at most that often (and when the consumer goes idle, loses
partitions or stops): a commit per record of a one-record batch costs the broker and the client more than the
record itself, and a crash then redelivers at most an interval's records, which handlers rewrite idempotently.

Failures are classified (`ragstream_common.failures`). A transient one (a dependency down) pauses the batch's
partitions and retries the batch with capped, jittered exponential backoff, without limit and without
committing; the member keeps polling the paused partitions, so it stays in its group. A batch that fails
otherwise is retried one event at a time, so that one poison event never holds back the others: a permanent
failure (an undecodable record, `PermanentError`) goes to `<topic>.dlq` at once, an unclassified one after
`attempts` tries. A rebalance that revokes a waiting batch's partitions drops their records unhandled and
uncommitted: their new owner re-reads them from the last committed offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ragstream_common.events import BatchHandler, Envelope
from ragstream_common.failures import FailureKind, classify
from ragstream_common.kafka.connection import client_options, stop_consumer
from ragstream_common.kafka.dead_letters import DeadLetters
from ragstream_common.kafka.dlq_depth import report_dlq_depths
from ragstream_common.kafka.envelopes import decode_or_error, handle_traced
from ragstream_common.kafka.metrics import CONSUMED, DEAD_LETTERED, RECORDS, RETRIES, forget_lag, report_lag
from ragstream_common.kafka.producer import EventPublisher
from ragstream_common.kafka.retry import Backoff, PartitionPause
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

log = get_logger(__name__)

__all__ = ["CONSUMED", "DEAD_LETTERED", "ConsumerOptions", "EventConsumer"]
Position = tuple[str, int, int]
Batch = list[tuple[ConsumerRecord, Envelope[Any] | Exception]]
# How often `ragstream_consumer_lag` is refreshed at most (after a batch or an empty poll).
LAG_REPORT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ConsumerOptions:
    group_id: str
    topics: tuple[str, ...]
    # A regex (matched from the start of each name) subscribing to every matching topic instead of `topics`,
    # e.g. each tenant's intake topics; topics created later join once the consumer's metadata refreshes.
    topic_pattern: str = ""
    # How often the consumer refreshes its metadata: with a pattern, how soon it sees a new matching topic.
    metadata_max_age_ms: int = 300_000
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
    # Unclassified failures: an event gets `attempts` tries, try n waiting n * retry_backoff_s, then the DLQ.
    attempts: int = 3
    retry_backoff_s: float = 0.5
    # Transient failures: retried without limit, retry n waiting uniform(0, min(cap, base * 2**n)).
    transient_backoff_base_s: float = 0.2
    transient_backoff_cap_s: float = 30.0
    # How often `ragstream_dlq_depth` is refreshed for these topics' DLQs; 0 turns it off.
    dlq_depth_interval_s: float = 30.0
    # At shutdown, how long the last commit may wait (e.g. for a group that is re-forming) before the process
    # exits without it: what it covered is redelivered and rewritten idempotently, rather than outliving the
    # supervisor's stop grace and being SIGKILLed.
    final_commit_timeout_s: float = 5.0
    # Handled offsets are committed at most this often (0: after every batch); see the module docstring.
    commit_interval_ms: int = 0


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, consumer: EventConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._consumer.revoked(revoked)
        await self._consumer.commit_handed_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


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
        self._kafka = kafka
        self._handler = handler
        self._dead_letters = DeadLetters(dead_letters, options.group_id)
        self._consumer = AIOKafkaConsumer(
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
            metadata_max_age_ms=options.metadata_max_age_ms,
            **client_options(kafka),
        )
        self._pause = PartitionPause(self._consumer, options.group_id)
        self.processed = 0
        # Revocations of a non-empty assignment (a member that never left its group sees none).
        self.rebalances = 0
        self._revoked: set[TopicPartition] = set()
        self._records_by_position: dict[Position, ConsumerRecord] = {}
        self._done: set[Position] = set()
        self._commit_in_flight: asyncio.Future[None] | None = None
        # Offsets handled but not yet committed (commit_interval_ms), and when the last commit was issued.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._retrying_since: float | None = None
        self._lag_reported_at = 0.0

    async def start(self) -> None:
        await self._consumer.start()
        if self.options.topic_pattern:
            self._consumer.subscribe(pattern=self.options.topic_pattern, listener=_Revocations(self))
        else:
            self._consumer.subscribe(list(self.options.topics), listener=_Revocations(self))

    async def stop(self) -> None:
        await stop_consumer(self._consumer)

    def transient_failure_s(self) -> float:
        """How long the batch in hand has been failing transiently (0 while it is not); readiness reads it."""
        return 0.0 if self._retrying_since is None else time.monotonic() - self._retrying_since

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance listener: records of these partitions in hand are neither handled further nor committed."""
        if partitions:
            self.rebalances += 1
            log.info("partitions revoked", partitions=sorted(f"{p.topic}/{p.partition}" for p in partitions))
        self._revoked |= partitions
        self._pause.forget(partitions)
        forget_lag(self.options.group_id, partitions)

    async def commit_handed_over(self, partitions: set[TopicPartition]) -> None:
        """Rebalance listener: commit what was handled of partitions about to go to another member, so that it
        does not handle them again (the group's generation is still ours while the listener runs)."""
        handed_over = {tp: self._uncommitted.pop(tp) for tp in partitions if tp in self._uncommitted}
        if handed_over:
            await self._settle_commit()  # in order: an older commit landing after this one would undo it
            await self._commit(handed_over)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch, handle, commit; a batch in flight when `stop` is set is finished and committed, unless it is
        waiting out a failure: then only what was already handled is committed."""
        # DLQ depths are reported for named topics only (a pattern's topics come and go).
        interval, topics = self.options.dlq_depth_interval_s, self.options.topics
        depths = (
            asyncio.ensure_future(report_dlq_depths(self._kafka, topics, interval)) if interval and topics else None
        )
        try:
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch:
                    await self._process(batch, stop)
                elif self._uncommitted:
                    await self._commit_uncommitted()  # idle: nothing is gained by waiting longer
                await self._report_lag()
        finally:
            if depths is not None:
                depths.cancel()
                with suppress(asyncio.CancelledError):
                    await depths
            await self._settle_final_commit()

    async def _next_batch(self, stop: asyncio.Event) -> Batch:
        """Records decoded as they arrive, until `max_batch` records or `max_batch_weight` (e.g. chunks) is
        reached or `batch_wait_ms` passed since the first one (one record may overshoot the weight)."""
        options = self.options
        self._revoked = set()
        batch: Batch = []
        weight, deadline = 0, 0.0
        while not stop.is_set() and len(batch) < options.max_batch:
            if batch:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0 or (options.max_batch_weight and weight >= options.max_batch_weight):
                    break
            fetched = await self._consumer.getmany(
                timeout_ms=remaining_ms if batch else 200, max_records=options.max_batch - len(batch)
            )
            for tp, records in fetched.items():
                RECORDS.labels(options.group_id, tp.topic).inc(len(records))
            for record in (r for records in fetched.values() for r in records):
                decoded = decode_or_error(record)
                batch.append((record, decoded))
                weight += options.weigh(decoded.message) if options.weigh and isinstance(decoded, Envelope) else 1
            if not batch:
                return batch
            deadline = deadline or time.monotonic() + options.batch_wait_ms / 1000
        return batch

    async def _process(self, batch: Batch, stop: asyncio.Event) -> None:
        records = [record for record, _ in batch]
        self._records_by_position = {(r.topic, r.partition, r.offset): r for r in records}
        self._done = set()
        envelopes: list[Envelope[Any]] = []
        for record, decoded in batch:
            if isinstance(decoded, Envelope):
                envelopes.append(decoded)
            else:
                await self._dead_letter(record, decoded, FailureKind.PERMANENT, attempts=0)
        try:
            if envelopes:
                await self._handle(envelopes, stop)
        finally:
            self._pause.resume()
            self._retrying_since = None
        self._uncommitted.update(self._committable(records))
        if time.monotonic() - self._committed_at >= self.options.commit_interval_ms / 1000:
            await self._commit_uncommitted()
        self.processed += len(self._done)

    async def _commit_uncommitted(self) -> None:
        # The commit travels while the next batch is fetched and handled; commits stay in order because each
        # one waits for the one before.
        await self._settle_commit()
        offsets, self._uncommitted = self._uncommitted, {}
        self._committed_at = time.monotonic()
        self._commit_in_flight = asyncio.ensure_future(self._commit(offsets))

    async def _report_lag(self) -> None:
        """Lag per assigned partition, at most every LAG_REPORT_INTERVAL_S once a fetch made it known (a batch
        waiting out failures reports again once it is done)."""
        now = time.monotonic()
        if now - self._lag_reported_at >= LAG_REPORT_INTERVAL_S and await report_lag(
            self._consumer, self.options.group_id
        ):
            self._lag_reported_at = now

    async def _settle_final_commit(self) -> None:
        try:
            async with asyncio.timeout(self.options.final_commit_timeout_s):
                if self._uncommitted:
                    await self._commit_uncommitted()
                await self._settle_commit()
        except TimeoutError:
            log.warning("last commit abandoned at shutdown; its records will be redelivered")

    async def _settle_commit(self) -> None:
        if self._commit_in_flight is not None:
            in_flight, self._commit_in_flight = self._commit_in_flight, None
            await in_flight

    async def _handle(self, envelopes: list[Envelope[Any]], stop: asyncio.Event) -> None:
        """The whole batch again while it fails transiently; one event at a time once it fails otherwise."""
        backoff = Backoff(self.options.transient_backoff_base_s, self.options.transient_backoff_cap_s)
        failure: Exception | None = None
        while envelopes := self._owned(envelopes):
            failure = await self._attempt(envelopes)
            if failure is None:
                return
            if len(envelopes) == 1 or classify(failure) is not FailureKind.TRANSIENT:
                break
            if not await self._wait_to_retry(envelopes, failure, FailureKind.TRANSIENT, backoff.next_delay(), stop):
                return
        if len(envelopes) > 1:
            log.warning("batch failed, retrying one by one", error=repr(failure), size=len(envelopes))
            failure = None
        for envelope in envelopes:
            if not await self._handle_one(envelope, stop, failure):
                return

    async def _handle_one(self, envelope: Envelope[Any], stop: asyncio.Event, failure: Exception | None) -> bool:
        """Until `envelope` is handled, dead-lettered or revoked (True) or `stop` ends a wait (False);
        `failure` is its first attempt's, when that attempt was already made."""
        backoff = Backoff(self.options.transient_backoff_base_s, self.options.transient_backoff_cap_s)
        attempts = unclassified = 0
        while self._owned([envelope]):
            if failure is None:
                failure = await self._attempt([envelope])
            if failure is None:
                return True
            attempts += 1
            kind = classify(failure)
            unclassified += kind is FailureKind.UNCLASSIFIED
            if kind is FailureKind.PERMANENT or unclassified >= self.options.attempts:
                record = self._records_by_position[(envelope.topic, envelope.partition, envelope.offset)]
                await self._dead_letter(record, failure, kind, attempts)
                return True
            delay = (
                backoff.next_delay() if kind is FailureKind.TRANSIENT else self.options.retry_backoff_s * unclassified
            )
            if not await self._wait_to_retry([envelope], failure, kind, delay, stop):
                return False
            failure = None
        return True

    async def _attempt(self, envelopes: list[Envelope[Any]]) -> Exception | None:
        try:
            await handle_traced(self._handler, envelopes, self.options.group_id)
        except Exception as exc:
            return exc
        self._done |= {(e.topic, e.partition, e.offset) for e in envelopes}
        self._retrying_since = None
        return None

    async def _wait_to_retry(
        self, envelopes: list[Envelope[Any]], failure: Exception, kind: FailureKind, delay_s: float, stop: asyncio.Event
    ) -> bool:
        """Pause the envelopes' partitions and wait `delay_s`; False when `stop` ended the wait."""
        if kind is FailureKind.TRANSIENT and self._retrying_since is None:
            self._retrying_since = time.monotonic()
        for envelope in envelopes:
            RETRIES.labels(envelope.topic, self.options.group_id, str(kind)).inc()
        log.warning(
            "handler failed, will retry", kind=str(kind), error=repr(failure), size=len(envelopes), delay_s=delay_s
        )
        self._pause.pause({TopicPartition(e.topic, e.partition) for e in envelopes})
        return await self._pause.sleep(delay_s, stop)

    def _owned(self, envelopes: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [e for e in envelopes if TopicPartition(e.topic, e.partition) not in self._revoked]

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException, kind: FailureKind, attempts: int) -> None:
        await self._dead_letters.send(record, exc, kind, attempts)
        self._done.add((record.topic, record.partition, record.offset))

    def _committable(self, records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
        """Per partition still owned, the offset past the run of records, from the batch's first, that were
        handled or dead-lettered (all of them, unless `stop` ended a wait)."""
        offsets: dict[TopicPartition, int] = {}
        held_back: set[TopicPartition] = set(self._revoked)
        for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            tp = TopicPartition(record.topic, record.partition)
            if tp in held_back:
                continue
            if (record.topic, record.partition, record.offset) in self._done:
                offsets[tp] = record.offset + 1
            else:
                held_back.add(tp)
        return offsets

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # A partition a rebalance took is the new owner's to re-read; committing it would fail anyway.
        assigned = self._consumer.assignment()
        if lost := [tp for tp in offsets if tp not in assigned]:
            log.warning("not committing revoked partitions", partitions=[f"{tp.topic}/{tp.partition}" for tp in lost])
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except KafkaError as exc:
            # A rebalance took the partitions meanwhile: the new owner re-reads them (at-least-once).
            log.warning("commit failed", error=repr(exc))

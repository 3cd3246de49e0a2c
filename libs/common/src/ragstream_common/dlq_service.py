"""Listing, inspecting and redriving dead letters over three ports: where DLQ records are read, where redrives
are remembered, and where records are republished. The admin HTTP API and the `python -m ragstream_common.dlq`
command both drive this service; `dlq_store` has the Kafka adapters.

Idempotency: every redrive of one dead letter (`<dlq topic>:<offset>`) is marked in the redrive ledger after its
republished record was acknowledged; a dead letter that has a mark is never republished again. Within one
process the check, the publish and the mark run under one lock. Two processes redriving the same dead letter in
the same instant could both publish; that costs nothing but work, because every pipeline write is idempotent
and version-aware (a document version is indexed once however often its event arrives).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from ragstream_common.dlq_records import (
    DLQ_SUFFIX,
    DeadLetter,
    DeadLetterFilter,
    InspectedDeadLetter,
    RawRecord,
    dlq_topic_of,
    inspect_record,
    parse_dead_letter,
    redrive_headers,
)

SCAN_BATCH = 500


class UnknownDeadLetterTopic(LookupError):
    """The topic is not one of the DLQ topics this service reads."""


class DeadLetterNotFound(LookupError):
    """No record at that offset (never written, or gone with the topic's retention)."""


class DeadLetterUnavailable(ConnectionError):
    """The brokers holding the DLQ (or the redrive ledger) did not answer; worth retrying."""


@dataclass(frozen=True)
class RecordBatch:
    """Records of one DLQ topic from some offset on, and where the next read starts."""

    records: list[RawRecord]
    next_offset: int
    # The high-water mark when the batch was read: nothing at or after it existed yet.
    end_offset: int


@dataclass(frozen=True)
class TopicDepth:
    dlq_topic: str
    # Records retained: end minus the first retained offset.
    depth: int
    first_offset: int
    end_offset: int
    # Retained records that have been redriven already.
    redriven: int


@dataclass(frozen=True)
class RedriveMark:
    """The ledger's memory of one redrive."""

    redriven_at: datetime
    actor: str
    target_topic: str
    event_id: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "redriven_at": self.redriven_at.isoformat(),
                "actor": self.actor,
                "target_topic": self.target_topic,
                "event_id": self.event_id,
            }
        ).encode()

    @classmethod
    def from_json(cls, value: bytes) -> RedriveMark:
        data = json.loads(value)
        return cls(datetime.fromisoformat(data["redriven_at"]), data["actor"], data["target_topic"], data["event_id"])


@dataclass(frozen=True)
class ListedDeadLetter:
    letter: DeadLetter
    redriven: RedriveMark | None


@dataclass(frozen=True)
class DeadLetterPage:
    items: list[ListedDeadLetter]
    # Pass as `offset` for the next page; None when the topic was read to its end.
    next_offset: int | None


@dataclass(frozen=True)
class RedriveOutcome:
    letter: DeadLetter
    status: Literal["redriven", "already_redriven"]
    mark: RedriveMark


@dataclass(frozen=True)
class BulkRedrive:
    outcomes: list[RedriveOutcome] = field(default_factory=list)

    @property
    def redriven(self) -> int:
        return sum(o.status == "redriven" for o in self.outcomes)

    @property
    def already_redriven(self) -> int:
        return sum(o.status == "already_redriven" for o in self.outcomes)


OutcomeCallback = Callable[[RedriveOutcome], Awaitable[None]]


class DeadLetterSource(Protocol):
    def topics(self) -> tuple[str, ...]: ...

    async def bounds(self, dlq_topic: str) -> tuple[int, int]:
        """(first retained offset, high-water mark)."""
        ...

    async def read_batch(self, dlq_topic: str, start: int, max_records: int) -> RecordBatch: ...


class RedriveLedger(Protocol):
    async def marks(self) -> Mapping[str, RedriveMark]:
        """Every mark, including the ones other processes wrote until now."""
        ...

    async def mark(self, key: str, mark: RedriveMark) -> None: ...


class RawPublisher(Protocol):
    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None: ...


class DeadLetterService:
    def __init__(self, source: DeadLetterSource, ledger: RedriveLedger, publisher: RawPublisher) -> None:
        self._source = source
        self._ledger = ledger
        self._publisher = publisher
        self._redriving = asyncio.Lock()

    def resolve_topic(self, topic: str) -> str:
        """The DLQ topic for a DLQ or source topic name; UnknownDeadLetterTopic for anything else."""
        dlq_topic = dlq_topic_of(topic)
        if dlq_topic not in self._source.topics():
            raise UnknownDeadLetterTopic(f"{topic!r} is not a dead-letter topic (or the source of one)")
        return dlq_topic

    async def depths(self) -> list[TopicDepth]:
        marks = await self._ledger.marks()
        depths = []
        for dlq_topic in self._source.topics():
            first, end = await self._source.bounds(dlq_topic)
            redriven = sum(1 for key in marks if _offset_in(key, dlq_topic, first, end))
            depths.append(TopicDepth(dlq_topic, end - first, first, end, redriven))
        return depths

    async def list_page(
        self, topic: str, where: DeadLetterFilter, *, offset: int = 0, limit: int = 50
    ) -> DeadLetterPage:
        """Dead letters matching `where`, oldest first, from `offset` on; at most `limit` of them."""
        dlq_topic = self.resolve_topic(topic)
        marks = await self._ledger.marks()
        items: list[ListedDeadLetter] = []
        position = offset
        while True:
            batch = await self._source.read_batch(dlq_topic, position, SCAN_BATCH)
            for record in batch.records:
                letter = parse_dead_letter(record)
                if where.matches(letter):
                    if len(items) == limit:
                        return DeadLetterPage(items, record.offset)
                    items.append(ListedDeadLetter(letter, marks.get(letter.ledger_key)))
            position = batch.next_offset
            if not batch.records or position >= batch.end_offset:
                return DeadLetterPage(items, None)

    async def inspect(self, topic: str, offset: int) -> tuple[InspectedDeadLetter, RedriveMark | None]:
        record = await self._record(self.resolve_topic(topic), offset)
        inspected = inspect_record(record)
        return inspected, (await self._ledger.marks()).get(inspected.dead_letter.ledger_key)

    async def redrive(self, topic: str, offset: int, actor: str) -> RedriveOutcome:
        """Republish one dead letter to its source topic, unless it was redriven before."""
        record = await self._record(self.resolve_topic(topic), offset)
        async with self._redriving:
            return await self._redrive_once(record, await self._ledger.marks(), actor)

    async def redrive_matching(
        self,
        topic: str,
        where: DeadLetterFilter,
        actor: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        on_outcome: OutcomeCallback | None = None,
    ) -> BulkRedrive:
        """Redrive every dead letter `list_page` would show (from `offset`, at most `limit` of them).

        `on_outcome` hears of each one as it happens, so what was done is known (audited) even when a later
        publish fails and the call raises."""
        dlq_topic = self.resolve_topic(topic)
        result = BulkRedrive()
        position = offset
        async with self._redriving:
            marks = await self._ledger.marks()
            while limit is None or len(result.outcomes) < limit:
                batch = await self._source.read_batch(dlq_topic, position, SCAN_BATCH)
                for record in batch.records:
                    if limit is not None and len(result.outcomes) == limit:
                        break
                    if where.matches(parse_dead_letter(record)):
                        outcome = await self._redrive_once(record, marks, actor)
                        result.outcomes.append(outcome)
                        if on_outcome is not None:
                            await on_outcome(outcome)
                position = batch.next_offset
                if not batch.records or position >= batch.end_offset:
                    break
        return result

    async def _record(self, dlq_topic: str, offset: int) -> RawRecord:
        batch = await self._source.read_batch(dlq_topic, offset, 1)
        if not batch.records or batch.records[0].offset != offset:
            raise DeadLetterNotFound(f"no dead letter at {dlq_topic}:{offset}")
        return batch.records[0]

    async def _redrive_once(self, record: RawRecord, marks: Mapping[str, RedriveMark], actor: str) -> RedriveOutcome:
        letter = parse_dead_letter(record)
        earlier = marks.get(letter.ledger_key)
        if earlier is not None:
            return RedriveOutcome(letter, "already_redriven", earlier)
        # The DLQ's own name says where its records came from; a header could name any topic.
        target = record.topic.removesuffix(DLQ_SUFFIX)
        await self._publisher.send_raw(target, record.key, record.value, redrive_headers(record))
        mark = RedriveMark(datetime.now(UTC), actor, target, letter.event_id)
        await self._ledger.mark(letter.ledger_key, mark)
        return RedriveOutcome(letter, "redriven", mark)


def _offset_in(key: str, dlq_topic: str, first: int, end: int) -> bool:
    topic, _, offset = key.rpartition(":")
    return topic == dlq_topic and offset.isdigit() and first <= int(offset) < end

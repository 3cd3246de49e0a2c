"""Metering's pure window logic and its faust agent under `agent.test_context()`: N facts give exact counts, a
usage id seen twice counts once, facts split at the minute, and the flush writes absolute totals only when they
changed (again after a restart, when nothing is known to be written); records counted in batches write each
table part once per batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from rag.v1 import usage_pb2
from ragstream_common.kafka import cloudevents
from ragstream_metering import stream
from ragstream_metering.config import MeteringSettings
from ragstream_metering.stream import UsageMeter, build_app
from ragstream_metering.windows import (
    SHARDS,
    known_quantities,
    shard_key,
    tenant_of,
    totals,
    window_start,
    with_usage,
)

pytestmark = pytest.mark.unit


@dataclass
class DeadLetterRecorder:
    letters: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    async def append_async(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.letters.append((key, value, headers))


DEAD = DeadLetterRecorder()
MINUTE = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


class RecordingWriter:
    def __init__(self) -> None:
        self.writes: list[tuple[str, datetime, dict[str, int]]] = []

    async def write_window(self, tenant_id: str, window_start: datetime, totals: Mapping[str, int]) -> None:
        self.writes.append((tenant_id, window_start, dict(totals)))


def usage_record(
    usage_id: str, at_s: float, tenant: str = "acme", **quantities: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    occurred = Timestamp()
    occurred.FromMicroseconds(int(at_s * 1e6))
    fact = usage_pb2.UsageRecorded(
        tenant_id=tenant, usage_id=usage_id, quantities=quantities, occurred_at=occurred, source="test"
    )
    return cloudevents.encode(fact, source="ragstream/test")


@pytest.fixture
async def meter(tmp_path: Path) -> AsyncIterator[tuple[UsageMeter, RecordingWriter]]:
    writer = RecordingWriter()
    meter = UsageMeter(
        build_app(MeteringSettings(group_id="metering-unit", data_dir=tmp_path / "faust")),
        writer,
        window_expires_s=7200,
        dead_letters=DEAD.append_async,
        batch_window_s=0.01,  # each put waits for its batch
    )
    yield meter, writer


async def put(meter: UsageMeter, agent: object, usage_id: str, at_s: float, **quantities: int) -> None:
    value, headers = usage_record(usage_id, at_s, **quantities)
    await agent.put(value, key=b"acme", headers=headers)  # type: ignore[attr-defined]


def test_a_usage_id_already_in_the_window_adds_nothing() -> None:
    window = with_usage({}, "q1:question", {"questions": 1})
    assert window is not None
    assert with_usage(window, "q1:question", {"questions": 1}) is None
    window = with_usage(window, "d1:document", {"documents_ingested": 1, "bytes_ingested": 300})
    assert window is not None
    assert totals(window) == {"questions": 1, "documents_ingested": 1, "bytes_ingested": 300}


def test_windows_start_on_the_minute_and_unknown_or_empty_quantities_are_dropped() -> None:
    assert window_start(MINUTE + 59.9) == MINUTE
    assert window_start(MINUTE + 60) == MINUTE + 60
    assert known_quantities({"questions": 1, "typo": 5, "tokens_in": 0}) == {"questions": 1}


def test_a_usage_id_always_lands_in_the_same_part_of_its_tenant() -> None:
    parts = {shard_key("a|b", f"q{i}:question") for i in range(200)}
    assert len(parts) == SHARDS and {tenant_of(part) for part in parts} == {"a|b"}
    assert shard_key("acme", "q1:question") == shard_key("acme", "q1:question")


async def test_n_facts_are_counted_exactly_and_duplicates_once(meter: tuple[UsageMeter, RecordingWriter]) -> None:
    usage, writer = meter
    async with usage.agent.test_context() as agent:
        for i in range(70):  # spread over every part of the window
            await put(usage, agent, f"q{i}:question", MINUTE + i % 60, questions=1)
        for i in range(3):  # redeliveries of facts already counted
            await put(usage, agent, f"q{i}:question", MINUTE + i, questions=1)
        await put(usage, agent, "d1:document", MINUTE + 5, documents_ingested=1, bytes_ingested=1234)
        assert list(agent.results.values()).count(False) == 3
        assert await usage.flush() == 1
    when = datetime.fromtimestamp(MINUTE, tz=UTC)
    assert writer.writes == [("acme", when, {"questions": 70, "documents_ingested": 1, "bytes_ingested": 1234})]


async def test_facts_split_at_the_minute_into_two_windows(meter: tuple[UsageMeter, RecordingWriter]) -> None:
    usage, writer = meter
    async with usage.agent.test_context() as agent:
        await put(usage, agent, "q1:question", MINUTE + 59.5, questions=1)
        await put(usage, agent, "q2:question", MINUTE + 60.0, questions=1)
        await put(usage, agent, "q3:question", MINUTE + 61.0, questions=1, tokens_in=40, tokens_out=12)
        await usage.flush()
    by_start = {start.timestamp(): counts for _, start, counts in writer.writes}
    assert by_start == {MINUTE: {"questions": 1}, MINUTE + 60: {"questions": 2, "tokens_in": 40, "tokens_out": 12}}


def metered(name: str, metric: str) -> float:
    return REGISTRY.get_sample_value(name, {"metric": metric}) or 0.0


async def test_quantities_are_exported_by_amount_and_facts_by_count(meter: tuple[UsageMeter, RecordingWriter]) -> None:
    usage, _ = meter
    before = {m: metered("ragstream_metering_quantity_total", m) for m in ("tokens_in", "tokens_out", "questions")}
    facts_before = metered("ragstream_metering_events_total", "tokens_in")
    async with usage.agent.test_context() as agent:
        await put(usage, agent, "q1:answer", MINUTE, questions=1, tokens_in=40, tokens_out=12)
        await put(usage, agent, "q2:answer", MINUTE, questions=1, tokens_in=1000)
        await put(usage, agent, "q2:answer", MINUTE, questions=1, tokens_in=1000)  # a redelivery: nothing
    quantities = {m: metered("ragstream_metering_quantity_total", m) - before[m] for m in before}
    assert quantities == {"tokens_in": 1040, "tokens_out": 12, "questions": 2}
    assert metered("ragstream_metering_events_total", "tokens_in") - facts_before == 2


async def test_flush_writes_only_changed_windows_and_everything_after_a_restart(
    meter: tuple[UsageMeter, RecordingWriter],
) -> None:
    usage, writer = meter
    async with usage.agent.test_context() as agent:
        await put(usage, agent, "q1:question", MINUTE, questions=1)
        assert await usage.flush() == 1
        assert await usage.flush() == 0  # nothing changed
        await put(usage, agent, "q1:question", MINUTE, questions=1)  # a replay
        assert await usage.flush() == 0
        await put(usage, agent, "q2:question", MINUTE + 1, questions=1)
        assert await usage.flush() == 1
        # A restarted worker knows of no write: the windows it recovers are all written again (idempotent).
        usage._flushed.clear()
        assert await usage.flush() == 1
    assert [counts for _, _, counts in writer.writes] == [{"questions": 1}, {"questions": 2}, {"questions": 2}]


async def test_records_that_are_not_usage_facts_are_dead_lettered(meter: tuple[UsageMeter, RecordingWriter]) -> None:
    usage, writer = meter
    DEAD.letters.clear()
    async with usage.agent.test_context() as agent:
        await agent.put(b"not protobuf", key=b"acme", headers=[("ce_type", b"rag.v1.UsageRecorded")])
        value, headers = usage_record("", MINUTE, questions=1)  # no usage id: it could never be deduplicated
        await agent.put(value, key=b"acme", headers=headers)
        assert list(agent.results.values()) == [False, False]
        assert await usage.flush() == 0
    assert writer.writes == []
    assert [key for key, _, _ in DEAD.letters] == [b"acme", b"acme"]
    reasons = [dict(headers) for _, _, headers in DEAD.letters]
    assert all(r["dlq_error_class"] == b"InvalidUsageRecord" and r["dlq_failure_kind"] == b"permanent" for r in reasons)
    assert b"usage_id" in reasons[1]["dlq_error_message"]


async def test_flush_sums_again_only_the_parts_that_gained_facts(
    meter: tuple[UsageMeter, RecordingWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    usage, writer = meter
    summed_parts: list[int] = []
    original = stream.totals
    monkeypatch.setattr(stream, "totals", lambda window: summed_parts.append(len(window)) or original(window))
    async with usage.agent.test_context() as agent:
        for i in range(40):
            await put(usage, agent, f"q{i}:question", MINUTE + i, questions=1)
        assert await usage.flush() == 1
        parts = len(summed_parts)
        assert await usage.flush() == 0
        assert len(summed_parts) == parts, "unchanged parts were summed again"
        same_part = next(f"x{i}" for i in range(1000) if shard_key("acme", f"x{i}") == shard_key("acme", "q0:question"))
        await put(usage, agent, same_part, MINUTE + 2, questions=1, tokens_in=7)
        assert await usage.flush() == 1
        assert len(summed_parts) == parts + 1, "only the part that gained a fact is summed again"
    assert writer.writes[-1][2] == {"questions": 41, "tokens_in": 7}


async def test_a_batch_writes_each_part_it_changed_once_to_its_records_partition(
    meter: tuple[UsageMeter, RecordingWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust sends a key's whole value to the changelog at every write: a batch sets each part it changed once,
    on the changelog partition of the record that changed it (the partition this worker recovers)."""
    usage, writer = meter
    sent: list[tuple[int | None, str]] = []
    table = usage.windows.table
    original = table.send_changelog
    monkeypatch.setattr(
        table, "send_changelog", lambda p, k, v, *a, **kw: sent.append((p, k[0])) or original(p, k, v, *a, **kw)
    )
    same_part = [f"x{i}" for i in range(2000) if shard_key("acme", f"x{i}") == shard_key("acme", "x0")][:30]
    async with usage.agent.test_context() as agent:
        for usage_id in same_part:
            value, headers = usage_record(usage_id, MINUTE + 1, questions=1)
            await agent.put(value, key=b"acme", partition=4, headers=headers, wait=False)
        while len(agent.results) < len(same_part):
            await asyncio.sleep(0.01)
        assert await usage.flush() == 1
    assert writer.writes[-1][2] == {"questions": 30}
    assert {partition for partition, _ in sent} == {4}
    assert len(sent) < len(same_part) / 3, f"{len(sent)} changelog writes for {len(same_part)} facts of one part"

"""The audit hash chain (audit_chain.py), the group commit writer (audit_writer.py) and the audit trail's rules
(audit_trail.py), without a database: the chain's content is fixed here, Postgres agreeing with it is
tests/integration/test_gateway_audit.py."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from ragstream_gateway.audit_chain import (
    GENESIS_HASH,
    ChainHead,
    ChainRow,
    ChainVerifier,
    canonical_bytes,
    row_hash,
    verify_chain,
)
from ragstream_gateway.audit_export import SecurityEventRelay
from ragstream_gateway.audit_trail import (
    AuditTrail,
    mark_recorded,
    note_question,
    note_subject,
    outcome_of,
    recorded_call,
)
from ragstream_gateway.audit_writer import AuditWriteFailed, GroupCommitAuditLog
from ragstream_gateway.ports import AuditEntry, AuditRecord

pytestmark = pytest.mark.unit
AT = datetime(2026, 11, 30, 9, 15, 0, 120, tzinfo=UTC)


def make_chain(tenant_id: str = "acme", count: int = 5) -> list[ChainRow]:
    rows: list[ChainRow] = []
    previous = GENESIS_HASH
    for seq in range(1, count + 1):
        details = f'{{"n": {seq}}}'
        row = ChainRow(
            seq * 10, tenant_id, seq, AT, "key:k1", "document.create", f"d{seq}", "10.0.0.1", "success", "ab" * 16,
            details, previous, "",
        )  # fmt: skip
        row = dataclasses.replace(row, row_hash=row_hash(row))
        rows.append(row)
        previous = row.row_hash
    return rows


def test_the_canonical_encoding_is_fixed_and_unambiguous() -> None:
    row = make_chain(count=1)[0]
    assert canonical_bytes(row) == (
        b"ragstream.audit.v1\n4:acme\n1:1\n27:2026-11-30T09:15:00.000120Z\n6:key:k1\n15:document.create\n2:d1\n"
        b'8:10.0.0.1\n7:success\n32:abababababababababababababababab\n8:{"n": 1}\n64:' + b"0" * 64
    )
    # A field boundary moved is another encoding: "a" + "bc" never hashes like "ab" + "c".
    moved = dataclasses.replace(row, actor="key:k", action="1document.create")
    assert row_hash(moved) != row.row_hash
    # Lengths count UTF-8 bytes.
    assert b"2:\xc3\xa9\n" in canonical_bytes(dataclasses.replace(row, resource="é"))


def test_a_whole_chain_verifies() -> None:
    rows = make_chain()
    verifier = ChainVerifier()
    verifier.feed(rows)
    assert verifier.finish(ChainHead(5, rows[-1].row_hash)) == verifier.finish(ChainHead(5, rows[-1].row_hash))
    assert verifier.finish(ChainHead(5, rows[-1].row_hash)).valid


@pytest.mark.parametrize(
    ("change", "bad_seq", "problem"),
    [
        (lambda rows: rows.__setitem__(2, dataclasses.replace(rows[2], actor="admin")), 3, "changed"),
        (lambda rows: rows.pop(2), 4, "missing"),
        # Rewritten with a fresh hash of its own: the next row's link breaks.
        (lambda rows: rows.__setitem__(2, _rehashed(dataclasses.replace(rows[2], outcome="denied"))), 4, "prev_hash"),
    ],
)
def test_a_changed_removed_or_rehashed_row_is_named(change, bad_seq: int, problem: str) -> None:  # type: ignore[no-untyped-def]
    rows = make_chain()
    head = ChainHead(5, rows[-1].row_hash)
    change(rows)
    verifier = ChainVerifier()
    verifier.feed(rows)
    result = verifier.finish(head)
    assert (result.valid, result.first_bad_seq, result.first_bad_id) == (False, bad_seq, bad_seq * 10)
    assert problem in (result.problem or "")


def _rehashed(row: ChainRow) -> ChainRow:
    return dataclasses.replace(row, row_hash=row_hash(row))


def test_a_removed_tail_or_replaced_last_row_is_detected_by_the_head() -> None:
    rows = make_chain()
    verifier = ChainVerifier()
    verifier.feed(rows[:3])
    assert "tail" in (verifier.finish(ChainHead(5, rows[-1].row_hash)).problem or "")
    verifier = ChainVerifier()
    verifier.feed(rows)
    assert "replaced" in (verifier.finish(ChainHead(5, "f" * 64)).problem or "")
    assert ChainVerifier().finish(None).valid


class MemoryChain:
    def __init__(self, rows: list[ChainRow], head: ChainHead | None) -> None:
        self.rows, self.head, self.reads = rows, head, 0

    async def chain_head(self, tenant_id: str) -> ChainHead | None:
        return self.head

    async def chain_rows(self, tenant_id: str, *, after_seq: int, limit: int) -> list[ChainRow]:
        self.reads += 1
        return [row for row in self.rows if row.seq > after_seq][:limit]


async def test_verification_pages_and_ignores_rows_appended_after_the_head() -> None:
    rows = make_chain(count=7)
    source = MemoryChain(rows, ChainHead(5, rows[4].row_hash))
    result = await verify_chain(source, "acme", page_rows=2)
    assert (result.valid, result.entries) == (True, 5)
    assert source.reads == 3


class Appender:
    """An in-memory audit store: each `record_many` is one transaction that commits all or nothing."""

    def __init__(self, refuse: str = "") -> None:
        self.batches: list[list[AuditEntry]] = []
        self.refuse = refuse

    async def record_many(self, entries: Sequence[AuditEntry]) -> None:
        await asyncio.sleep(0.01)
        if any(entry.action == self.refuse for entry in entries):
            raise ValueError("refused")
        self.batches.append(list(entries))

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]:
        return []


async def test_entries_arriving_together_share_a_commit_per_tenant() -> None:
    store = Appender()
    writer = GroupCommitAuditLog(store)
    entries = [AuditEntry("acme" if n % 2 else "beta", "a", "x", str(n)) for n in range(40)]
    await asyncio.gather(*(writer.record(entry) for entry in entries))
    await writer.aclose()
    assert sorted(e.resource for batch in store.batches for e in batch) == sorted(e.resource for e in entries)
    assert len(store.batches) < 10
    assert all(len({e.tenant_id for e in batch}) == 1 for batch in store.batches)


async def test_a_commit_window_gathers_entries_that_come_one_by_one_and_closing_cuts_it_short() -> None:
    store = Appender()
    writer = GroupCommitAuditLog(store, commit_window_s=0.5)

    async def spaced(n: int) -> None:
        await asyncio.sleep(n * 0.02)
        await writer.record(AuditEntry("acme", "a", "x", str(n)))

    started = time.monotonic()
    await asyncio.gather(*(spaced(n) for n in range(5)))
    assert [len(batch) for batch in store.batches] == [5]  # one transaction, not five
    assert time.monotonic() - started < 2
    pending = asyncio.ensure_future(writer.record(AuditEntry("acme", "a", "x", "last")))
    await asyncio.sleep(0.05)
    closing = time.monotonic()
    await writer.aclose()
    await pending
    assert time.monotonic() - closing < 0.4 and store.batches[-1][0].resource == "last"


async def test_a_bad_entry_fails_alone_and_its_neighbours_are_written() -> None:
    store = Appender(refuse="poison")
    writer = GroupCommitAuditLog(store)
    good = [AuditEntry("acme", "a", "ok", str(n)) for n in range(5)]
    results = await asyncio.gather(
        *(writer.record(entry) for entry in [*good, AuditEntry("acme", "a", "poison")]), return_exceptions=True
    )
    assert results[:5] == [None] * 5
    assert isinstance(results[5], AuditWriteFailed) and results[5].entry.action == "poison"
    assert sorted(e.resource for batch in store.batches for e in batch) == sorted(e.resource for e in good)


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 204, 401, 403, 404, 409, 422, 500, 503)] == [
        "success", "success", "denied", "denied", "refused", "refused", "refused", "error", "error",
    ]  # fmt: skip


def test_which_calls_the_trail_records() -> None:
    assert recorded_call("POST", "/v1/query", 200) and recorded_call("DELETE", "/v1/documents/d", 404)
    assert recorded_call("GET", "/v1/admin/tenants/acme", 200) and recorded_call("GET", "/v1/documents", 401)
    assert not recorded_call("GET", "/v1/documents", 200) and not recorded_call("GET", "/v1/documents", 404)
    assert not recorded_call("POST", "/v1/query", 429) and not recorded_call("OPTIONS", "/v1/admin/tenants", 200)


class Recorder:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]:
        return []


def trail_app(audit: Recorder) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/ask")
    async def ask(request: Request) -> dict[str, str]:
        note_subject("acme", "key:k1", "10.1.1.1")
        note_question("why?")
        return {}

    @app.post("/v1/refuse")
    async def refuse() -> None:
        mark_recorded()  # the route wrote the call's row itself

    @app.get("/v1/read")
    async def read() -> dict[str, str]:
        return {}

    app.add_middleware(AuditTrail, audit=audit, client_address=lambda request: "192.0.2.1")
    return app


async def test_the_trail_records_calls_once_with_the_subject_outcome_and_trace() -> None:
    audit = Recorder()
    transport = httpx.ASGITransport(app=trail_app(audit))
    tracer = TracerProvider().get_tracer("test")
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        with tracer.start_as_current_span("call") as span:
            await client.post("/v1/ask")
        await client.post("/v1/refuse")
        await client.get("/v1/read")  # a successful read by a tenant is not an audited call
        await client.post("/v1/nowhere")
    ask, unmatched = audit.entries
    assert (ask.tenant_id, ask.actor, ask.action, ask.client_ip, ask.outcome) == (
        "acme", "key:k1", "POST /v1/ask", "10.1.1.1", "success",
    )  # fmt: skip
    assert ask.trace_id == format(span.get_span_context().trace_id, "032x")
    assert ask.details["question_sha256"] == hashlib.sha256(b"why?").hexdigest()
    assert "question" not in ask.details
    assert (unmatched.tenant_id, unmatched.actor, unmatched.action, unmatched.outcome) == (
        "_platform", "anonymous", "POST (unmatched)", "refused",
    )  # fmt: skip
    assert unmatched.client_ip == "192.0.2.1"


class FlakyOutbox:
    """Fails its first two rounds (Kafka down), then has nothing pending."""

    def __init__(self) -> None:
        self.rounds = 0

    async def drain(self, limit: int, publish: object) -> int:
        self.rounds += 1
        if self.rounds <= 2:
            raise ConnectionError("broker down")
        return 0


async def test_the_export_relay_survives_failures_and_stops_when_told() -> None:
    outbox, stop = FlakyOutbox(), asyncio.Event()
    relay = SecurityEventRelay(outbox, publisher=None, routes={}, interval_s=0.01)  # type: ignore[arg-type]
    running = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(5):
        while outbox.rounds < 4:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 1)

"""The audit log's hash chain (migration 0008), recomputed independently of Postgres, and its verification.

Each tenant's rows form one chain: `seq` counts 1, 2, 3... without gaps, `prev_hash` is the previous row's
`row_hash` (64 zeros for the first), and `row_hash` is SHA-256 over the canonical encoding below. Postgres
computes it on insert (`ragstream_audit_row_hash`, called by the append trigger); this module computes it again
from the stored columns, so a row changed, inserted or removed behind the gateway's back no longer verifies.
`verify_chain` is the one verification the admin route and `python -m ragstream_gateway.audit_verify` share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

CHAIN_VERSION = "ragstream.audit.v1"
GENESIS_HASH = "0" * 64
VERIFY_PAGE_ROWS = 2000


@dataclass(frozen=True)
class ChainRow:
    """One stored audit row, as the chain covers it: `details_json` is Postgres' canonical jsonb text."""

    audit_id: int
    tenant_id: str
    seq: int
    at: datetime
    actor: str
    action: str
    resource: str
    client_ip: str
    outcome: str
    trace_id: str
    details_json: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainHead:
    """The last appended row of a tenant's chain, kept apart from the rows (catches a removed tail)."""

    seq: int
    row_hash: str


@dataclass(frozen=True)
class Verification:
    valid: bool
    entries: int
    first_bad_id: int | None = None
    first_bad_seq: int | None = None
    problem: str | None = None


class AuditChainSource(Protocol):
    """Where a verification reads a tenant's chain from (the admin login, or the offline command's)."""

    async def chain_head(self, tenant_id: str) -> ChainHead | None: ...

    async def chain_rows(self, tenant_id: str, *, after_seq: int, limit: int) -> list[ChainRow]:
        """Rows with seq > after_seq, in seq order."""
        ...


def timestamp_text(at: datetime) -> str:
    """`at` in UTC with microseconds, as the SQL side writes it (to_char ... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(row: ChainRow) -> bytes:
    """The version tag, then each field as `<UTF-8 length>:<value>` on its own line: unambiguous for any text."""
    fields = (
        row.tenant_id,
        str(row.seq),
        timestamp_text(row.at),
        row.actor,
        row.action,
        row.resource,
        row.client_ip,
        row.outcome,
        row.trace_id,
        row.details_json,
        row.prev_hash,
    )
    lines = [f"{len(value.encode())}:{value}" for value in fields]
    return "\n".join([CHAIN_VERSION, *lines]).encode()


def row_hash(row: ChainRow) -> str:
    return hashlib.sha256(canonical_bytes(row)).hexdigest()


class ChainVerifier:
    """Feed a tenant's rows in seq order, then `finish` with its head; the first bad row is named."""

    def __init__(self) -> None:
        self.entries = 0
        self._last_seq = 0
        self._last_hash = GENESIS_HASH
        self._bad: Verification | None = None

    @property
    def failed(self) -> bool:
        return self._bad is not None

    def feed(self, rows: Iterable[ChainRow]) -> None:
        for row in rows:
            if self._bad is not None:
                return
            self.entries += 1
            problem = self._check(row)
            if problem is not None:
                self._bad = Verification(False, self.entries, row.audit_id, row.seq, problem)
                return
            self._last_seq, self._last_hash = row.seq, row.row_hash

    def _check(self, row: ChainRow) -> str | None:
        if row.seq != self._last_seq + 1:
            return f"seq {row.seq} follows {self._last_seq}: entries {self._last_seq + 1}..{row.seq - 1} are missing"
        if row.prev_hash != self._last_hash:
            return f"prev_hash does not match entry {self._last_seq}: an earlier entry was changed or removed"
        if row_hash(row) != row.row_hash:
            return "the entry's content does not match its row_hash: it was changed after it was written"
        return None

    def finish(self, head: ChainHead | None) -> Verification:
        if self._bad is not None:
            return self._bad
        last = (self._last_seq, self._last_hash)
        if head is None:
            if self.entries:
                return Verification(False, self.entries, problem="the chain has entries but no head")
            return Verification(True, 0)
        if (head.seq, head.row_hash) != last:
            problem = f"the head is at seq {head.seq} but the entries end at {self._last_seq}: the tail was removed"
            if head.seq == self._last_seq:
                problem = f"the head's hash differs from entry {head.seq}'s: the last entry was replaced"
            return Verification(False, self.entries, problem=problem)
        return Verification(True, self.entries)


async def verify_chain(source: AuditChainSource, tenant_id: str, *, page_rows: int = VERIFY_PAGE_ROWS) -> Verification:
    """Read the tenant's chain page by page (memory stays bounded) and verify it end to end."""
    verifier = ChainVerifier()
    # The head first: rows appended while we read lie beyond it, and are left to the next verification.
    head = await source.chain_head(tenant_id)
    after = 0
    while not verifier.failed:
        rows = await source.chain_rows(tenant_id, after_seq=after, limit=page_rows)
        within = [row for row in rows if head is None or row.seq <= head.seq]
        verifier.feed(within)
        if len(within) < page_rows:
            break
        after = within[-1].seq
    return verifier.finish(head)

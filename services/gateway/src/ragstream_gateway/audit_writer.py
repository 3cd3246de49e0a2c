"""Group commit for audit appends: every request's entry is committed before its `record` returns, but entries
that arrive together share one transaction per tenant (one chain lock, one commit).

A question is one audit row, so at query volume one INSERT and one commit per request would serialise a busy
tenant on its chain lock and take a pool connection each. Here one writer task drains a queue: while a batch is
being written, the next one gathers, so batches grow with load and an idle gateway writes each entry at once
(no timer). Callers still wait for their own commit: nothing is acknowledged that is not stored. A batch that
fails is retried entry by entry, so one bad entry cannot take its neighbours with it. With a commit window a
batch also gathers for up to that long before it is written (cut short when it is full or the writer closes):
for callers that are not waiting on anyone (the audit trail's rows, written after their response), fewer and
larger transactions under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter, Histogram
from ragstream_common.logs import get_logger

from ragstream_gateway.audit_trail import note_described
from ragstream_gateway.ports import AuditEntry, AuditRecord

log = get_logger(__name__)
WRITTEN = Counter("ragstream_gateway_audit_entries_total", "Audit entries committed")
FAILED = Counter("ragstream_gateway_audit_write_failures_total", "Audit entries that could not be written")
BATCH = Histogram(
    "ragstream_gateway_audit_batch_entries", "Entries per audit group commit", buckets=(1, 2, 5, 10, 50, 100, 500)
)


Pending = tuple[AuditEntry, "asyncio.Future[None]"]


class BatchAppender(Protocol):
    async def record_many(self, entries: Sequence[AuditEntry]) -> None: ...

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]: ...


class GroupCommitAuditLog:
    """An `AuditLog` over `log.record_many`; `max_pending` bounds memory (further callers wait for room)."""

    def __init__(
        self,
        log: BatchAppender,
        *,
        max_batch: int = 500,
        max_pending: int = 10_000,
        parallel: int = 2,
        commit_window_s: float = 0.0,
    ) -> None:
        self._log = log
        self._max_batch = max_batch
        self._commit_window_s = commit_window_s
        self._full = asyncio.Event()
        self._room = asyncio.Semaphore(max_pending)
        self._queue: list[Pending] = []
        self._parallel = asyncio.Semaphore(parallel)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def record(self, entry: AuditEntry) -> None:
        if self._closed:
            raise RuntimeError("the audit writer is closed")
        note_described()
        async with self._room:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append((entry, done))
            self._wake.set()
            if len(self._queue) >= self._max_batch:
                self._full.set()
            if self._task is None or self._task.done():
                # A fresh context: the writer outlives the request that started it, whose correlation id
                # (bound in contextvars) must not stamp every later request's log lines.
                self._task = asyncio.create_task(self._run(), name="audit-group-commit", context=contextvars.Context())
            try:
                # Shielded: a caller that is cancelled (shutdown) leaves its entry to be written all the same.
                await asyncio.shield(done)
            except asyncio.CancelledError:
                done.add_done_callback(_retrieved)
                raise

    async def aclose(self) -> None:
        """Write what is queued, then stop (before the pool closes)."""
        self._closed = True
        self._wake.set()
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def _run(self) -> None:
        while self._queue or not self._closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._commit_window_s > 0 and not self._closed and len(self._queue) < self._max_batch:
                await self._gather()
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            await self._write(batch)

    async def _gather(self) -> None:
        """Let the batch grow for the commit window, or until it is full or the writer closes."""
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._commit_window_s):
                await self._full.wait()

    async def _write(self, batch: list[Pending]) -> None:
        BATCH.observe(len(batch))
        by_tenant: dict[str, list[Pending]] = defaultdict(list)
        for item in batch:
            by_tenant[item[0].tenant_id].append(item)
        # Tenants' chains are independent: write them side by side, a few at a time (pool connections).
        await asyncio.gather(*(self._write_tenant(group) for group in by_tenant.values()))

    async def _write_tenant(self, group: list[Pending]) -> None:
        async with self._parallel:
            try:
                await self._log.record_many([entry for entry, _ in group])
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
        if failure is None:
            _settle(group, None)
        elif len(group) > 1:  # nothing of the group was committed: find the entry at fault
            for item in group:
                await self._write_tenant([item])
        else:
            log.error("audit write failed", action=group[0][0].action, error=repr(failure))
            _settle(group, failure)

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]:
        return await self._log.list(tenant_id, limit=limit, before=before)


class AuditWriteFailed(Exception):
    """An entry the database refused; it carries the entry so the caller can log it in full."""

    def __init__(self, entry: AuditEntry) -> None:
        super().__init__(f"audit entry {entry.action!r} of tenant {entry.tenant_id!r} was not written")
        self.entry = entry


def _settle(group: list[Pending], failure: Exception | None) -> None:
    for entry, done in group:
        if done.done():
            continue
        if failure is not None:
            FAILED.inc()
            done.set_exception(AuditWriteFailed(entry))
        else:
            WRITTEN.inc()
            done.set_result(None)


def _retrieved(done: asyncio.Future[None]) -> None:
    """Mark a failure nobody awaits any more as seen (the writer has logged it)."""
    if not done.cancelled():
        done.exception()

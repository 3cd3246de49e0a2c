"""The shape of an ingest scenario: upload a corpus, inject a fault once part of it is in, recover, audit.

Every audit lands in REPORTS, which the suite's summary line (conftest.py) adds up.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import psycopg
from support.pipeline import wait_for_status

from chaos.audit import AuditReport, audit
from chaos.corpus import Doc, Uploader, UploadLedger, make_corpus
from chaos.system import TENANT, ChaosSystem

REPORTS: list[AuditReport] = []
# Documents per ingest scenario; the fast subset (`make test`) uses FAST_CORPUS.
CORPUS_SIZE = int(os.environ.get("CHAOS_CORPUS", "300"))
FAST_CORPUS = int(os.environ.get("CHAOS_FAST_CORPUS", "60"))
# The fault goes in once this share of the corpus is acknowledged and INDEXED_AT of it indexed: documents are
# then at every stage (uploads are faster than the pipeline, so the second condition is the one that waits).
FAULT_AT = 0.3
INDEXED_AT = 0.05

Fault = Callable[[ChaosSystem], Awaitable[None]]


async def wait_flowing(system: ChaosSystem, timeout_s: float = 180.0) -> None:
    """Until a canary document is indexed and a question is answered: every consumer group has its partitions
    again (a restarted member can wait out its predecessor's session timeout first)."""
    deadline = time.monotonic() + timeout_s
    document_id = f"chaos-canary-{uuid.uuid4().hex[:8]}"
    canary: dict[str, object] = {"id": document_id, "text": f"Canary {document_id}."}
    async with system.client() as client:
        await _until_answered(client, "/v1/documents", canary, {200, 202}, deadline)
        await wait_for_status(client, document_id, {"indexed"}, timeout_s=max(deadline - time.monotonic(), 1))
        await _until_answered(client, "/v1/query", {"question": "Canary?", "timeout_ms": 10_000}, {200}, deadline)


async def _until_answered(
    client: httpx.AsyncClient, path: str, body: dict[str, object], statuses: set[int], deadline: float
) -> None:
    last = ""
    while time.monotonic() < deadline:
        try:
            response = await client.post(path, json=body)
            if response.status_code in statuses:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        await asyncio.sleep(1)
    raise AssertionError(f"POST {path} never answered {statuses}: {last}")


def corpus_for(scenario: str, size: int = CORPUS_SIZE) -> list[Doc]:
    return make_corpus(f"chaos-{scenario}", size, seed=size)


async def ingest_with_fault(
    system: ChaosSystem,
    scenario: str,
    fault: Fault,
    *,
    size: int = CORPUS_SIZE,
    fault_at: float | None = FAULT_AT,
    indexed_at: float = INDEXED_AT,
    upload_s: float = 300.0,
) -> AuditReport:
    """Upload `size` documents, run `fault` once `fault_at` of them are acknowledged (None: before the first
    upload) and `indexed_at` of them indexed, heal whatever is still down, audit and record."""
    docs = corpus_for(scenario, size)
    progress = "fault injected before the first upload"
    if fault_at is None:
        async with asyncio.timeout(240):
            await fault(system)
    async with system.client() as client:
        uploader = Uploader(client, docs, give_up_s=upload_s)
        uploads = asyncio.create_task(uploader.run())
        try:
            if fault_at is not None:
                await uploader.wait_acked(int(len(docs) * fault_at))
                progress = await _wait_indexed_share(system, uploader.ledger, int(len(docs) * indexed_at))
                async with asyncio.timeout(240):
                    await fault(system)
            async with asyncio.timeout(upload_s + 30):
                await uploads
        finally:
            uploads.cancel()
    exited = await system.heal()
    report = await audit(system, scenario, docs, uploader.ledger)
    report.notes.append(progress)
    if exited:
        report.notes.append(f"exited by themselves and restarted by the harness: {', '.join(exited)}")
    REPORTS.append(report)
    return report


def _indexed_count(system: ChaosSystem, ledger: UploadLedger) -> int:
    with psycopg.connect(system.database_url, connect_timeout=10) as connection:
        row = connection.execute(
            "SELECT count(*) FROM documents WHERE tenant_id = %s AND document_id = ANY(%s) AND status = 'indexed'",
            (TENANT, list(ledger.acked)),
        ).fetchone()
    return int(row[0]) if row else 0


async def _wait_indexed_share(system: ChaosSystem, ledger: UploadLedger, count: int, timeout_s: float = 180) -> str:
    """Until `count` acknowledged documents are indexed; returns the evidence that the fault hits mid-ingest."""
    deadline = time.monotonic() + timeout_s
    indexed = await asyncio.to_thread(_indexed_count, system, ledger)
    while indexed < count and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        indexed = await asyncio.to_thread(_indexed_count, system, ledger)
    return f"fault injected with {len(ledger.acked)} acknowledged, {indexed} of them indexed"


def assert_clean(report: AuditReport, system: ChaosSystem) -> None:
    if not report.clean or report.unacknowledged:
        logs = "\n".join(f"--- {name}\n{system.log_tail(name, 15)}" for name in system.instances)
        raise AssertionError(f"{report.describe()}\n{logs}")
    print(report.describe())


def kill9_then_restart(name: str, down_s: float = 3.0) -> Fault:
    async def fault(system: ChaosSystem) -> None:
        system.kill9(name)
        await asyncio.sleep(down_s)
        await system.restart(name)

    return fault

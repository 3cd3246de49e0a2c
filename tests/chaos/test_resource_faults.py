"""Resources running out mid-ingest: Postgres connection slots, the blob store's disk, and a huge document.

- Connection slots: the test opens plain connections to the chaos Postgres until the server refuses ("too many
  clients"), drops the gateway's own connections (its pool would otherwise keep serving through the storm) and takes
  the freed slots too, holds them all HOLD_S, then closes them. Meanwhile uploads must get 503 problem+json with
  Retry-After (never 500: the gateway sees AdminShutdown, then PoolTimeout after the pool's 30 s wait) and workers
  must retry (their pools log the refusals); afterwards the corpus passes the audit and no worker exited.
- Blob store disk full: in the chaos system the blob store is Postgres (BLOB_STORE=postgres), so its `blobs` table
  is moved to a tablespace on a 64 MiB tmpfs (`small_disk.py`; needs root, skipped where mounting is refused) and
  the tmpfs is filled mid-ingest for FULL_S while files are uploaded (multipart uploads always go to the blob
  store): 503 problem+json with Retry-After meanwhile (DiskFull), never 500; once freed, the files and the corpus
  pass the audit.
- Huge document: uploads just above the gateway's size limit (25 MiB; the issue's 40 MB is far above it), as JSON
  text and as a multipart file, while the corpus uploads: each gets 413 problem+json (`document-too-large`) before
  anything is registered or published; the corpus passes the audit.

Not covered: a document just under the size limit (tens of thousands of chunks: minutes of CPU embedding, too long
for this suite's budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psutil
import psycopg
import pytest
from ragstream_gateway.config import GatewaySettings

from chaos.audit import audit
from chaos.corpus import Doc, UploadLedger, make_corpus
from chaos.scenario import CORPUS_SIZE, REPORTS, assert_clean, ingest_with_fault
from chaos.small_disk import SmallTablespace
from chaos.system import ChaosSystem

pytestmark = pytest.mark.chaos

HOLD_S = 20.0
FULL_S = 20.0
FILES = 12
RESOURCE_CORPUS = min(CORPUS_SIZE, 120)
MAX_GRABBED = 1000  # far above the chaos Postgres's max_connections=200: we stop at the first refusal
MAX_UPLOAD_BYTES = int(GatewaySettings.model_fields["max_upload_bytes"].default)
PROBLEM_JSON = "application/problem+json"


@dataclass
class Answer:
    status: int
    content_type: str
    retry_after: str | None
    at: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        return cls(response.status_code, response.headers.get("content-type", ""), response.headers.get("retry-after"))

    def is_clear(self) -> bool:
        """A success, or a 503 problem document that tells the client when to retry."""
        if self.status == 503:
            return self.content_type.startswith(PROBLEM_JSON) and bool(self.retry_after)
        return self.status in (200, 202)


@dataclass
class SlotsTaken:
    held: list[psycopg.Connection[tuple[object, ...]]] = field(default_factory=list)
    refusal: str = ""
    dropped: int = 0
    probes: list[Answer] = field(default_factory=list)

    def close(self) -> None:
        for connection in self.held:
            with contextlib.suppress(psycopg.Error):
                connection.close()


def _take_every_slot(database_url: str, taken: SlotsTaken) -> None:
    """Plain connections until the server refuses one; the refusal's message is kept as evidence."""
    while len(taken.held) < MAX_GRABBED:
        try:
            taken.held.append(psycopg.connect(database_url, connect_timeout=5, autocommit=True))
        except psycopg.OperationalError as exc:
            taken.refusal = str(exc)
            return


def _drop_gateway_connections(system: ChaosSystem, taken: SlotsTaken) -> int:
    """Terminate the gateway's backends (found by its sockets' local ports) from one of the held connections."""
    process = system.instances["gateway"].process
    if process is None or not taken.held:
        return 0
    sockets = psutil.Process(process.pid).net_connections(kind="tcp")
    ports = [c.laddr.port for c in sockets if c.raddr and c.raddr.port == system.postgres_port]
    rows = (
        taken.held[0]
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,))
        .fetchall()
    )
    return len(rows)


async def _probe_uploads(system: ChaosSystem, seconds: float, answers: list[Answer]) -> None:
    """One upload per second while the slots are held: what a client sees meanwhile."""
    deadline = time.monotonic() + seconds
    async with system.client(timeout_s=seconds + 15) as client:
        while time.monotonic() < deadline:
            body = {"id": f"chaos-slots-probe-{uuid.uuid4().hex[:8]}", "text": "Probe written while Postgres is full."}
            with contextlib.suppress(httpx.TimeoutException):
                answers.append(Answer.of(await client.post("/v1/documents", json=body)))
            await asyncio.sleep(1.0)


def _count_in_log(system: ChaosSystem, name: str, needle: str) -> int:
    path = system.log_dir / f"{name}.log"
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


def _exited(notes: list[str]) -> list[str]:
    return [n for n in notes if n.startswith("exited by themselves")]


@pytest.mark.timeout(900)
async def test_postgres_connection_slots_exhausted_by_another_client_mid_ingest(system: ChaosSystem) -> None:
    taken = SlotsTaken()

    async def exhaust(system: ChaosSystem) -> None:
        try:
            await asyncio.to_thread(_take_every_slot, system.database_url, taken)
            # The gateway's pool keeps its open connections through the storm; drop them (and take the freed slots)
            # so that uploads meet the refusal too.
            taken.dropped = await asyncio.to_thread(_drop_gateway_connections, system, taken)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(_take_every_slot, system.database_url, taken)
            await _probe_uploads(system, HOLD_S, taken.probes)
        finally:
            await asyncio.to_thread(taken.close)

    unexpected_before = _count_in_log(system, "gateway", '"unhandled error"')
    report = await ingest_with_fault(system, "pg-slots", exhaust, size=RESOURCE_CORPUS)
    unexpected = _count_in_log(system, "gateway", '"unhandled error"') - unexpected_before
    statuses = sorted({p.status for p in taken.probes})
    report.notes.append(
        f"held {len(taken.held)} connections, dropped {taken.dropped} of the gateway's; "
        f"refusal: {taken.refusal.strip()[:160]}"
    )
    report.notes.append(f"probe uploads meanwhile answered {statuses}; gateway 500s in the log: {unexpected}")
    assert "too many clients" in taken.refusal or "connection slots" in taken.refusal, taken.refusal
    assert unexpected == 0, (
        f"the gateway answered 500 while Postgres refused connections:\n{system.log_tail('gateway')}"
    )
    assert any(p.status == 503 for p in taken.probes), f"the refusal never reached an upload: {taken.probes}"
    assert all(p.is_clear() for p in taken.probes), taken.probes
    assert not _exited(report.notes), "a worker died instead of retrying"
    assert_clean(report, system)


async def _upload_too_large(client: httpx.AsyncClient, multipart: bool) -> httpx.Response:
    text = "huge " * ((MAX_UPLOAD_BYTES + 4096) // 5)  # just above the limit, within the request-body envelope
    document_id = f"chaos-huge-{'file' if multipart else 'json'}-{uuid.uuid4().hex[:8]}"
    if multipart:
        files = {"file": ("huge.txt", text.encode(), "text/plain")}
        return await client.post("/v1/documents", data={"id": document_id}, files=files)
    return await client.post("/v1/documents", json={"id": document_id, "text": text})


@pytest.mark.timeout(900)
async def test_document_above_the_size_limit_is_refused_while_the_corpus_flows(system: ChaosSystem) -> None:
    answers: list[tuple[str, httpx.Response]] = []

    async def upload_huge(system: ChaosSystem) -> None:
        async with system.client(timeout_s=120) as client:
            for multipart in (False, True):
                response = await _upload_too_large(client, multipart)
                answers.append(("multipart" if multipart else "json", response))

    report = await ingest_with_fault(system, "huge-document", upload_huge, size=RESOURCE_CORPUS)
    for kind, response in answers:
        report.notes.append(
            f"{kind} upload of {MAX_UPLOAD_BYTES + 4096} bytes: {response.status_code} {response.text[:160]}"
        )
    assert len(answers) == 2
    for kind, response in answers:
        assert response.status_code == 413, (kind, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith(PROBLEM_JSON), (kind, response.headers)
    assert not _exited(report.notes), "a worker died on the huge upload"
    assert_clean(report, system)


async def _upload_files(
    client: httpx.AsyncClient, docs: list[Doc], ledger: UploadLedger, answers: list[Answer], give_up_s: float
) -> None:
    """Each doc as a multipart file (so through the blob store), retried on 5xx and transport errors."""
    deadline = time.monotonic() + give_up_s
    for doc in docs:
        last = "deadline"
        while time.monotonic() < deadline:
            files = {"file": (f"{doc.document_id}.txt", doc.text.encode(), "text/plain")}
            try:
                response = await client.post("/v1/documents", data={"id": doc.document_id}, files=files)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                answers.append(Answer.of(response))
                if response.status_code in (200, 202):
                    ledger.acked[doc.document_id] = int(response.json()["version"])
                    break
                last = f"{response.status_code}: {response.text[:200]}"
                if response.status_code < 500:
                    break
            await asyncio.sleep(1.0)
        if doc.document_id not in ledger.acked:
            ledger.gave_up[doc.document_id] = last


@pytest.mark.timeout(900)
async def test_blob_store_disk_full_mid_ingest(system: ChaosSystem) -> None:
    disk = SmallTablespace(system.database_url, "blobs", system.root / "blob-disk")
    try:
        await asyncio.to_thread(disk.create)
    except (OSError, subprocess.SubprocessError) as exc:
        await asyncio.to_thread(disk.remove)
        pytest.skip(f"no small filesystem here (mounting a tmpfs needs root): {exc}")
    files = make_corpus("chaos-blob-disk-file", FILES, seed=FILES)
    ledger = UploadLedger()
    answers: list[Answer] = []
    filled, freed_at = [0], [0.0]  # set by the fault

    async def disk_full(system: ChaosSystem) -> None:
        filled[0] = await asyncio.to_thread(disk.fill)
        async with system.client() as client:
            uploads = asyncio.create_task(_upload_files(client, files, ledger, answers, FULL_S + 120))
            try:
                await asyncio.sleep(FULL_S)
                await asyncio.to_thread(disk.free)
                freed_at[0] = time.monotonic()
                async with asyncio.timeout(150):
                    await uploads
            finally:
                uploads.cancel()

    try:
        report = await ingest_with_fault(system, "blob-disk-full", disk_full, size=RESOURCE_CORPUS)
    finally:
        await asyncio.to_thread(disk.remove)
    files_report = await audit(system, "blob-disk-full-files", files, ledger)
    REPORTS.append(files_report)
    while_full = [a for a in answers if a.at < freed_at[0]]
    report.notes.append(
        f"filler {filled[0]} bytes; file uploads while full: {sorted(a.status for a in while_full)}; "
        f"after: {sorted(a.status for a in answers if a.at >= freed_at[0])}"
    )
    assert any(a.status == 503 for a in while_full), "the full disk never reached a client"
    assert all(a.is_clear() for a in answers), answers
    assert not _exited(report.notes), "a worker died on the full disk"
    assert_clean(report, system)
    assert_clean(files_report, system)

"""After recovery: was anything lost, written twice, or dead-lettered although it was good?

For every document the gateway acknowledged: its status is `indexed` with a `chunk_count` (GET /v1/documents/{id});
Postgres holds exactly that many chunk rows of that version, at positions 0..n-1, and none of another version; a
lexical search for its unique token finds it; and no `<topic>.dlq` record carries its key.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from ragstream_common.kafka.topics import LARGE_MESSAGE_BYTES, PIPELINE_TOPICS
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key
from support.kafka_clients import client_kwargs
from support.pipeline import wait_drained

from chaos.corpus import Doc, UploadLedger
from chaos.system import TENANT, ChaosSystem

# document id -> its GET /v1/documents/{id} body
Bodies = dict[str, dict[str, object]]


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: str
    headers: dict[str, str]
    size: int


@dataclass
class AuditReport:
    scenario: str
    expected: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # document id -> what is missing
    duplicated: dict[str, str] = field(default_factory=dict)
    dead_lettered_good: list[DeadLetter] = field(default_factory=list)
    # Uploads the gateway never accepted although the client retried for minutes: the system did not recover.
    unacknowledged: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.dead_lettered_good)

    def describe(self) -> str:
        def first(items: dict[str, str]) -> str:
            return "; ".join(f"{k}: {v}" for k, v in list(items.items())[:8])

        parts = [f"{self.scenario}: {self.expected} documents audited"]
        if self.lost:
            parts.append(f"{len(self.lost)} lost ({first(self.lost)})")
        if self.duplicated:
            parts.append(f"{len(self.duplicated)} duplicated ({first(self.duplicated)})")
        if self.dead_lettered_good:
            reasons = {
                d.headers.get("dlq_error_class", "?") + ": " + d.headers.get("dlq_error_message", "")[:120]
                for d in self.dead_lettered_good
            }
            parts.append(f"{len(self.dead_lettered_good)} good events dead-lettered ({'; '.join(sorted(reasons)[:5])})")
        parts += self.notes
        return "\n  ".join(parts)


async def read_dead_letters(kafka: KafkaSettings, timeout_s: float = 60.0) -> list[DeadLetter]:
    """Every record of every pipeline DLQ, read up to the high-water mark seen at the start."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=LARGE_MESSAGE_BYTES,  # a poison record may be 10 MB
        fetch_max_bytes=4 * LARGE_MESSAGE_BYTES,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        partitions = [TopicPartition(spec.dlq, 0) for spec in PIPELINE_TOPICS]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout_s):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for record in (r for records in batch.values() for r in records):
                    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
                    key = (record.key or b"").decode("utf-8", "replace")
                    letters.append(DeadLetter(record.topic, key, headers, len(record.value or b"")))
    finally:
        await consumer.stop()
    return letters


async def wait_indexed(client: httpx.AsyncClient, ledger: UploadLedger, timeout_s: float) -> Bodies:
    """The status body of every acknowledged document once all are `indexed` or `failed`, or at the deadline."""
    pending = set(ledger.acked)
    bodies: Bodies = {}
    gate = asyncio.Semaphore(16)
    deadline = time.monotonic() + timeout_s

    async def look(document_id: str) -> None:
        async with gate:
            try:
                response = await client.get(f"/v1/documents/{document_id}")
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                bodies[document_id] = response.json()
                version_done = bodies[document_id]["version"] == ledger.acked[document_id]
                if version_done and bodies[document_id]["status"] in ("indexed", "failed"):
                    pending.discard(document_id)

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(look(d) for d in sorted(pending)))
        if pending:
            await asyncio.sleep(1.0)
    return bodies


def chunk_rows(database_url: str, document_ids: list[str]) -> dict[str, dict[int, list[int]]]:
    """document id -> version -> sorted chunk positions (with repeats, if any)."""
    rows: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        for document_id, version, position in connection.execute(
            "SELECT document_id, version, position FROM chunks WHERE tenant_id = %s AND document_id = ANY(%s) "
            "ORDER BY document_id, version, position",
            (TENANT, document_ids),
        ):
            rows[document_id][version].append(position)
    return rows


def check_rows(report: AuditReport, ledger: UploadLedger, bodies: Bodies, database_url: str) -> None:
    rows = chunk_rows(database_url, sorted(ledger.acked))
    for document_id, version in ledger.acked.items():
        body = bodies.get(document_id)
        if body is None or body.get("status") != "indexed" or body.get("version") != version:
            report.lost[document_id] = f"status {body and (body.get('status'), body.get('version'), body.get('error'))}"
            continue
        count = int(str(body.get("chunk_count") or 0))
        positions = rows.get(document_id, {}).get(version, [])
        others = sorted(v for v in rows.get(document_id, {}) if v != version)
        if len(positions) > len(set(positions)) or len(positions) > count or others:
            report.duplicated[document_id] = f"chunk_count {count}, positions {positions}, other versions {others}"
        elif count < 1 or positions != list(range(count)):
            report.lost[document_id] = f"chunk_count {count}, positions {positions}"


def _search(token: str) -> dict[str, object]:
    return {"query": token, "top_k": 5, "retrieval": "lexical", "timeout_ms": 15_000}


async def check_search(
    report: AuditReport, client: httpx.AsyncClient, docs: list[Doc], acked: set[str], timeout_s: float = 180.0
) -> None:
    """A lexical search for each document's unique token returns that document (all within `timeout_s`)."""
    gate = asyncio.Semaphore(6)
    pending = {d.document_id for d in docs if d.document_id in acked and d.document_id not in report.lost}

    async def find(doc: Doc) -> None:
        async with gate:
            for _ in range(3):
                try:
                    response = await client.post("/v1/search", json=_search(doc.token))
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    if doc.document_id not in {r["document_id"] for r in response.json()["results"]}:
                        report.lost.setdefault(doc.document_id, f"search for {doc.token} does not return it")
                    pending.discard(doc.document_id)
                    return
            report.lost.setdefault(doc.document_id, "search failed three times")
            pending.discard(doc.document_id)

    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(find(d) for d in docs if d.document_id in pending))
    except TimeoutError:
        for document_id in pending:
            report.lost.setdefault(document_id, f"not found by search within the audit's {timeout_s:.0f}s")


async def audit(
    system: ChaosSystem, scenario: str, docs: list[Doc], ledger: UploadLedger, settle_timeout_s: float = 300.0
) -> AuditReport:
    report = AuditReport(scenario, expected=len(ledger.acked))
    report.unacknowledged = len(ledger.gave_up)
    if ledger.gave_up:
        report.notes.append(f"{len(ledger.gave_up)} uploads never acknowledged: {list(ledger.gave_up.items())[:3]}")
    async with system.client() as client:
        bodies = await wait_indexed(client, ledger, settle_timeout_s)
        try:
            await wait_drained(system.admin, timeout_s=60)
        except AssertionError as exc:
            report.notes.append(str(exc))
        await asyncio.to_thread(check_rows, report, ledger, bodies, system.database_url)
        await check_search(report, client, docs, set(ledger.acked))
        bodies = await wait_indexed(client, UploadLedger(dict.fromkeys(ledger.unchanged_after_retry, 1)), 1)
    stranded = [d for d in ledger.unchanged_after_retry if bodies.get(d, {}).get("status") != "indexed"]
    if stranded:
        report.notes.append(f"{len(stranded)} uploads answered 200 unchanged on retry are not indexed: {stranded[:5]}")
    keys = {document_key(TENANT, d.document_id) for d in docs}
    report.dead_lettered_good = [d for d in await read_dead_letters(system.admin) if d.key in keys]
    return report

"""`python -m ragstream_devstack dr-drill --documents N`: the disaster-recovery drill on a whole local system.

1. Start Kafka, Postgres and the indexing path (gateway, ingest, embed, retrieve) on temporary data, and upload N
   documents through POST /v1/documents; wait until each is indexed (or failed).
2. Back up the running system (backup.py), then stop the services: the disaster.
3. RTO by restore: restore into a fresh Postgres (a new data directory), put the consumer groups back, verify.
4. RTO by replay: rebuild the index into an empty database by replaying the documents topic from the beginning
   (the ingest group rewound to the earliest offsets, embed and retrieve set to the end of their input topics,
   so only the replayed documents flow through); done when every document's chunks are indexed again.
   Replay needs the topic to still hold every document (7 days' retention) and the content in the events
   (JSON text travels inline; uploaded files are read from the blob store, which S3 keeps apart from the database).

Pass criteria (the CLI exits 1 when one fails; the figures say which):
- restore: exact. Every table's rows and checksum, the blob hashes and the ranked ids of the fixed searches equal
  the backup's (restore.py).
- replay: every document indexed again, and each fixed search finds the same best chunk and at least
  REPLAY_MIN_OVERLAP of the same top-k chunks. Not exact by design: the int8 ONNX embedder quantises activations
  per batch, so a chunk embedded in another batch gets a slightly different vector and near-ties in the tail of
  a ranking can swap. Exact equality is reported alongside (`searches_equal`).

Prints the figures as one JSON line (the RTOs also under `rto_s`); docs/disaster-recovery.md records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec
from psycopg import sql
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, CHUNKS_READY, DOCUMENTS_RECEIVED
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.backup import take_backup
from ragstream_devstack.backup_checks import ranked_chunk_ids
from ragstream_devstack.backup_kafka import TIMEOUT_S, admin_client, alter_offsets
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_identities import admin_password
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import DevstackError
from ragstream_devstack.restore import restore_backup

PIPELINE = ("ingest", "embed", "retrieve")
DRILL_KEY = "drill-key"
UNLIMITED_RATE = "1000000/minute"
UPLOAD_CONCURRENCY = 8
# Indexing on a laptop's CPU: generous, so a slow machine reports slow figures rather than no figures.
SECONDS_PER_DOCUMENT = 3.0
# Replay: the share of each fixed search's top-k that must come back (the best hit must come back exactly).
REPLAY_MIN_OVERLAP = 0.7
VOCABULARY = (
    "river basin flood delta sediment glacier aquifer rainfall drought estuary reservoir salinity turbine harbour "
    "lighthouse tide monsoon erosion canal irrigation wetland levee silt current plankton coral nitrogen forest "
    "soil carbon yield harvest wheat maize pasture grazing fishery salmon migration spawning upstream dam"
).split()
_INDEXED = "SELECT count(*) FILTER (WHERE indexed_version > 0), coalesce(sum(chunk_count), 0) FROM document_index_state"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def drill_documents(count: int) -> list[dict[str, str]]:
    """Seeded synthetic articles of 120-400 words: one to a few chunks each, distinct vocabulary mixes."""
    rng = random.Random(2026)
    return [
        {
            "id": f"drill-{n:05d}",
            "title": f"Drill article {n}",
            "text": ". ".join(" ".join(rng.choices(VOCABULARY, k=12)) for _ in range(rng.randint(10, 33))) + ".",
        }
        for n in range(count)
    ]


def run_drill(documents: int, *, replay: bool = True) -> dict[str, Any]:
    from ragstream_devstack.run import prepare_platform  # the platform steps only when a drill runs
    from ragstream_devstack.system import LocalServices

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per upload
    work = Path(tempfile.mkdtemp(prefix="ragstream-drill-"))
    credentials = LocalCredentials(work / "credentials")
    figures: dict[str, Any] = {"documents": documents, "work_dir": str(work)}
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(LocalKafka(admin_password=admin_password(credentials)))
        source = stack.enter_context(LocalPostgres())
        with contextlib.redirect_stdout(sys.stderr):
            prepare_platform(kafka.bootstrap_servers, source.database_url, credentials)
        gateway_env = {
            "GATEWAY_DEV_TENANT": "default",
            "GATEWAY_DEV_API_KEY": DRILL_KEY,
            "GATEWAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "GATEWAY_DEFAULT_RATE_LIMIT": UNLIMITED_RATE,
            "GATEWAY_KEY_RATE_LIMIT": UNLIMITED_RATE,
        }
        services = LocalServices(
            kafka.bootstrap_servers, source.database_url, work / "logs", credentials, extra_env={"gateway": gateway_env}
        )
        services.start((*PIPELINE, "gateway"))
        stack.callback(services.stop)
        asyncio.run(services.wait_serving(timeout_s=300))
        started = time.monotonic()
        asyncio.run(_upload(services.gateway_url, drill_documents(documents)))
        indexed, chunks = _wait_indexed(source.database_url, documents, None)
        figures["index"] = {"seconds": round(time.monotonic() - started, 1), "indexed": indexed, "chunks": chunks}
        log(f"indexed {indexed}/{documents} documents ({chunks} chunks) in {figures['index']['seconds']}s")

        backup = take_backup(source.database_url, work / "backup", kafka=kafka.admin_settings)
        size = sum(f["bytes"] for f in backup.manifest["files"].values())
        figures["backup"] = {"seconds": round(backup.seconds, 2), "bytes": size, **backup.timings}
        services.stop()  # the disaster: every consumer is gone, so the groups are inactive

        fresh = stack.enter_context(LocalPostgres())
        restored = restore_backup(work / "backup", fresh.url_for("ragstream_restored"), kafka=kafka.admin_settings)
        log(restored.summary())
        figures["restore"] = {
            "verified": restored.verified,
            "rto_s": round(restored.rto_s, 2),
            "mismatches": restored.mismatches[:20],
            **restored.timings,
        }
        if replay:
            figures["replay"] = _replay(kafka, source, credentials, work, backup.manifest, (indexed, chunks))
    figures["rto_s"] = {"restore": figures["restore"]["rto_s"], "replay": figures.get("replay", {}).get("rto_s")}
    figures["passed"] = drill_passed(figures)
    if figures["passed"]:
        shutil.rmtree(work, ignore_errors=True)  # kept, logs and backup included, when the drill failed
    return figures


def drill_passed(figures: dict[str, Any]) -> bool:
    """Every document indexed, the restore verified exactly, and the replay (when run) passed."""
    indexed = figures["index"]["indexed"] == figures["documents"]
    replay = figures.get("replay")
    return indexed and bool(figures["restore"]["verified"]) and (replay is None or bool(replay["passed"]))


def compare_rankings(expected: list[list[str]], actual: list[list[str]], min_overlap: float) -> dict[str, Any]:
    """The replay's searches against the backup's: exact matches, same best hit, the share of the top-k kept."""
    top1 = sum(bool(e) and bool(a) and e[0] == a[0] for e, a in zip(expected, actual, strict=True))
    overlaps = [len(set(e) & set(a)) / len(e) if e else float(not a) for e, a in zip(expected, actual, strict=True)]
    worst = min(overlaps, default=1.0)
    return {
        "searches_equal": f"{sum(e == a for e, a in zip(expected, actual, strict=True))}/{len(expected)}",
        "top1_equal": f"{top1}/{len(expected)}",
        "min_overlap": round(worst, 3),
        "mean_overlap": round(sum(overlaps) / len(overlaps), 3) if overlaps else 1.0,
        "passed": top1 == len(expected) and worst >= min_overlap,
    }


async def _upload(gateway_url: str, documents: list[dict[str, str]]) -> None:
    headers = {"Authorization": f"Bearer {DRILL_KEY}"}
    gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=60) as client:

        async def upload(body: dict[str, str]) -> None:
            async with gate:
                for attempt in range(10):
                    response = await client.post("/v1/documents", json=body)
                    if response.status_code not in (429, 503):
                        break
                    await asyncio.sleep(1 + attempt)
                if response.status_code not in (200, 201, 202):
                    raise DevstackError(f"upload of {body['id']} answered {response.status_code}: {response.text}")

        await asyncio.gather(*(upload(body) for body in documents))


def _wait_indexed(database_url: str, documents: int, chunks: int | None) -> tuple[int, int]:
    """Poll the retrieve service's index state until `documents` are indexed (and `chunks`, when given)."""
    deadline = time.monotonic() + 60 + SECONDS_PER_DOCUMENT * documents
    indexed = total = 0
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as connection:
            row = connection.execute(_INDEXED).fetchone()
            failed = connection.execute("SELECT count(*) FROM documents WHERE status = 'failed'").fetchone()
        assert row is not None and failed is not None
        indexed, total = int(row[0]), int(row[1])
        if indexed + int(failed[0]) >= documents and (chunks is None or total >= chunks):
            return indexed, total
        time.sleep(1.0)
    raise DevstackError(f"only {indexed}/{documents} documents ({total} chunks) indexed before the deadline")


def _replay(
    kafka: LocalKafka,
    server: LocalPostgres,
    credentials: LocalCredentials,
    work: Path,
    manifest: dict[str, Any],
    expected: tuple[int, int],
) -> dict[str, Any]:
    """Rebuild the index into an empty database from the documents topic; seconds until it is complete."""
    from ragstream_common.migrate import apply_migrations

    from ragstream_devstack.pg_identities import provision_postgres_identities
    from ragstream_devstack.system import LocalServices

    started = time.monotonic()
    replay_url = server.url_for("ragstream_replay")
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("ragstream_replay")))
    apply_migrations(replay_url)
    provision_postgres_identities(credentials=credentials, database_url=replay_url)
    _rewind(kafka.admin_settings, "ragstream-ingest", DOCUMENTS_RECEIVED.name, earliest=True)
    _rewind(kafka.admin_settings, "ragstream-embed-chunks", CHUNKS_READY.name, earliest=False)
    _rewind(kafka.admin_settings, "ragstream-retrieve-indexer", CHUNKS_EMBEDDED.name, earliest=False)
    services = LocalServices(kafka.bootstrap_servers, replay_url, work / "replay-logs", credentials)
    services.start(PIPELINE)
    try:
        asyncio.run(services.wait_serving(timeout_s=300))
        serving_s = time.monotonic() - started  # the empty schema and the services up: the rest is the replay
        indexed, chunks = _wait_indexed(replay_url, expected[0], expected[1])
        rto = time.monotonic() - started
    finally:
        services.stop()
    searches = manifest.get("searches", [])
    rankings = asyncio.run(ranked_chunk_ids(replay_url, None, searches))
    compared = compare_rankings([s["ranked_chunk_ids"] for s in searches], rankings, REPLAY_MIN_OVERLAP)
    compared["passed"] = compared["passed"] and (indexed, chunks) == expected
    log(
        f"replay rebuilt {indexed} documents ({chunks} chunks) in {rto:.1f}s; searches: {compared['searches_equal']}"
        f" equal, best hit {compared['top1_equal']}, top-k overlap min {compared['min_overlap']}"
        f" (pass: >= {REPLAY_MIN_OVERLAP}): {'PASSED' if compared['passed'] else 'FAILED'}"
    )
    return {"rto_s": round(rto, 1), "serving_s": round(serving_s, 1), "indexed": indexed, "chunks": chunks, **compared}


def _rewind(settings: KafkaSettings, group_id: str, topic: str, *, earliest: bool) -> None:
    """Commit, for every partition of `topic`, its earliest (else its latest) offset for the group."""
    spec = OffsetSpec.earliest() if earliest else OffsetSpec.latest()  # type: ignore[no-untyped-call]
    client = admin_client(settings)
    partitions = client.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions
    request = {TopicPartition(topic, p): spec for p in partitions}
    answers = client.list_offsets(request, request_timeout=TIMEOUT_S)
    offsets = {str(tp.partition): int(future.result(TIMEOUT_S).offset) for tp, future in answers.items()}
    alter_offsets(client, group_id, {topic: offsets})

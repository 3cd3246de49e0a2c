"""`python -m ragstream_devstack restore --from DIR`: a backup into a new database, verified, with its RTO.

Steps, timed from the first to "verified": check every file's sha256 against the manifest; create the target
database (it must not exist: a restore never overwrites); apply the roles (`roles.sql`; existing ones stay);
`pg_restore` the dump (parallel jobs, stop at the first error); put the broker's topic configs and the inactive
consumer groups' offsets back (kafka.json, when a broker is given); then re-read, on one snapshot of the restored
database, every table's rows and checksum, the blob hashes and the fixed searches' ranked chunk ids and compare
them with the manifest. Any difference is a failed restore: the CLI exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from confluent_kafka import KafkaException
from psycopg import sql
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.backup import (
    DUMP,
    KAFKA,
    ROLES,
    file_digest,
    libpq_target,
    load_manifest,
    pg_binary,
    run_pg_tool,
    server_major,
    server_url,
)
from ragstream_devstack.backup_checks import blob_inventory, ranked_chunk_ids, snapshot_session, table_checksums
from ragstream_devstack.backup_kafka import restore_kafka
from ragstream_devstack.processes import DevstackError


@dataclass
class RestoreResult:
    database_url: str
    rto_s: float
    mismatches: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    kafka: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        verdict = "VERIFIED" if self.verified else f"FAILED ({len(self.mismatches)} mismatches)"
        steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())
        lines = [
            f"restore into {_without_password(self.database_url)}: {verdict}",
            f"  RTO {self.rto_s:.2f}s ({steps})",
        ]
        if self.kafka is not None:
            lines.append(
                f"  kafka: topics created {len(self.kafka['topics_created'])}, configs set {self.kafka['configs_set']},"
                f" groups restored {len(self.kafka['groups_restored'])}, skipped {self.kafka['groups_skipped']}"
            )
        lines += [f"  mismatch: {m}" for m in self.mismatches[:50]]
        return "\n".join(lines)


def restore_backup(
    directory: Path,
    target_database_url: str,
    *,
    kafka: KafkaSettings | None = None,
    kafka_groups: Collection[str] | None = None,
    jobs: int | None = None,
) -> RestoreResult:
    """Restore `directory` into the database named by `target_database_url` (the administrator's URL; the
    database is created and must not exist yet), then verify it against the manifest."""
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str, mark: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - mark, 3)
        return now

    manifest = load_manifest(directory)
    mismatches = _corrupt_files(directory, manifest)
    if mismatches:
        return RestoreResult(target_database_url, time.monotonic() - started, mismatches, timings)
    mark = lap("integrity", started)
    major = _create_database(target_database_url)
    if (directory / ROLES).is_file():
        # Roles are cluster-wide: a fresh server gets the ones the dump's grants and policies name.
        server, password_env = libpq_target(server_url(target_database_url))
        psql = pg_binary("psql", major)
        run_pg_tool(
            [psql, "-q", "-X", "-v", "ON_ERROR_STOP=0", "-f", str(directory / ROLES), f"--dbname={server}"],
            "roles",
            password_env,
        )
    parallel = jobs or max(1, min(4, os.cpu_count() or 1))
    target, password_env = libpq_target(target_database_url)
    run_pg_tool(
        [
            pg_binary("pg_restore", major),
            "--exit-on-error",
            f"--jobs={parallel}",
            f"--dbname={target}",
            str(directory / DUMP),
        ],
        "pg_restore",
        password_env,
    )
    mark = lap("pg_restore", mark)
    kafka_report = None
    if kafka is not None and (directory / KAFKA).is_file():
        try:
            kafka_report = restore_kafka(kafka, json.loads((directory / KAFKA).read_text()), kafka_groups)
            mismatches += [f"kafka: {problem}" for problem in kafka_report["problems"]]
        except (RuntimeError, KafkaException) as exc:  # the database is restored all the same: verify it too
            mismatches.append(f"kafka: not restored: {exc}")
        mark = lap("kafka", mark)
    mismatches += verify_database(target_database_url, manifest)
    lap("verify", mark)
    return RestoreResult(target_database_url, time.monotonic() - started, mismatches, timings, kafka_report)


def verify_database(database_url: str, manifest: dict[str, Any]) -> list[str]:
    """Differences between the database and the manifest: tables, rows, checksums, blobs, search rankings."""
    with snapshot_session(database_url) as session:
        tables = table_checksums(session)
        blobs = blob_inventory(session) if manifest["blobs"].get("store") == "postgres" else None
    mismatches = _table_mismatches(manifest["tables"], tables)
    if blobs is not None:
        for key in ("count", "bytes", "listing_sha256"):
            if blobs[key] != manifest["blobs"][key]:
                mismatches.append(f"blobs {key}: {blobs[key]} != backup's {manifest['blobs'][key]}")
        mismatches += [f"blob content does not match its sha256: {name}" for name in blobs["corrupt"]]
    searches = manifest.get("searches", [])
    rankings = asyncio.run(ranked_chunk_ids(database_url, None, searches))
    for search, ranking in zip(searches, rankings, strict=True):
        if ranking != search["ranked_chunk_ids"]:
            mismatches.append(f"search {search['text']!r}: {ranking} != backup's {search['ranked_chunk_ids']}")
    return mismatches


def _table_mismatches(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    mismatches = [f"table {name} missing" for name in sorted(set(expected) - set(actual))]
    mismatches += [f"table {name} not in the backup" for name in sorted(set(actual) - set(expected))]
    for name in sorted(set(expected) & set(actual)):
        want, got = expected[name], actual[name]
        if want["rows"] != got["rows"]:
            mismatches.append(f"table {name}: {got['rows']} rows, backup has {want['rows']}")
        elif want["md5"] != got["md5"]:
            mismatches.append(f"table {name}: checksum {got['md5']} != backup's {want['md5']}")
    return mismatches


def _corrupt_files(directory: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for name, recorded in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            problems.append(f"file {name} missing")
        elif file_digest(path) != recorded:
            problems.append(f"file {name}: sha256 or size differs from the manifest (damaged or altered)")
    return problems


def _create_database(database_url: str) -> int:
    """CREATE DATABASE for the URL's database, refusing one that exists; the server's major version."""
    name = urlsplit(database_url).path.lstrip("/")
    if not name:
        raise DevstackError(f"{_without_password(database_url)} names no database to restore into")
    with psycopg.connect(server_url(database_url), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None:
            raise DevstackError(f"database {name!r} exists: restore into a new one (or drop it first)")
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return server_major(connection)


def with_database(database_url: str, name: str) -> str:
    return urlsplit(database_url)._replace(path=f"/{name}").geturl()


def _without_password(database_url: str) -> str:
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username
    return parts._replace(netloc=f"{user}@{host}" if user else host).geturl()

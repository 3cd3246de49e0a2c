"""Backup and restore: a 20-document index backed up, restored into a second, fresh PostgreSQL server and verified.

The corpus goes in through the services' own adapters (the gateway's blob store, the retrieve service's index)
into a database of its own on the session's Postgres; the broker side is a drill topic with its own config and a
consumer group's committed offsets. After a backup the topic is deleted and the group rewound, so the restore
has to bring both back. The restore goes to a new server (as after losing the first): none of the roles the
dump's grants and policies name exist there until `roles.sql` creates them, and its administrator must prove a
password, which the client programs get through PGPASSWORD, never on their command line. Vectors are seeded
random unit vectors: rankings are known to the data, not a model. (The whole drill through the real pipeline,
with the RTO by replay, is test_dr_drill.py.)
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from psycopg import sql
from ragstream_common.blobs import PostgresBlobStore
from ragstream_common.db import create_pool
from ragstream_common.kafka.access_admin import admin_config
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.migrate import apply_migrations
from ragstream_devstack.__main__ import main as devstack_main
from ragstream_devstack.backup import KEY_TABLES, MANIFEST, take_backup
from ragstream_devstack.backup_kafka import admin_client, alter_offsets, committed_offsets
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.restore import restore_backup, verify_database, with_database
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.lexical import LexicalAnalyzer, lexical_text
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion

pytestmark = pytest.mark.integration

DOCUMENTS = 20
CHUNKS_PER_DOCUMENT = 3
TENANTS = ("drill-a", "drill-b")
WORDS = (
    "river basin flood delta sediment glacier aquifer rainfall drought estuary reservoir salinity turbine "
    "harbour lighthouse tide monsoon erosion canal irrigation wetland levee silt current plankton coral"
).split()
ANALYZER = LexicalAnalyzer()
# The fresh server's administrator: a ragstream_* login, so it must prove its password (SCRAM, postgres.py),
# and a password with characters a URL has to escape.
RESTORE_ADMIN = "ragstream_restore_admin"
RESTORE_PASSWORD = "s3cret /#%&?:@x"


def _chunk_text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))


def _unit_vector(rng: random.Random) -> np.ndarray:
    vector = np.array([rng.gauss(0, 1) for _ in range(384)], dtype=np.float32)
    return vector / np.linalg.norm(vector)


async def _index_corpus(database_url: str) -> None:
    """20 documents (registry rows, raw upload blobs, three embedded chunks each) over two tenants."""
    rng = random.Random(15)
    pool = create_pool(database_url, max_size=2, name="drill-corpus")
    await pool.open(wait=True)
    try:
        blobs, index = PostgresBlobStore(pool), PostgresChunkIndex(pool)
        for number in range(DOCUMENTS):
            tenant, document_id = TENANTS[number % 2], f"doc-{number:02d}"
            texts = [_chunk_text(rng) for _ in range(CHUNKS_PER_DOCUMENT)]
            raw = "\n\n".join(texts).encode()
            await blobs.put(tenant, f"{document_id}/raw", raw, "text/plain")
            async with pool.connection() as connection:
                await connection.execute(
                    "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant, tenant)
                )
                await connection.execute(
                    "INSERT INTO documents (tenant_id, document_id, version, status, title, size_bytes, chunk_count)"
                    " VALUES (%s, %s, 1, 'indexed', %s, %s, %s)",
                    (tenant, document_id, f"Document {number}", len(raw), CHUNKS_PER_DOCUMENT),
                )
            chunks = [
                ChunkToIndex(
                    chunk_id=f"{document_id}-v1-{position}",
                    position=position,
                    text=text,
                    heading="",
                    content_sha256=f"{document_id}-{position}",
                    token_count=len(text.split()),
                    embedding=_unit_vector(rng),
                    term_frequencies=ANALYZER.term_frequencies(lexical_text(f"Document {number}", "", text)),
                )
                for position, text in enumerate(texts)
            ]
            version = DocumentVersion(tenant, document_id, 1, f"Document {number}", {}, "drill-model", "1", chunks)
            await index.upsert_document(version)
    finally:
        await pool.close()


@pytest.fixture
def databases(migrated_database: str) -> Iterator[tuple[str, str]]:
    """(source, restore target): a new migrated database holding the corpus, and a name not yet taken."""
    suffix = uuid.uuid4().hex[:8]
    source, target = (
        with_database(migrated_database, f"drill_{suffix}"),
        with_database(migrated_database, f"drill_{suffix}_restored"),
    )
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(f"drill_{suffix}")))
    apply_migrations(source)
    asyncio.run(_index_corpus(source))
    yield source, target
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        for name in (f"drill_{suffix}", f"drill_{suffix}_restored", f"drill_{suffix}_cli"):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_server() -> Iterator[str]:
    """A second PostgreSQL server, new and empty; the URL of a database not yet on it, as its password-protected
    administrator."""
    with LocalPostgres() as server:
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                    sql.Identifier(RESTORE_ADMIN), sql.Literal(RESTORE_PASSWORD)
                )
            )
        credentials = f"{RESTORE_ADMIN}:{quote(RESTORE_PASSWORD, safe='')}"
        yield f"postgresql://{credentials}@{server.host}:{server.port}/drill_restored"


@pytest.fixture
def client_programs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Every command the backup and restore run (pg_dump, pg_dumpall, psql, pg_restore) with its environment."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def recording(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((list(command), dict(kwargs.get("env") or {})))
        return real(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    return calls


def _roles(database_url: str) -> set[str]:
    """The server's ragstream* roles (cluster-wide), read through its `postgres` database."""
    with psycopg.connect(with_database(database_url, "postgres")) as connection:
        rows = connection.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'ragstream%'").fetchall()
    return {str(row[0]) for row in rows}


@pytest.fixture
def drill_topic(kafka_topics: str, kafka_admin: KafkaSettings) -> Iterator[tuple[str, str]]:
    """A topic with an explicit retention and 4 records, and a group that has committed offset 3 on it."""
    topic, group = f"rag.drill.{uuid.uuid4().hex[:8]}.v1", f"ragstream-drill-{uuid.uuid4().hex[:8]}"
    client = admin_client(kafka_admin)
    new = NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "3600000"})
    client.create_topics([new])[topic].result(30)
    producer = Producer(admin_config(kafka_admin))
    for n in range(4):
        producer.produce(topic, value=f"event-{n}".encode(), partition=0)
    assert producer.flush(30) == 0
    _commit(kafka_admin, group, topic, 3)
    yield topic, group
    client.delete_topics([topic])[topic].result(30)


def _commit(settings: KafkaSettings, group: str, topic: str, offset: int) -> None:
    alter_offsets(admin_client(settings), group, {topic: {"0": offset}})


def test_a_backup_restores_into_a_fresh_server_with_the_same_data_and_searches(
    databases: tuple[str, str],
    drill_topic: tuple[str, str],
    kafka_admin: KafkaSettings,
    fresh_server: str,
    client_programs: list[tuple[list[str], dict[str, str]]],
    tmp_path: Path,
) -> None:
    source, target = databases[0], fresh_server
    assert not _roles(target) - {RESTORE_ADMIN}, "the new server has none of the services' roles yet"
    topic, group = drill_topic
    backup = take_backup(source, tmp_path / "backup", kafka=kafka_admin, queries=6)
    manifest = backup.manifest
    assert manifest["tables"]["public.documents"]["rows"] == DOCUMENTS
    assert manifest["tables"]["public.chunks"]["rows"] == DOCUMENTS * CHUNKS_PER_DOCUMENT
    assert manifest["tables"]["public.chunk_terms"]["rows"] > DOCUMENTS * CHUNKS_PER_DOCUMENT
    assert manifest["blobs"]["count"] == DOCUMENTS and manifest["blobs"]["corrupt"] == []
    assert len(manifest["searches"]) == 6
    # A query made of a chunk's own words and vector finds that chunk first.
    assert all(s["ranked_chunk_ids"][0] == s["source_chunk_id"] for s in manifest["searches"])
    kafka = json.loads((tmp_path / "backup" / "kafka.json").read_text())
    assert kafka["topics"][topic] == {"partitions": 2, "replication_factor": 1, "config": {"retention.ms": "3600000"}}
    assert kafka["groups"][group] == {topic: {"0": 3}}

    # The disaster: the topic is gone and the group points elsewhere.
    client = admin_client(kafka_admin)
    client.delete_topics([topic])[topic].result(30)
    _commit(kafka_admin, group, "rag.documents.received.v1", 0)

    restored = restore_backup(tmp_path / "backup", target, kafka=kafka_admin, kafka_groups={group})
    print(f"\n{restored.summary()}\n  backup took {backup.seconds:.2f}s ({backup.timings})")
    assert restored.verified, restored.mismatches
    assert restored.kafka is not None and topic in restored.kafka["topics_created"]
    assert restored.kafka["groups_restored"] == [group]
    assert committed_offsets(client, group)[topic] == {"0": 3}
    assert 0 < restored.rto_s < 60
    with psycopg.connect(target) as connection:
        assert connection.execute("SELECT count(*) FROM chunks").fetchone() == (DOCUMENTS * CHUNKS_PER_DOCUMENT,)
    assert set(KEY_TABLES) <= set(manifest["tables"])
    # roles.sql made every role of the source server (the grants and policies name them) on the new one.
    assert _roles(source) <= _roles(target)

    # Backed up again from the new server, as its password-protected administrator: the same facts.
    again = take_backup(target, tmp_path / "again", queries=6)
    assert again.manifest["tables"] == manifest["tables"] and again.manifest["searches"] == manifest["searches"]
    assert again.manifest["blobs"]["listing_sha256"] == manifest["blobs"]["listing_sha256"]

    # The password reached the client programs through PGPASSWORD, never their command line (`ps` shows it).
    programs = {Path(command[0]).name: env for command, env in client_programs}
    assert {"pg_dump", "pg_dumpall", "psql", "pg_restore"} <= programs.keys()
    for command, _ in client_programs:
        assert not any(RESTORE_PASSWORD in arg or quote(RESTORE_PASSWORD, safe="") in arg for arg in command)
    for name in ("psql", "pg_restore"):
        assert programs[name]["PGPASSWORD"] == RESTORE_PASSWORD
    assert [env.get("PGPASSWORD") for command, env in client_programs if "/again/" in " ".join(command)] == [
        RESTORE_PASSWORD,
        RESTORE_PASSWORD,
    ]


def test_a_restore_that_differs_from_the_backup_fails(databases: tuple[str, str], tmp_path: Path) -> None:
    source, target = databases
    take_backup(source, tmp_path / "backup", queries=3)
    restored = restore_backup(tmp_path / "backup", target)
    assert restored.verified, restored.mismatches

    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute("UPDATE chunks SET text = text || ' changed' WHERE chunk_id = 'doc-03-v1-1'")
        connection.execute("DELETE FROM blobs WHERE blob_key = 'doc-04/raw'")
    mismatches = verify_database(target, json.loads((tmp_path / "backup" / MANIFEST).read_text()))
    assert any(m.startswith("table public.chunks: checksum") for m in mismatches), mismatches
    assert any(m.startswith("table public.blobs: 19 rows") for m in mismatches), mismatches
    assert any(m.startswith("blobs count: 19") for m in mismatches), mismatches

    # The CLI exits non-zero when the manifest and the restored data disagree (here: an altered dump file).
    with (tmp_path / "backup" / "database.dump").open("ab") as dump:
        dump.write(b"\0")
    cli_target = target.replace("_restored", "_cli")
    assert (
        devstack_main(["restore", "--from", str(tmp_path / "backup"), "--database-url", cli_target, "--no-kafka"]) == 1
    )

"""The connectors worker, as its own process, syncs a 200 MiB SharePoint file with bounded memory.

The Graph stand-in serves the file as generated text in 1 MiB pieces (never whole); the worker streams it to a
temporary file, then into the blob store (Postgres parts of 4 MiB). The worker's resident set size is sampled
while it works: the peak must stay within RSS_BOUND of its idle size, and the stored blob must hash to the file.
The worker publishes DocumentReceived; no ingest runs here (one that reads it later refuses a blob this size,
INGEST_MAX_DOCUMENT_BYTES, and the blob is deleted at the end anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg.types.json import Jsonb
from pydantic import SecretStr
from rag.v1 import connectors_pb2
from ragstream_common.db import create_pool
from ragstream_common.kafka import EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import now_timestamp
from ragstream_common.secret_envelope import SecretsSettings, build_secret_sealer
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.envelope_keys import master_key, master_key_id
from ragstream_devstack.system import LocalServices
from standins.graph_server import GraphStandin
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration

FILE_BYTES = 200 * 2**20
# Measured (2 cores, Postgres blob store): the worker idles at ~103 MiB and peaks 37-40 MiB above that while it
# streams (1 MiB download pieces, 4 MiB blob parts and psycopg's copies of one part); the sync takes ~2.5 s.
# 96 MiB leaves room for allocator noise; holding the file whole would add 200 MiB.
RSS_BOUND = 96 * 2**20
SAMPLE_EVERY_S = 0.02
CLIENT_STATE = "bounded-memory-client-state-0123456789abcdef"


class RssSampler:
    """The peak resident set size of one process, sampled from a thread (the test's loop stays free)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def graph() -> Iterator[GraphStandin]:
    with GraphStandin() as standin:
        yield standin


@pytest.fixture
async def worker(
    graph: GraphStandin,
    kafka_admin: KafkaSettings,
    kafka_topics: str,
    migrated_database: str,
    service_identities: LocalCredentials,
    tmp_path: Path,
) -> AsyncIterator[LocalServices]:
    """`python -m ragstream_connectors.app` with devstack's environment, pointed at the Graph stand-in; its
    scheduler off (other tests' connectors share the database) and its group past the topic's history."""
    await skip_history(kafka_admin, "ragstream-connectors")
    env = {
        "CONNECTORS_ENDPOINTS__GRAPH_API_URL": graph.api_url,
        "CONNECTORS_ENDPOINTS__MICROSOFT_LOGIN_URL": graph.login_url,
        "CONNECTORS_SCHEDULER_INTERVAL_S": "0",
        "CONNECTORS_BATCH_WAIT_MS": "20",
        "CONNECTORS_DOWNLOAD_DIR": str(tmp_path / "downloads"),
        "LOG_LEVEL": "INFO",
    }
    services = LocalServices(
        kafka_topics, migrated_database, tmp_path / "logs", service_identities, extra_env={"connectors": env}
    )
    services.start(("connectors",))
    try:
        await services.wait_serving(timeout_s=120)
        yield services
    finally:
        codes = services.stop()
        assert codes == {"connectors": 0}, services.log_tail("connectors")


async def skip_history(kafka: KafkaSettings, group: str) -> None:
    """Commit `group` at the end of rag.connectors.notified.v1: the worker handles only this test's events."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **client_kwargs(kafka))
    await consumer.start()
    try:
        partitions = [TopicPartition(CONNECTORS_NOTIFIED.name, p) for p in range(CONNECTORS_NOTIFIED.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


async def new_sharepoint_connector(
    graph: GraphStandin, admin_url: str, credentials: LocalCredentials
) -> tuple[str, str]:
    """A sharepoint connector on the stand-in's drive, as the gateway creates one (row, sync state, secrets
    sealed under the devstack master key the worker holds)."""
    tenant, connector = f"mem-{uuid.uuid4().hex[:10]}", f"con_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant, tenant))
    settings = SecretsSettings(master_key=SecretStr(master_key(credentials)), master_key_id=master_key_id(credentials))
    pool = create_pool(admin_url, max_size=1, name="test-bounded-memory")
    await pool.open(wait=True)
    try:
        secrets = {"client_secret": graph.client_secret, "client_state": CLIENT_STATE}
        sealed = await build_secret_sealer(settings, pool).seal(tenant, connector, secrets)
    finally:
        await pool.close()
    config = Jsonb({"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id})
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO connectors (connector_id, tenant_id, provider, name, config, secrets_ciphertext)"
            " VALUES (%s, %s, 'sharepoint', 'Large files', %s, %s)",
            (connector, tenant, config, sealed),
        )
        connection.execute(
            "INSERT INTO connector_sync_state (connector_id, tenant_id) VALUES (%s, %s)", (connector, tenant)
        )
    return tenant, connector


async def request_resync(kafka: KafkaSettings, tenant: str, connector: str) -> None:
    """RESYNC on the connector's partition, as the gateway publishes it when the connector is created."""
    message = connectors_pb2.ConnectorNotified(
        tenant_id=tenant,
        connector_id=connector,
        provider="sharepoint",
        kind=connectors_pb2.ConnectorNotified.RESYNC,
        received_at=now_timestamp(),
    )
    publisher = EventPublisher(kafka, source="ragstream/gateway")
    await publisher.start()
    try:
        await publisher.publish(OutgoingEvent(CONNECTORS_NOTIFIED.name, f"{tenant}/{connector}", message))
    finally:
        await publisher.stop()


def synced_item(admin_url: str, connector: str, item_id: str) -> tuple[str, str] | None:
    """(document id, content sha256) once the item's row is written: after its blob and its event."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT document_id, content_sha256 FROM connector_items WHERE connector_id = %s AND item_id = %s",
            (connector, item_id),
        ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def stored_blob_sha256(admin_url: str, tenant: str, key: str) -> tuple[int, str]:
    """(size, sha256) of a parted blob, hashed part by part through a server-side cursor (never whole)."""
    digest, size = hashlib.sha256(), 0
    with psycopg.connect(admin_url) as connection, connection.cursor(name="blob_parts_hash") as cursor:
        cursor.itersize = 1
        cursor.execute(
            "SELECT content FROM blob_parts WHERE tenant_id = %s AND blob_key = %s ORDER BY part_no", (tenant, key)
        )
        for (part,) in cursor:
            digest.update(part)
            size += len(part)
    return size, digest.hexdigest()


def clean_up(admin_url: str, tenant: str, connector: str) -> None:
    """Free the 200 MiB (the tenant is this test's alone), and retire the connector: later workers on this
    database (the e2e tier's) must never poll it against their own Graph stand-in."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("DELETE FROM blob_parts WHERE tenant_id = %s", (tenant,))
        connection.execute("DELETE FROM blobs WHERE tenant_id = %s", (tenant,))
        connection.execute("UPDATE connectors SET status = 'removed' WHERE connector_id = %s", (connector,))


@pytest.mark.timeout(180)
async def test_a_200_mib_file_streams_into_the_blob_store_with_bounded_memory(
    graph: GraphStandin,
    worker: LocalServices,
    kafka_principals: dict[str, KafkaSettings],
    migrated_database: str,
    service_identities: LocalCredentials,
    tmp_path: Path,
) -> None:
    item = graph.create_file("quarterly-archive.txt", size=FILE_BYTES)
    tenant, connector = await new_sharepoint_connector(graph, migrated_database, service_identities)
    sampler = RssSampler(worker.processes["connectors"].pid)
    await asyncio.sleep(1.0)  # idle after start-up: the baseline is the worker's own footprint
    baseline = max(sampler.rss() for _ in range(5))
    started = time.monotonic()
    synced = None
    try:
        with sampler:
            await request_resync(kafka_principals["gateway"], tenant, connector)
            while synced is None and time.monotonic() - started < 120:
                await asyncio.sleep(0.2)
                synced = await asyncio.to_thread(synced_item, migrated_database, connector, item)
        elapsed = time.monotonic() - started
        assert synced is not None, f"not synced within 120 s:\n{worker.log_tail('connectors')}"
        document_id, content_sha256 = synced
        grown = sampler.peak - baseline
        print(
            f"200 MiB synced in {elapsed:.1f} s; RSS idle {baseline / 2**20:.0f} MiB, peak {sampler.peak / 2**20:.0f}"
            f" MiB (+{grown / 2**20:.0f} MiB, bound +{RSS_BOUND / 2**20:.0f} MiB, {sampler.samples} samples)"
        )
        assert sampler.samples > 10, "the sync ended before the RSS could be sampled"
        assert grown < RSS_BOUND, f"worker RSS grew {grown / 2**20:.0f} MiB over its idle {baseline / 2**20:.0f} MiB"
        assert content_sha256 == graph.sha256(item)
        key = f"{document_id}/{content_sha256}"
        size, digest = await asyncio.to_thread(stored_blob_sha256, migrated_database, tenant, key)
        assert (size, digest) == (FILE_BYTES, graph.sha256(item))
        assert not list((tmp_path / "downloads").glob("download-*")), "temporary file left"
    finally:
        await asyncio.to_thread(clean_up, migrated_database, tenant, connector)

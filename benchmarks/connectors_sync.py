"""How fast does the connectors worker enumerate a SharePoint drive into the blob store?

    uv run python benchmarks/connectors_sync.py                    # 2,000 files of ~2 KB
    uv run python benchmarks/connectors_sync.py --files 200        # smoke run

Starts its own local Kafka and Postgres (temporary directories), the Microsoft Graph stand-in of the tests
(tests/standins/graph_server.py, pages of --page-size items) and the connectors worker alone, as a process with
devstack's environment: no gateway, no ingest (the DocumentReceived it publishes are not consumed). A sharepoint
connector is registered as the gateway would (row, sync state, sealed secrets), then RESYNC is published:

1. **Full enumeration:** from RESYNC to the enumeration's end (every item row written, `full_sync_started_at`
   cleared): per item one permissions lookup, one content redirect and download, one blob, one event.
2. **Resync of an unchanged drive:** RESYNC again; every item is listed and found unchanged (its eTag), nothing
   is downloaded or published: the listing rate.

Items/s for both, and the worker's peak RSS (MB). Progress goes to stderr; the last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from harness import ROOT, finish, log, tree_rss_mb

sys.path.insert(0, str(ROOT / "tests"))  # the provider stand-ins live with the tests

from standins.graph_server import GraphStandin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-bytes", type=int, default=2048)
    parser.add_argument("--page-size", type=int, default=200, help="items per delta page (Graph's default)")
    args = parser.parse_args()
    with GraphStandin(page_size=args.page_size) as graph, worker_system(graph) as (database_url, kafka, services):
        log(f"creating {args.files} files of {args.file_bytes} bytes in the stand-in")
        for n in range(args.files):
            graph.create_file(f"doc-{n:05}.txt", size=args.file_bytes)
        with PeakRss(services.processes["connectors"].pid) as rss:
            full, unchanged = asyncio.run(measure(graph, database_url, kafka, services, args.files))
        summary = {
            "files": args.files,
            "file_bytes": args.file_bytes,
            "page_size": args.page_size,
            "full_sync_s": round(full, 2),
            "full_items_per_s": round(args.files / full, 1),
            "unchanged_resync_s": round(unchanged, 2),
            "unchanged_items_per_s": round(args.files / unchanged, 1),
            "worker_peak_rss_mb": round(rss.peak_mb, 1),
        }
    print(
        f"full enumeration of {args.files} files: {full:.1f} s, {summary['full_items_per_s']} items/s;"
        f" resync of the unchanged drive: {unchanged:.1f} s, {summary['unchanged_items_per_s']} items/s;"
        f" worker peak RSS {summary['worker_peak_rss_mb']} MB"
    )
    finish("connectors-sync", summary)


class PeakRss:
    """The peak RSS (MB) of our worker process, by pid: other systems' workers on the machine do not count."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._root, self._interval_s = psutil.Process(pid), interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb([self._root]))
            self._stop.wait(self._interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def worker_system(graph: GraphStandin) -> Iterator[tuple[str, Any, Any]]:
    """Kafka, Postgres (migrated, identities provisioned) and the connectors worker pointed at `graph`."""
    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.kafka import LocalKafka
    from ragstream_devstack.kafka_identities import admin_password
    from ragstream_devstack.postgres import LocalPostgres
    from ragstream_devstack.run import prepare_platform
    from ragstream_devstack.system import LocalServices

    scratch = Path(tempfile.mkdtemp(prefix="ragstream-bench-connectors-"))
    credentials = LocalCredentials(scratch / "credentials")
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(LocalKafka(None, admin_password=admin_password(credentials)))
        postgres = stack.enter_context(LocalPostgres(None))
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the report's
            prepare_platform(kafka.bootstrap_servers, postgres.database_url, credentials)
        env = {
            "CONNECTORS_ENDPOINTS__GRAPH_API_URL": graph.api_url,
            "CONNECTORS_ENDPOINTS__MICROSOFT_LOGIN_URL": graph.login_url,
            "CONNECTORS_SCHEDULER_INTERVAL_S": "0",
            "CONNECTORS_DOWNLOAD_DIR": str(scratch / "downloads"),
        }
        services = LocalServices(
            kafka.bootstrap_servers, postgres.database_url, scratch / "logs", credentials, extra_env={"connectors": env}
        )
        services.start(("connectors",))
        stack.callback(lambda: log(f"worker stopped: {services.stop()}; logs in {scratch / 'logs'}"))
        asyncio.run(services.wait_serving(timeout_s=120))
        yield postgres.database_url, kafka.admin_settings, services


async def measure(graph: GraphStandin, database_url: str, kafka: Any, services: Any, files: int) -> tuple[float, float]:
    """Seconds of the full enumeration, then of a resync of the unchanged drive."""
    tenant, connector = await register_connector(graph, database_url, services.credentials)
    full = await timed_resync(database_url, kafka, tenant, connector, files)
    log(f"full enumeration: {full:.1f} s")
    unchanged = await timed_resync(database_url, kafka, tenant, connector, files)
    log(f"resync of the unchanged drive: {unchanged:.1f} s")
    return full, unchanged


async def register_connector(graph: GraphStandin, database_url: str, credentials: Any) -> tuple[str, str]:
    import psycopg
    from psycopg.types.json import Jsonb
    from pydantic import SecretStr
    from ragstream_common.db import create_pool
    from ragstream_common.secret_envelope import SecretsSettings, build_secret_sealer
    from ragstream_devstack.envelope_keys import master_key, master_key_id

    tenant, connector = "bench-connectors", f"con_{uuid.uuid4().hex[:16]}"
    settings = SecretsSettings(master_key=SecretStr(master_key(credentials)), master_key_id=master_key_id(credentials))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant, tenant))
    pool = create_pool(database_url, max_size=1, name="bench-connectors")
    await pool.open(wait=True)
    try:
        secrets = {"client_secret": graph.client_secret, "client_state": uuid.uuid4().hex * 2}
        sealed = await build_secret_sealer(settings, pool).seal(tenant, connector, secrets)
    finally:
        await pool.close()
    config = Jsonb({"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id})
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO connectors (connector_id, tenant_id, provider, name, config, secrets_ciphertext)"
            " VALUES (%s, %s, 'sharepoint', 'Benchmark', %s, %s)",
            (connector, tenant, config, sealed),
        )
        await connection.execute(
            "INSERT INTO connector_sync_state (connector_id, tenant_id) VALUES (%s, %s)", (connector, tenant)
        )
    return tenant, connector


async def timed_resync(database_url: str, kafka: Any, tenant: str, connector: str, files: int) -> float:
    """Publish RESYNC; seconds until the enumeration it starts is over with every item's row written."""
    import psycopg
    from rag.v1 import connectors_pb2
    from ragstream_common.kafka import EventPublisher, OutgoingEvent
    from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
    from ragstream_common.messages import now_timestamp

    message = connectors_pb2.ConnectorNotified(
        tenant_id=tenant,
        connector_id=connector,
        provider="sharepoint",
        kind=connectors_pb2.ConnectorNotified.RESYNC,
        received_at=now_timestamp(),
    )
    query = (
        "SELECT s.full_sync_started_at IS NULL AND s.last_sync_at > %s,"
        " (SELECT count(*) FROM connector_items i WHERE i.connector_id = s.connector_id AND i.seen_at > %s)"
        " FROM connector_sync_state s WHERE s.connector_id = %s"
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        since = (await (await connection.execute("SELECT now()")).fetchone() or [None])[0]
        publisher = EventPublisher(kafka, source="benchmarks/connectors_sync")
        await publisher.start()
        try:
            started = time.monotonic()
            await publisher.publish(OutgoingEvent(CONNECTORS_NOTIFIED.name, f"{tenant}/{connector}", message))
        finally:
            await publisher.stop()
        while True:
            row = await (await connection.execute(query, (since, since, connector))).fetchone()
            if row is not None and row[0] and int(row[1]) >= files:
                return time.monotonic() - started
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    main()

"""The metering worker as deployed, on real Kafka and Postgres under its own principal and login: N question
and M document usage facts published to rag.usage.recorded.v1 end up in usage_minutes as exactly N, M and their bytes,
although the worker is killed with SIGKILL mid-stream, restarted, and some facts are delivered twice. Meanwhile it
reports what every consumer group reports (lag, records, DLQ depth, readiness) under its own group, and it leaves
no faust data directory behind when stopped."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rag.v1 import usage_pb2
from ragstream_common.grpc_server import check_health
from ragstream_common.kafka import EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import USAGE
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import now_timestamp
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.processes import free_port, tail
from ragstream_devstack.system import SystemPorts, service_env

pytestmark = pytest.mark.integration
QUESTIONS, DOCUMENTS, DOCUMENT_BYTES = 40, 12, 2048


class Worker:
    """`python -m ragstream_metering.app` with the environment `make run` gives it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        # A data directory of its own per process, as the default gives each (pid).
        self.starts += 1
        self.env["METERING_DATA_DIR"] = str(self.log.parent / f"faust-{self.starts}")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ragstream_metering.app"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def worker(
    kafka_topics: str, migrated_database: str, service_identities: LocalCredentials, tmp_path: Path
) -> Iterator[Worker]:
    ports = SystemPorts.free()
    extra = {
        "METERING_METRICS_PORT": str(free_port()),
        "METERING_FLUSH_INTERVAL_S": "0.5",
        # The killed worker's partitions move on sooner (the broker's minimum is 6 s).
        "METERING_SESSION_TIMEOUT_S": "8",
        "LOG_LEVEL": "INFO",
    }
    env = service_env(
        "metering",
        kafka=kafka_topics,
        database_url=migrated_database,
        ports=ports,
        credentials=service_identities,
        extra=extra,
    )
    running = Worker(env, tmp_path / "metering.log")
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def fact(tenant: str, usage_id: str, **quantities: int) -> OutgoingEvent:
    message = usage_pb2.UsageRecorded(
        tenant_id=tenant, usage_id=usage_id, quantities=quantities, occurred_at=now_timestamp(), source="test"
    )
    return OutgoingEvent(USAGE.name, tenant, message)


def usage_facts(tenant: str) -> list[OutgoingEvent]:
    questions = [fact(tenant, f"q{i}:question", questions=1) for i in range(QUESTIONS)]
    documents = [
        fact(tenant, f"d{i}:document", documents_ingested=1, bytes_ingested=DOCUMENT_BYTES) for i in range(DOCUMENTS)
    ]
    # Interleaved, as the services would publish them.
    return [event for pair in zip(questions, documents + [None] * QUESTIONS, strict=False) for event in pair if event]


def stored_totals(admin_url: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT metric, sum(value)::bigint FROM usage_minutes WHERE tenant_id = %s GROUP BY metric", (tenant,)
        ).fetchall()
    return dict(rows)


async def eventually(condition: Callable[[], Any], what: str, log: Path, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s. Worker log:\n{tail(log, 60)}")


async def test_exact_counts_across_a_kill_9_and_redeliveries(
    worker: Worker, kafka_admin: KafkaSettings, migrated_database: str
) -> None:
    tenant = f"mw-{uuid.uuid4().hex[:10]}"
    facts = usage_facts(tenant)
    expected = {"questions": QUESTIONS, "documents_ingested": DOCUMENTS, "bytes_ingested": DOCUMENTS * DOCUMENT_BYTES}
    publisher = EventPublisher(kafka_admin, source="ragstream/test")
    await publisher.start()
    try:
        worker.start()
        half = len(facts) // 2
        await publisher.publish_many(facts[:half])
        await eventually(lambda: stored_totals(migrated_database, tenant), "first windows flushed", worker.log)
        await worker_serves(worker)
        # Mid-stream: more facts are arriving while the worker dies without a chance to commit or flush.
        sending = asyncio.ensure_future(publish_slowly(publisher, facts[half:]))
        await asyncio.sleep(0.3)
        assert worker.kill(signal.SIGKILL) == -signal.SIGKILL
        await sending
        assert stored_totals(migrated_database, tenant) != expected  # it did die mid-stream
        # Producers retrying after a timeout deliver some facts again.
        await publisher.publish_many(facts[: half // 2] + facts[-3:])
        worker.start()
        await eventually(lambda: stored_totals(migrated_database, tenant) == expected, "exact totals", worker.log)
        await asyncio.sleep(3)  # several more flushes: nothing is counted twice later either
        assert stored_totals(migrated_database, tenant) == expected
        assert worker.kill(signal.SIGTERM) == 0, tail(worker.log, 60)
        # faust's data directory goes with a process that stops; a SIGKILLed one leaves its own behind.
        assert [data_dir_left(worker, n) for n in (1, 2)] == [True, False]
    finally:
        await publisher.stop()


def data_dir_left(worker: Worker, start: int) -> bool:
    return (worker.log.parent / f"faust-{start}").exists()


async def publish_slowly(publisher: EventPublisher, facts: list[OutgoingEvent]) -> None:
    for event in facts:
        await publisher.publish(event)
        await asyncio.sleep(0.02)


async def worker_serves(worker: Worker) -> None:
    """Health and /metrics as the platform probes them: ready, and the Kafka metrics every consumer group reports,
    under the registry's group (the faust app id, whose ACLs are under test too) and the usage topic."""
    env = worker.env
    assert await check_health(f"127.0.0.1:{env['METERING_GRPC_PORT']}") == "SERVING"
    group, topic = {"group": "ragstream-metering"}, {"topic": USAGE.name}

    async def metrics() -> dict[str, list[Sample]]:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{env['METERING_METRICS_PORT']}/metrics")).text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    def matching(families: dict[str, list[Sample]], name: str, **labels: str) -> list[Sample]:
        family = name.removesuffix("_total")
        return [s for s in families.get(family, []) if s.name == name and labels.items() <= s.labels.items()]

    deadline = time.monotonic() + 40  # lag once a fetch and a record are in, DLQ depth at the first round
    while True:
        families = await metrics()
        lag = matching(families, "ragstream_consumer_lag", **group, **topic)
        depth = matching(families, "ragstream_dlq_depth", topic=USAGE.dlq)
        quantities = matching(families, "ragstream_metering_quantity_total", metric="bytes_ingested")
        bytes_in = sum(s.value for s in quantities)
        if (lag and depth and bytes_in) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert lag and {s.labels["partition"] for s in lag} <= {str(p) for p in range(USAGE.partitions)}, tail(worker.log)
    assert [s.value for s in depth] == [0], tail(worker.log)
    assert sum(s.value for s in matching(families, "ragstream_consumer_records_total", **group, **topic)) >= 1
    assert sum(s.value for s in matching(families, "ragstream_events_consumed_total", **group, **topic)) >= 1
    assert [s.value for s in matching(families, "ragstream_ready")] == [1]
    # Bytes are metered by the amount each fact carries, not by the number of facts (other suites' facts on the
    # shared broker's usage topic may add theirs: at least, not exactly).
    assert bytes_in >= DOCUMENT_BYTES
    assert matching(families, "ragstream_metering_windows_flushed_total")

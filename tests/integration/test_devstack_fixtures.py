"""The session fixtures and the `infra` CLI hand out working Kafka and Postgres endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from ragstream_common.kafka_settings import KafkaSettings
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration


async def test_kafka_admin_fixture_answers_metadata(kafka_admin: KafkaSettings, kafka_bootstrap: str) -> None:
    assert kafka_admin.bootstrap_servers == kafka_bootstrap
    assert kafka_admin.security_protocol.startswith("SASL")
    admin = AIOKafkaAdminClient(**client_kwargs(kafka_admin))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    assert len(cluster["brokers"]) == 1


def test_database_url_fixture_has_pgvector(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT '[3,4]'::vector <-> '[0,0]'::vector").fetchone()
    assert row == (5.0,)


def _read_env_lines(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    assert proc.stdout is not None
    found: dict[str, str] = {}
    while len(found) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition("=")
        found[key] = value
    return found


def test_infra_cli_prints_endpoints_and_stops_everything_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragstream_devstack", "infra"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        found = _read_env_lines(proc, time.monotonic() + 120)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert {child.name() for child in children} >= {"java", "postgres"}
        assert found["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
        with psycopg.connect(found["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not any(psutil.pid_exists(child.pid) for child in children)

"""The CPU account of the query-CPU benchmark: only the system this run started, and the per-question summary."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import psutil
import pytest
from support.bench_modules import load_benchmark

pytestmark = pytest.mark.unit

query_cpu = load_benchmark("query_cpu")
harness = sys.modules["harness"]

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_a_system_started_here_is_counted_without_other_systems_on_the_machine() -> None:
    # Another engineer's service: started through a shell that exits, so it is no descendant of this process.
    theirs = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{BUSY}" ragstream_embed.app >/dev/null 2>&1 & echo $!'],
        check=True,
        timeout=10,
        capture_output=True,
        text=True,
    )
    ours = subprocess.Popen([sys.executable, "-c", BUSY, "ragstream_gateway.app"])
    try:
        with harness.CpuAccount(rounding=3) as cpu:
            deadline = time.monotonic() + 30  # the busy second may wait for a core on a loaded machine
            while sum(psutil.Process(ours.pid).cpu_times()[:2]) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert cpu.seconds.get("gateway", 0.0) >= 0.2
        assert "embed" not in cpu.seconds
    finally:
        ours.kill()
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(theirs.stdout)).kill()


def test_redis_postgres_and_kafka_are_counted_as_infrastructure() -> None:
    assert harness._infrastructure_group("redis-server", "redis-server 127.0.0.1:6390") == "redis"
    assert harness._infrastructure_group("postgres", "postgres: ragstream_retrieve db [local] idle") == (
        "postgres:ragstream_retrieve"
    )
    assert harness._infrastructure_group("java", "java -cp kafka.jar kafka.Kafka server.properties") == "kafka"
    assert harness._infrastructure_group("python3", "python3 -m ragstream_gateway.app") is None


def test_the_summary_averages_the_rounds_and_leaves_out_idle_components() -> None:
    rounds = [
        {
            "cpu_ms_per_question": {"gateway": 8.0, "kafka": 1.0, "ingest": 0.01},
            "latency": {"p50_ms": 40.0},
            "q_per_s": 25.0,
        },
        {"cpu_ms_per_question": {"gateway": 9.0, "kafka": -0.4}, "latency": {"p50_ms": 44.0}, "q_per_s": 23.5},
    ]
    summary = query_cpu.summarise(rounds)
    assert summary["cpu_ms_per_question"] == {"gateway": 8.5, "kafka": 0.3}
    assert list(summary["cpu_ms_per_question"]) == ["gateway", "kafka"]
    assert summary["cpu_ms_total"] == 8.8
    assert summary["p50_ms"] == [40.0, 44.0]
    assert summary["q_per_s"] == [25.0, 23.5]

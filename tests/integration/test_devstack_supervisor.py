"""The Supervisor behind `make run`: restarts with back-off, keeps the others serving, stops in order, leaves nothing.

The first tests use small real `python -c` children; the last runs the real `python -m ragstream_devstack run`.
Timings are checked with generous bounds, as evidence of the back-off, never as performance assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from ragstream_devstack.processes import DevstackError, ProcessSpec, free_port, port_accepts
from ragstream_devstack.providers import DATABASE_ENV, KAFKA_ENV
from ragstream_devstack.supervisor import Backoff, Supervisor, describe_exit
from ragstream_devstack.system import SystemPorts, wait_until_serving

pytestmark = pytest.mark.integration

SLEEPER = "import time; time.sleep(300)"
# A process with a grandchild in its own group and one in a session of its own (as postgres backends are).
PARENT = (
    "import subprocess, time; subprocess.Popen(['sleep', '301']);"
    " subprocess.Popen(['sleep', '302'], start_new_session=True); time.sleep(300)"
)
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('stubborn-up', flush=True);"
    " time.sleep(300)"
)


def python(name: str, code: str, *, grace_s: float = 5.0) -> ProcessSpec:
    return ProcessSpec(name, (sys.executable, "-u", "-c", code), grace_s=grace_s)


@pytest.fixture
def output() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def supervisor(output: io.StringIO) -> Iterator[Supervisor]:
    with Supervisor(backoff=Backoff(initial_s=0.2, max_s=0.8, reset_after_s=60), output=output, poll_s=0.05) as sup:
        yield sup


def serve_until(supervisor: Supervisor, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    supervisor.serve(until=lambda: condition() or time.monotonic() > deadline)
    assert condition(), "condition not met in time"


def descendants_of(pid: int, count: int, timeout_s: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not start {count} children")


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_default_backoff_doubles_from_one_second_to_thirty() -> None:
    assert [Backoff().delay(attempt) for attempt in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


def test_a_crashing_process_is_restarted_with_doubling_delays(supervisor: Supervisor, output: io.StringIO) -> None:
    supervisor.start(python("crasher", "import sys; sys.exit(3)"))
    serve_until(supervisor, lambda: supervisor.restarts("crasher") >= 4)

    exits = supervisor.exits[:4]
    assert [e.returncode for e in exits] == [3, 3, 3, 3]
    assert [e.attempt for e in exits] == [1, 2, 3, 4]
    assert [e.delay_s for e in exits] == [0.2, 0.4, 0.8, 0.8]  # doubling, capped at max_s
    starts = supervisor.start_times("crasher")
    for exit_, restarted_at in zip(exits, starts[1:], strict=False):
        waited = restarted_at - exit_.at
        assert exit_.delay_s <= waited < exit_.delay_s + 2.0
    assert "crasher exited with code 3 after" in output.getvalue()
    assert "restart attempt 2 in 0.4s" in output.getvalue()


def test_a_killed_process_comes_back_while_the_others_keep_running(supervisor: Supervisor, output: io.StringIO) -> None:
    supervisor.start(python("steady", SLEEPER))
    supervisor.start(python("victim", "print('victim up', flush=True); import time; time.sleep(300)"))
    serve_until(supervisor, lambda: "victim up" in output.getvalue())
    steady_pid, victim_pid = supervisor.pid("steady"), supervisor.pid("victim")
    assert steady_pid is not None and victim_pid is not None

    psutil.Process(victim_pid).send_signal(signal.SIGKILL)
    serve_until(supervisor, lambda: supervisor.pid("victim") not in (None, victim_pid))

    assert supervisor.restarts("victim") == 1
    assert supervisor.exits[0].returncode == -signal.SIGKILL
    assert supervisor.pid("steady") == steady_pid and supervisor.restarts("steady") == 0
    serve_until(supervisor, lambda: output.getvalue().count("victim up") == 2)
    text = output.getvalue()
    assert "victim killed by SIGKILL after" in text and "restart attempt 1 in 0.2s" in text
    assert any(line.split()[1:3] == ["victim", "|"] for line in text.splitlines())  # honcho-style prefix


def test_a_stable_run_resets_the_backoff(output: io.StringIO) -> None:
    # "Stable" must be well above a Python start-up on a loaded machine (a second or more), or the process that
    # exits at once would look stable too.
    backoff = Backoff(initial_s=0.2, max_s=5.0, reset_after_s=3.0)
    with Supervisor(backoff=backoff, output=output, poll_s=0.05) as supervisor:
        supervisor.start(python("stable", "import time, sys; time.sleep(3.2); sys.exit(1)"))
        supervisor.start(python("flappy", "import sys; sys.exit(2)"))
        serve_until(supervisor, lambda: supervisor.restarts("stable") >= 2 and supervisor.restarts("flappy") >= 4)
    stable = [e for e in supervisor.exits if e.name == "stable"]
    flappy = [e for e in supervisor.exits if e.name == "flappy"]
    assert all(e.uptime_s >= 3.0 for e in stable)
    assert {(e.attempt, e.delay_s) for e in stable} == {(1, 0.2)}
    assert [e.attempt for e in flappy[:4]] == [1, 2, 3, 4]
    assert [e.delay_s for e in flappy[:4]] == [0.2, 0.4, 0.8, 1.6]


def test_orphans_of_a_crashed_process_are_killed_before_it_restarts(supervisor: Supervisor) -> None:
    supervisor.start(python("parent", PARENT))
    pid = supervisor.pid("parent")
    assert pid is not None
    grandchildren = descendants_of(pid, 2)
    supervisor.serve(until=_after(1.3))  # the supervisor remembers each tree about once a second
    psutil.Process(pid).send_signal(signal.SIGKILL)
    serve_until(supervisor, lambda: supervisor.restarts("parent") == 1)
    assert not any(alive(p) for p in grandchildren)


def test_stop_goes_in_reverse_order_kills_the_stubborn_and_leaves_nothing(output: io.StringIO) -> None:
    supervisor = Supervisor(output=output, poll_s=0.05)
    with supervisor:
        supervisor.start(python("first", PARENT))
        supervisor.start(python("stubborn", IGNORES_SIGTERM, grace_s=1.0))
        supervisor.start(python("last", SLEEPER))
        serve_until(supervisor, lambda: "stubborn-up" in output.getvalue())
        leaders = [psutil.Process(supervisor.pid(n)) for n in ("first", "stubborn", "last")]
        processes = [*leaders, *descendants_of(leaders[0].pid, 2)]
    lines = [line for line in output.getvalue().splitlines() if "| stopping " in line]
    assert [line.split("| stopping ")[1].split()[0] for line in lines] == ["last", "stubborn", "first"]
    assert "stubborn did not stop within 1s; SIGKILL" in output.getvalue()
    assert not any(alive(p) for p in processes)
    assert supervisor.exits == []  # stopping is not a crash: nothing was restarted


def test_a_process_that_dies_before_it_is_ready_is_an_error(supervisor: Supervisor) -> None:
    with pytest.raises(DevstackError, match="exited with code 4 during startup"):
        supervisor.start(ProcessSpec("broken", (sys.executable, "-c", "import sys; sys.exit(4)"), ready=lambda: False))


def _after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


# --- the real `make run` ---------------------------------------------------------------------------------------------


def run_environment(data_dir: Path, ports: SystemPorts, kafka_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KAFKA_ENV, DATABASE_ENV)}  # start our own servers
    env.update(
        RAGSTREAM_DATA_DIR=str(data_dir),
        RAGSTREAM_KAFKA_PORT=str(kafka_port),
        RAGSTREAM_KAFKA_CONTROLLER_PORT=str(free_port()),
        RAGSTREAM_POSTGRES_PORT=str(free_port()),
        RAGSTREAM_REDIS_PORT=str(free_port()),
        RAGSTREAM_GRPC_PORTS=json.dumps(ports.grpc),
        RAGSTREAM_METRICS_PORTS=json.dumps(ports.metrics),
        GATEWAY_PORT=str(ports.http),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


def supervised(run: subprocess.Popen[bytes], marker: str) -> psutil.Process:
    """The one process under `make run` whose command line has `marker` as an argument."""
    found = [p for p in psutil.Process(run.pid).children(recursive=True) if marker in p.cmdline()]
    assert len(found) == 1, f"{marker}: {found}"
    return found[0]


async def wait_replaced(run: subprocess.Popen[bytes], marker: str, old_pid: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, psutil.Error):
            if supervised(run, marker).pid != old_pid:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{marker} was not restarted within {timeout_s:.0f}s")


async def wait_healthy(run: subprocess.Popen[bytes], ports: SystemPorts, timeout_s: float) -> None:
    """Every service's gRPC health SERVING and the gateway's /readyz ready."""

    def check_alive() -> None:
        if run.poll() is not None:
            raise DevstackError(f"make run exited with {run.returncode}")

    addresses = {name: f"127.0.0.1:{port}" for name, port in ports.grpc.items()}
    await wait_until_serving(addresses, timeout_s, check_alive)
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.http}", timeout=5) as client:
        while time.monotonic() < deadline:
            check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise AssertionError("gateway /readyz not ready")


async def wait_accepting(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_accepts("127.0.0.1", port):
        assert time.monotonic() < deadline, f"nothing accepts on port {port} after {timeout_s:.0f}s"
        await asyncio.sleep(0.3)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path, which is private to root: as root, Postgres runs as an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="ragstream-run-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def test_make_run_restarts_a_killed_service_and_broker_and_stops_clean(run_dir: Path) -> None:
    ports = SystemPorts.free()
    kafka_port = free_port()
    log_path = run_dir / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "ragstream_devstack", "run"],
            env=run_environment(run_dir / "data", ports, kafka_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await wait_healthy(run, ports, timeout_s=150)

        retrieve = supervised(run, "ragstream_retrieve.app")
        retrieve.kill()
        await wait_replaced(run, "ragstream_retrieve.app", retrieve.pid)
        await wait_healthy(run, ports, timeout_s=60)

        broker = supervised(run, "kafka.Kafka")
        broker.kill()
        await wait_replaced(run, "kafka.Kafka", broker.pid)
        # readiness is cached for a few seconds, so wait for the broker itself first, on the same port as before
        await wait_accepting(kafka_port, timeout_s=90)
        await wait_healthy(run, ports, timeout_s=90)

        everything = psutil.Process(run.pid).children(recursive=True)
        run.send_signal(signal.SIGINT)
        assert run.wait(120) == 0
        assert not [p for p in everything if alive(p)]
        text = log_path.read_text(errors="replace")
        assert "retrieve killed by SIGKILL" in text and "kafka killed by SIGKILL" in text
        stops = [text.index(f"| stopping {name} ") for name in ("gateway", "retrieve", "kafka", "postgres")]
        assert stops == sorted(stops)  # the services, then Kafka, then Postgres
    finally:
        if run.poll() is None:
            for process in [*psutil.Process(run.pid).children(recursive=True), psutil.Process(run.pid)]:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            run.wait(10)
        print(log_path.read_text(errors="replace")[-6000:])

"""Shared plumbing of the benchmarks: the system under test, its HTTP API, peak RSS, result output.

The system under test is the one answering `$GATEWAY_URL/healthz` (default http://127.0.0.1:8080, what `make run`
serves); when none answers, the harness starts its own (local Kafka and Postgres, migrations and topics, the five
services) and stops it afterwards. Scripts import this module as `harness` (run them as `python benchmarks/x.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil

if TYPE_CHECKING:
    from ragstream_common.kafka_settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
RESULTS_DIR = ROOT / "benchmarks" / "results"
SERVICES = ("gateway", "ingest", "embed", "retrieve", "generate", "connectors", "metering")
DEV_TENANT = "default"
# Generous enough that the gateway's per-tenant limiter never paces a benchmark it started itself.
UNLIMITED_RATE = "1000000/minute"
RETRYABLE = (429, 503)


def log(message: str) -> None:
    """Progress goes to stderr: stdout carries the report and ends with the one JSON line."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SystemUnderTest:
    gateway_url: str
    api_key: str
    # Known when the harness started the system, else from $DATABASE_URL; the in-process baselines need it.
    database_url: str | None
    # Lets a benchmark provision a fresh tenant; set when the harness started the system, else $GATEWAY_ADMIN_TOKEN.
    admin_token: str | None
    # The tenant that `api_key` belongs to ($BENCH_TENANT, default "default", the dev tenant).
    tenant: str
    started_here: bool
    # The system's Kafka as its super user (the harness's own broker, else $KAFKA_BOOTSTRAP_SERVERS with the
    # KAFKA_SASL_* variables or `make run`'s stored admin password); the latency benchmark's transport floor needs it.
    kafka: KafkaSettings | None = None

    def describe(self) -> str:
        origin = "started by the harness" if self.started_here else "already running"
        return f"system at {self.gateway_url} ({origin}), tenant {self.tenant!r}"


def _answers_health(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/healthz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def system_under_test(data_dir: Path | None = None) -> Iterator[SystemUnderTest]:
    """The running system, or one started here. Call from the main thread, outside any event loop.

    `data_dir` (or $BENCH_DATA_DIR) keeps a started system's Kafka and Postgres data between runs, so an index
    built by one run is reused by the next; without it they live in temporary directories.
    """
    url = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")
    api_key = os.environ.get("GATEWAY_API_KEY", "dev-key")
    tenant = os.environ.get("BENCH_TENANT", DEV_TENANT)
    if _answers_health(url):
        yield SystemUnderTest(
            url,
            api_key,
            os.environ.get("DATABASE_URL"),
            os.environ.get("GATEWAY_ADMIN_TOKEN"),
            tenant,
            started_here=False,
            kafka=_running_system_kafka(),
        )
        return
    data_dir = data_dir or (Path(os.environ["BENCH_DATA_DIR"]) if os.environ.get("BENCH_DATA_DIR") else None)
    log(f"no system answers {url}/healthz: starting one (Kafka, Postgres, five services)")
    yield from _started_system(api_key, data_dir)


def _running_system_kafka() -> KafkaSettings | None:
    """$KAFKA_BOOTSTRAP_SERVERS as the KAFKA_* variables say; without SASL ones, as `make run`'s super user
    (its password is kept in $RAGSTREAM_DATA_DIR/credentials, default var/credentials)."""
    from pydantic import SecretStr
    from ragstream_common.kafka.acls import ADMIN_USER
    from ragstream_common.kafka_settings import KafkaSettings
    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.run_settings import RunSettings

    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return None
    settings = KafkaSettings()
    stored = LocalCredentials(RunSettings().data_dir / "credentials").stored("kafka-admin")
    if settings.security_protocol != "PLAINTEXT" or stored is None:
        return settings
    return settings.model_copy(
        update={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": ADMIN_USER,
            "sasl_password": SecretStr(stored),
        }
    )


def _started_system(api_key: str, data_dir: Path | None) -> Iterator[SystemUnderTest]:
    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.kafka import LocalKafka
    from ragstream_devstack.kafka_identities import admin_password
    from ragstream_devstack.postgres import LocalPostgres
    from ragstream_devstack.redis import LocalRedis
    from ragstream_devstack.run import prepare_platform
    from ragstream_devstack.system import LocalServices

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = ROOT / ".cache" / "bench" / f"logs-{stamp}"
    admin_token = secrets.token_urlsafe(24)
    credentials_dir = data_dir / "credentials" if data_dir else Path(tempfile.mkdtemp(prefix="ragstream-bench-"))
    credentials = LocalCredentials(credentials_dir)
    with contextlib.ExitStack() as stack:
        # Started from the main thread, so the servers die with this process if it is killed.
        kafka = stack.enter_context(
            LocalKafka(data_dir / "kafka" if data_dir else None, admin_password=admin_password(credentials))
        )
        postgres = stack.enter_context(LocalPostgres(data_dir / "postgres" if data_dir else None))
        redis = stack.enter_context(LocalRedis(password=credentials.secret("redis")))
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the report's
            prepare_platform(kafka.bootstrap_servers, postgres.database_url, credentials)
        gateway_env = {
            "GATEWAY_DEV_TENANT": DEV_TENANT,
            "GATEWAY_DEV_API_KEY": api_key,
            "GATEWAY_ADMIN_TOKEN": admin_token,
            "GATEWAY_DEFAULT_RATE_LIMIT": UNLIMITED_RATE,
            "GATEWAY_KEY_RATE_LIMIT": UNLIMITED_RATE,
        }
        services = LocalServices(
            kafka.bootstrap_servers,
            postgres.database_url,
            log_dir,
            credentials,
            extra_env={"gateway": gateway_env},
            redis_url=redis.url,
        )
        services.start()
        stack.callback(lambda: log(f"services stopped: {services.stop()}; logs in {log_dir}"))
        asyncio.run(services.wait_serving(timeout_s=300))
        log(f"system up at {services.gateway_url}; logs in {log_dir}")
        yield SystemUnderTest(
            services.gateway_url,
            api_key,
            postgres.database_url,
            admin_token,
            DEV_TENANT,
            started_here=True,
            kafka=kafka.admin_settings,
        )


def api_client(system: SystemUnderTest, api_key: str | None = None, timeout_s: float = 120.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=system.gateway_url,
        headers={"Authorization": f"Bearer {api_key or system.api_key}"},
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )


async def send(
    client: httpx.AsyncClient, method: str, url: str, *, attempts: int = 10, **kwargs: Any
) -> httpx.Response:
    """One request, retried after 429/503 (waiting Retry-After) and connection errors; the last answer wins."""
    for attempt in range(1, attempts + 1):
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError:
            if attempt == attempts:
                raise
            await asyncio.sleep(min(2.0 * attempt, 10.0))
            continue
        if response.status_code not in RETRYABLE or attempt == attempts:
            return response
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 30.0))
    raise AssertionError("unreachable")


async def fresh_tenant(system: SystemUnderTest, name: str) -> tuple[str, str] | None:
    """(tenant id, API key) of a new tenant with no rate limit, or None without an admin token.

    A new tenant starts with an empty embedding cache (it is per tenant), so re-running a benchmark over the
    same texts measures encoding again instead of cache hits.
    """
    if not system.admin_token:
        return None
    headers = {"Authorization": f"Bearer {system.admin_token}"}
    async with httpx.AsyncClient(base_url=system.gateway_url, headers=headers, timeout=60) as admin:
        created = await send(
            admin, "POST", "/v1/admin/tenants", json={"tenant_id": name, "name": name, "rate_limit": UNLIMITED_RATE}
        )
        created.raise_for_status()
        key = await send(admin, "POST", f"/v1/admin/tenants/{name}/api-keys", json={"name": "benchmark"})
        key.raise_for_status()
        return name, str(key.json()["api_key"])


def run_id() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)


class RssSampler:
    """Peak resident memory per service: every `interval_s`, the RSS of each process whose command line holds
    `ragstream_<name>.app` plus all its children; the maximum of those sums over the run, in MB."""

    def __init__(self, services: Sequence[str] = SERVICES, interval_s: float = 0.5) -> None:
        self._markers = {name: f"ragstream_{name}.app" for name in services}
        self._interval_s = interval_s
        self._peaks: dict[str, float] = dict.fromkeys(services, 0.0)
        self._roots: dict[str, list[psutil.Process]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peaks_mb(self) -> dict[str, float]:
        return {name: round(peak, 1) for name, peak in self._peaks.items()}

    def _run(self) -> None:
        last_scan = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last_scan > 5.0:  # services may (re)start; a full scan costs more than a sample
                self._roots = self._find_roots()
                last_scan = time.monotonic()
            for name, roots in self._roots.items():
                self._peaks[name] = max(self._peaks[name], tree_rss_mb(roots))
            self._stop.wait(self._interval_s)

    def _find_roots(self) -> dict[str, list[psutil.Process]]:
        return service_trees(self._markers)


def service_trees(markers: dict[str, str]) -> dict[str, list[psutil.Process]]:
    """The process trees per service: processes whose command line holds its marker (`ragstream_<name>.app`).
    A wrapper (`sh -c`, `uv run`) matches too: each tree is counted once, from its topmost match."""
    matches: dict[str, dict[int, psutil.Process]] = {name: {} for name in markers}
    for process in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(process.info["cmdline"] or ())
        for name, marker in markers.items():
            if marker in line:
                matches[name][process.pid] = process
    return {
        name: [p for p in found.values() if _parent_pid(p) not in found] for name, found in matches.items() if found
    }


class CpuAccount:
    """CPU seconds each part of the system spent over a run: every service's process tree, the Postgres backends
    of each database role (their process title is `postgres: <role> ...`), the rest of Postgres, the Kafka
    broker and Redis (the gateway's rate limits and quotas). Processes that live through the run are counted (the
    services, their pooled connections); ones that start and end inside it are not. When this process started
    the system, only its own descendants count.
    `rounding` is in decimal places of a second."""

    def __init__(self, services: Sequence[str] = SERVICES, rounding: int = 1) -> None:
        self._markers = {name: f"ragstream_{name}.app" for name in services}
        self._rounding = rounding
        self._start: dict[int, tuple[str, float]] = {}
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> CpuAccount:
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        totals: dict[str, float] = {}
        for pid, (group, seconds) in self._snapshot().items():
            if pid in self._start:
                totals[group] = totals.get(group, 0.0) + seconds - self._start[pid][1]
        ordered = sorted(totals.items(), key=lambda kv: -kv[1])
        self.seconds = {group: round(value, self._rounding) for group, value in ordered}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        groups: dict[int, str] = {}
        for name, roots in service_trees(self._markers).items():
            for root in roots:
                with contextlib.suppress(psutil.Error):
                    groups.update((p.pid, name) for p in [root, *root.children(recursive=True)])
        for process in psutil.process_iter(["pid", "name", "cmdline"]):
            line = " ".join(process.info["cmdline"] or ())
            if process.info["pid"] not in groups and (group := _infrastructure_group(process.info["name"], line)):
                groups[process.info["pid"]] = group
        # A system started by this benchmark is its descendants: other systems on the machine (a test suite's
        # broker and services) must not be counted with it.
        own = {child.pid for child in psutil.Process().children(recursive=True)}
        if own & groups.keys():
            groups = {pid: group for pid, group in groups.items() if pid in own}
        snapshot: dict[int, tuple[str, float]] = {}
        for pid, group in groups.items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                snapshot[pid] = (group, times.user + times.system)
        return snapshot


def _infrastructure_group(name: str | None, line: str) -> str | None:
    if line.startswith("postgres: "):
        role = line.split()[1]
        return f"postgres:{role}" if role.startswith("ragstream") else "postgres:server"
    if name == "postgres":
        return "postgres:server"
    if name == "redis-server":
        return "redis"
    return "kafka" if "kafka.Kafka" in line else None


def _parent_pid(process: psutil.Process) -> int | None:
    with contextlib.suppress(psutil.Error):
        return process.ppid()
    return None


def tree_rss_mb(roots: Sequence[psutil.Process]) -> float:
    """The summed RSS of these process trees, in MB."""
    return sum(_tree_rss(root) for root in roots) / 1e6


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
    return total


def machine_state() -> dict[str, Any]:
    """What the figures were measured on: a busy machine makes every latency figure worse."""
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
    }


def finish(name: str, summary: dict[str, Any], details: dict[str, Any] | None = None) -> None:
    """Save summary and details under benchmarks/results/ and print the summary as the last stdout line."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    record = {"summary": summary, **(details or {}), "machine": machine_state()}
    path.write_text(json.dumps(record, indent=2, default=str))
    state = record["machine"]
    print(f"(machine: {state['cpus']} CPUs, load average {state['load_average']}; saved to {path.relative_to(ROOT)})")
    print(json.dumps(summary), flush=True)

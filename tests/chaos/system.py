"""A private Ragstream (Kafka, Postgres, the five services) whose every process a test can kill, freeze and restart.

Built from the project's own launchers: LocalKafka and LocalPostgres on kept data directories and fixed ports (so a
killed broker or database comes back with its data where the services expect it), and the services' environment and
command from ragstream_devstack.system. Instances are named by service (`embed`) or replica (`embed-2`); a replica
shares its service's consumer groups and gets a gRPC port of its own. The connectors worker talks to a Microsoft
Graph stand-in (`graph`, one SharePoint drive) that lives as long as the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_config import ExtraListener
from ragstream_devstack.kafka_identities import admin_password
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import DevstackError, free_port, tail
from ragstream_devstack.redis import LocalRedis
from ragstream_devstack.run import prepare_platform
from ragstream_devstack.system import SERVICE_NAMES, SystemPorts, service_command, service_env, wait_until_serving
from standins.graph_server import GraphStandin
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

TENANT, API_KEY, ADMIN_TOKEN = "default", "chaos-key", "chaos-admin-token-32-characters-min"
UNLIMITED_RATE = "1000000/minute"
# Small delta pages, so that a full enumeration of a few hundred files takes many pages (connector scenarios).
GRAPH_PAGE_SIZE = 20


class LaggingGraph(GraphStandin):
    """The Graph stand-in with `delta_delay_s` of latency before each delta page: a full enumeration then lasts
    long enough for a fault to land between its pages."""

    delta_delay_s = 0.0

    def _app(self) -> Starlette:
        app = super()._app()
        app.add_middleware(_DeltaLatency, standin=self)
        return app


class _DeltaLatency:
    def __init__(self, app: ASGIApp, standin: LaggingGraph) -> None:
        self._app, self._standin = app, standin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).endswith("/root/delta") and self._standin.delta_delay_s:
            await asyncio.sleep(self._standin.delta_delay_s)
        await self._app(scope, receive, send)


@dataclass
class Instance:
    """One service process: `embed`, or a replica such as `embed-2`."""

    name: str
    service: str
    grpc_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def frozen(self) -> bool:
        if not self.running() or self.process is None:
            return False
        with contextlib.suppress(psutil.NoSuchProcess):
            return bool(psutil.Process(self.process.pid).status() == psutil.STATUS_STOPPED)
        return False


@dataclass
class ChaosSystem:
    root: Path
    ports: SystemPorts = field(default_factory=SystemPorts.free)
    kafka_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    # A second broker listener that advertises a proxy's port, for partitions between one worker and the broker:
    # (the listener's own port, the port a TcpProxy in front of it takes).
    partition_listener: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    postgres_port: int = field(default_factory=free_port)
    instances: dict[str, Instance] = field(default_factory=dict)
    # Instance name -> environment it gets on top of its own (e.g. DATABASE_URL through a TcpProxy).
    env_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # The SharePoint the connectors worker syncs; in this process, so scenarios change it directly.
    graph: LaggingGraph = field(default_factory=lambda: LaggingGraph(page_size=GRAPH_PAGE_SIZE))

    def __post_init__(self) -> None:
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.credentials = LocalCredentials(self.root / "credentials")
        self.kafka = self._new_kafka()
        self.postgres = self._new_postgres()
        # The gateway replicas' shared rate limits and quota counters.
        self.redis = LocalRedis(self.root / "redis", password=self.credentials.secret("redis"))
        for name in SERVICE_NAMES:
            self.instances[name] = Instance(name, name, self.ports.grpc[name])

    # --- addresses -------------------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def admin(self) -> KafkaSettings:
        """The broker's super user: the suite's own Kafka clients (audits, poison writers)."""
        return self.kafka.admin_settings

    @property
    def database_url(self) -> str:
        return self.postgres.database_url

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    def client(self, timeout_s: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    # --- whole system ----------------------------------------------------------------------------------------------

    def start_infrastructure(self) -> None:
        """Kafka and Postgres, migrations and topics; call from the main thread (servers die with us)."""
        self.kafka.start()
        self.postgres.start()
        self.redis.start()
        self.graph.start()
        prepare_platform(self.bootstrap, self.database_url, self.credentials)

    async def start_services(self, timeout_s: float = 300.0) -> None:
        for name in SERVICE_NAMES:
            self.start(name)
        await self.wait_serving(timeout_s)

    def shutdown(self) -> dict[str, int | None]:
        codes = {}
        for name in list(self.instances):
            with contextlib.suppress(ProcessLookupError):
                self.sigcont(name)
            codes[name] = self.stop(name)
        self.kafka.stop()
        self.postgres.stop()
        self.redis.stop()
        self.graph.stop()
        return codes

    async def heal(self, timeout_s: float = 240.0) -> list[str]:
        """Every primary process running and unfrozen, Kafka and Postgres up, replicas gone; then wait SERVING.
        Returns the services it found exited (a fault the scenario did not inject, or one it left unrepaired)."""
        exited = [n for n, i in self.instances.items() if n in SERVICE_NAMES and i.process and not i.running()]
        if not self.postgres.is_running():
            await self.restart_postgres()
        if not self.kafka.is_running():
            await self.restart_broker()
        for name in [n for n in self.instances if n not in SERVICE_NAMES]:
            self.remove_replica(name)
        for name, instance in self.instances.items():
            if instance.frozen():
                self.sigcont(name)
            if not instance.running():
                self.start(name)
        await self.wait_serving(timeout_s)
        return exited

    async def wait_serving(self, timeout_s: float = 240.0, names: tuple[str, ...] | None = None) -> None:
        """gRPC health SERVING on every (named) running instance, then the gateway's /readyz."""
        chosen = {n: i for n, i in self.instances.items() if (names is None or n in names) and i.process}
        await wait_until_serving({n: i.address for n, i in chosen.items()}, timeout_s, self._check_alive)
        if names is None or "gateway" in names:
            await self.wait_ready(timeout_s)

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=5) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise DevstackError(f"gateway not ready after {timeout_s:.0f}s:\n{self.log_tail('gateway')}")

    def _check_alive(self) -> None:
        for name, instance in self.instances.items():
            if instance.process is not None and instance.process.poll() is not None:
                raise DevstackError(f"{name} exited with {instance.process.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        return tail(self.log_dir / f"{name}.log", lines)

    # --- one service process ---------------------------------------------------------------------------------------

    def start(self, name: str) -> None:
        instance = self.instances[name]
        if instance.running():
            return
        extra = self._extra_env(instance)
        env = service_env(
            instance.service,
            kafka=self.bootstrap,
            database_url=self.database_url,
            ports=self.ports,
            credentials=self.credentials,
            extra=extra,
            redis_url=self.redis.url,
        )
        with (self.log_dir / f"{name}.log").open("ab") as log:
            instance.process = subprocess.Popen(
                service_command(instance.service), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill9(self, name: str) -> None:
        process = self._process(name)
        process.kill()
        process.wait(30)

    def stop(self, name: str, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL when it hangs); the exit code, None when it was not running."""
        process = self.instances[name].process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        return process.returncode

    async def restart(self, name: str, timeout_s: float = 180.0) -> None:
        self.start(name)
        await self.wait_serving(timeout_s, names=(name,))

    def sigstop(self, name: str) -> None:
        self._process(name).send_signal(signal.SIGSTOP)

    def sigcont(self, name: str) -> None:
        self._process(name).send_signal(signal.SIGCONT)

    def _process(self, name: str) -> subprocess.Popen[bytes]:
        process = self.instances[name].process
        if process is None:
            raise ProcessLookupError(f"{name} was never started")
        return process

    def add_replica(self, service: str) -> str:
        """A second process of `service` in the same consumer groups; returns its instance name."""
        index = 2
        while f"{service}-{index}" in self.instances:
            index += 1
        name = f"{service}-{index}"
        self.instances[name] = Instance(name, service, free_port())
        self.start(name)
        return name

    def remove_replica(self, name: str) -> None:
        """SIGTERM: the replica leaves its groups cleanly and its partitions move back."""
        self.sigcont_if_frozen(name)
        self.stop(name)
        del self.instances[name]

    def sigcont_if_frozen(self, name: str) -> None:
        if self.instances[name].frozen():
            self.sigcont(name)

    def _extra_env(self, instance: Instance) -> dict[str, str]:
        extra = {"LOG_LEVEL": "INFO", f"{instance.service.upper()}_GRPC_PORT": str(instance.grpc_port)}
        if instance.service == "gateway":
            extra |= {
                "GATEWAY_DEV_TENANT": TENANT,
                "GATEWAY_DEV_API_KEY": API_KEY,
                "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "GATEWAY_DEFAULT_RATE_LIMIT": UNLIMITED_RATE,
                "GATEWAY_KEY_RATE_LIMIT": UNLIMITED_RATE,
            }
        if instance.service == "embed":
            extra["EMBED_BATCH_MAX_WAIT_MS"] = "20"
        if instance.service == "connectors":
            extra |= {
                "CONNECTORS_ENDPOINTS__GRAPH_API_URL": self.graph.api_url,
                "CONNECTORS_ENDPOINTS__MICROSOFT_LOGIN_URL": self.graph.login_url,
            }
        return extra | self.env_overrides.get(instance.name, {})

    # --- Kafka and Postgres ----------------------------------------------------------------------------------------

    def _new_kafka(self) -> LocalKafka:
        port, controller_port = self.kafka_ports
        listener_port, proxy_port = self.partition_listener
        return LocalKafka(
            self.root / "kafka",
            port=port,
            controller_port=controller_port,
            startup_timeout=120,
            # SASL/SCRAM like the main listener: services behind the proxy keep their own credentials.
            extra_listeners={"PARTITIONABLE": ExtraListener(listener_port, f"127.0.0.1:{proxy_port}")},
            admin_password=admin_password(self.credentials),
        )

    def _new_postgres(self) -> LocalPostgres:
        return LocalPostgres(self.root / "postgres", port=self.postgres_port, startup_timeout=120)

    def kill9_broker(self) -> None:
        _signal_and_reap(self.kafka.pid, signal.SIGKILL)
        self.kafka.stop()  # reaps the child; the kept data directory stays

    async def restart_broker(self) -> None:
        """A new broker on the same ports and data directory (its log recovery runs at start)."""
        self.kafka.stop()
        self.kafka = self._new_kafka()
        await asyncio.to_thread(self.kafka.start)

    def crash_postgres(self) -> None:
        """Immediate shutdown (SIGQUIT to the postmaster): no checkpoint, crash recovery at the next start."""
        _signal_and_reap(self.postgres.pid, signal.SIGQUIT)
        self.postgres.stop()

    async def restart_postgres(self) -> None:
        self.postgres.stop()
        self.postgres = self._new_postgres()
        await asyncio.to_thread(self.postgres.start)


def _signal_and_reap(pid: int | None, sig: signal.Signals, timeout_s: float = 30.0) -> None:
    """Send `sig` and wait until the process (and the children it leaves) are gone."""
    if pid is None:
        return
    try:
        process = psutil.Process(pid)
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    os.kill(pid, sig)
    _, alive = psutil.wait_procs([process, *children], timeout=timeout_s)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()

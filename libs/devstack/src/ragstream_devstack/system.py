"""The Ragstream services (the registry's) as local processes: environment, start, gRPC health, SIGTERM stop.

Used by the e2e tests and the benchmarks (which need per-process control); `make run` runs the same
commands with the same environment under its supervisor (see run.py, supervisor.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragstream_common.registry import GATEWAY_HTTP_PORT, SERVICES
from ragstream_common.registry import SERVICE_NAMES as SERVICE_NAMES  # re-exported: run.py and tests read it here

from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.identities import service_identity_env
from ragstream_devstack.processes import DevstackError, free_port, port_accepts, tail

DEFAULT_GRPC_PORTS = {name: spec.grpc_port for name, spec in SERVICES.items()}
# Each service's own metrics listener, the gateway's included (GATEWAY_METRICS_PORT, never its HTTP port).
DEFAULT_METRICS_PORTS = {name: spec.metrics_port for name, spec in SERVICES.items() if spec.has_metrics_listener}


@dataclass(frozen=True)
class SystemPorts:
    grpc: dict[str, int]
    metrics: dict[str, int]
    http: int

    @classmethod
    def defaults(cls) -> SystemPorts:
        http = int(os.environ.get("GATEWAY_PORT", GATEWAY_HTTP_PORT))
        return cls(dict(DEFAULT_GRPC_PORTS), dict(DEFAULT_METRICS_PORTS), http)

    @classmethod
    def free(cls) -> SystemPorts:
        """Ephemeral ports, so tests can run beside a `make run` system; metrics off."""
        return cls({name: free_port() for name in SERVICE_NAMES}, dict.fromkeys(DEFAULT_METRICS_PORTS, 0), free_port())


def public_base_url(ports: SystemPorts) -> str:
    """Where providers reach the gateway's webhooks: GATEWAY_PUBLIC_BASE_URL from the shell when set (a tunnel,
    for real SharePoint, Box or Drive deliveries), else the local gateway itself."""
    return os.environ.get("GATEWAY_PUBLIC_BASE_URL") or f"http://127.0.0.1:{ports.http}"


def service_env(
    name: str,
    *,
    kafka: str,
    database_url: str,
    ports: SystemPorts,
    credentials: LocalCredentials,
    extra: dict[str, str] | None = None,
    redis_url: str | None = None,
) -> dict[str, str]:
    """The environment of one service process: shared infrastructure reached as the service's own identities
    (identities.py), plus its own prefixed settings. `database_url` is the administrator's; `redis_url` (with its
    password) is where the gateway keeps rate limits and quota counters (in its own memory when None)."""
    prefix = name.upper()
    env = {
        **os.environ,
        **service_identity_env(name, credentials=credentials, kafka=kafka, database_url=database_url),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        f"{prefix}_GRPC_PORT": str(ports.grpc[name]),
        "RETRIEVE_EMBED_ADDRESS": f"127.0.0.1:{ports.grpc['embed']}",
        # Agent-mode queries: the generate worker's follow-up searches (RetrieveService.Search).
        "GENERATE_RETRIEVE_ADDRESS": f"127.0.0.1:{ports.grpc['retrieve']}",
        "GATEWAY_REPLY_ADVERTISE_ADDRESS": f"127.0.0.1:{ports.grpc['gateway']}",
        # GET /v1/admin/health probes every worker's grpc.health where this system started it.
        "GATEWAY_SERVICE_HEALTH_ADDRESSES": ",".join(
            f"{worker}=127.0.0.1:{port}" for worker, port in ports.grpc.items() if worker != "gateway"
        ),
        # The base of every connector's webhook URL: the gateway answers there, the worker registers it with
        # the providers (subscriptions, watch channels).
        "GATEWAY_PUBLIC_BASE_URL": public_base_url(ports),
        "CONNECTORS_WEBHOOK_BASE_URL": public_base_url(ports),
    }
    if name in ports.metrics:
        env[f"{prefix}_METRICS_PORT"] = str(ports.metrics[name])
    if name == "gateway":
        env["GATEWAY_PORT"] = str(ports.http)
        if redis_url:
            env["GATEWAY_RATE_LIMIT_STORAGE"] = redis_url
    env.update(extra or {})
    return env


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", f"ragstream_{name}.app"]


@dataclass
class LocalServices:
    kafka: str
    database_url: str
    log_dir: Path
    credentials: LocalCredentials
    ports: SystemPorts = field(default_factory=SystemPorts.free)
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The gateways' shared rate limits and quota counters (LocalRedis.url); None: each gateway's own memory.
    redis_url: str | None = None

    def start(self, names: tuple[str, ...] = SERVICE_NAMES) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            env = service_env(
                name,
                kafka=self.kafka,
                database_url=self.database_url,
                ports=self.ports,
                credentials=self.credentials,
                extra={**self.extra_env.get("*", {}), **self.extra_env.get(name, {})},
                redis_url=self.redis_url,
            )
            log = (self.log_dir / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                service_command(name), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()

    def grpc_address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports.grpc[name]}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    async def wait_serving(self, timeout_s: float = 180.0) -> dict[str, str]:
        """Every started service's gRPC health says SERVING and, with the gateway started, its HTTP API accepts
        connections: the gateway's gRPC side reports SERVING a moment before uvicorn binds the API port."""
        started = time.monotonic()
        addresses = {name: self.grpc_address(name) for name in self.processes}
        statuses = await wait_until_serving(addresses, timeout_s, self._exited)
        while "gateway" in self.processes and not port_accepts("127.0.0.1", self.ports.http):
            self._exited()
            if time.monotonic() - started > timeout_s:
                raise DevstackError(f"the gateway's HTTP API is not listening after {timeout_s:.0f}s")
            await asyncio.sleep(0.05)
        return statuses

    def _exited(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise DevstackError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        return tail(self.log_dir / f"{name}.log", lines)

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM every service, wait for it; return each exit code (SIGKILLed ones report -9)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.processes.clear()
        return codes


async def wait_until_serving(
    addresses: dict[str, str], timeout_s: float, check_alive: Callable[[], None] | None = None
) -> dict[str, str]:
    """Poll grpc.health.v1 at every address until all report SERVING (as grpc_health_probe would)."""
    from ragstream_common.grpc_server import check_health

    deadline = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        if check_alive is not None:
            check_alive()
        for name, address in addresses.items():
            try:
                statuses[name] = await check_health(address)
            except Exception as exc:
                statuses[name] = type(exc).__name__
        if all(status == "SERVING" for status in statuses.values()):
            return statuses
        await asyncio.sleep(0.5)
    raise DevstackError(f"services not serving after {timeout_s:.0f}s: {statuses}")

"""Compose's Redis command and healthcheck, as written in docker-compose.yml, against a real redis-server.

The static checks of the same service are tests/unit/test_infra_redis.py; this one starts a process.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_devstack.compose_secrets import REDIS_SECRET, write_compose_secrets
from ragstream_devstack.credentials import LocalCredentials

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("compose") / "compose"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        write_compose_secrets(directory)
        yield directory


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli(port: int, *args: str, password: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", **({"REDISCLI_AUTH": password} if password else {})}
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, env=env, timeout=10)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (make setup)")
def test_compose_command_and_healthcheck_work_against_a_real_redis(generated: Path, tmp_path: Path) -> None:
    # Compose's command as written, its secret path pointed at the generated file and a free loopback port.
    redis = compose()["services"]["redis"]
    auth = generated / "redis" / "auth.conf"
    command = [str(auth) if arg == "/run/secrets/redis-auth" else arg for arg in redis["command"]]
    port = _free_port()
    server = subprocess.Popen([*command, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)])
    password = LocalCredentials(generated / "credentials").secret(REDIS_SECRET)
    try:
        deadline = time.monotonic() + 10
        while _cli(port, "ping", password=password) != "PONG":
            assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        assert _cli(port, "ping").startswith("NOAUTH")
        healthcheck = redis["healthcheck"]["test"][1].replace("/run/secrets/redis-auth", str(auth))
        probe = healthcheck.replace("$$", "$").replace("redis-cli ping", f"redis-cli -p {port} ping")
        assert subprocess.run(["/bin/sh", "-c", probe], timeout=10).returncode == 0
        assert _cli(port, "config", "get", "maxmemory-policy", password=password).split() == [
            "maxmemory-policy",
            "noeviction",
        ]
        assert _cli(port, "config", "get", "appendonly", password=password).split() == ["appendonly", "no"]
        assert _cli(port, "config", "get", "save", password=password).split() == ["save"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert list(tmp_path.iterdir()) == [], "nothing persisted"

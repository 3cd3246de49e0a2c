"""LocalRedis: a real redis-server on 127.0.0.1 that requires its password and keeps nothing on disk."""

from __future__ import annotations

import secrets
import subprocess

import pytest
from ragstream_devstack.redis import LocalRedis, ping

pytestmark = pytest.mark.integration


def _cli(redis: LocalRedis, password: str, *command: str) -> str:
    auth = ["--no-auth-warning", "-a", password] if password else []
    args = ["redis-cli", "-h", redis.host, "-p", str(redis.port), *auth, *command]
    return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()


def test_local_redis_requires_its_password_and_persists_nothing() -> None:
    password = secrets.token_urlsafe(16)
    with LocalRedis(password=password) as redis:
        assert redis.url == f"redis://:{password}@127.0.0.1:{redis.port}/0"
        assert ping(redis.host, redis.port, password)
        assert not ping(redis.host, redis.port, "wrong")
        assert _cli(redis, "", "PING").startswith("NOAUTH")
        assert _cli(redis, password, "CONFIG", "GET", "bind") == "bind\n127.0.0.1"
        assert _cli(redis, password, "CONFIG", "GET", "appendonly") == "appendonly\nno"
        assert _cli(redis, password, "CONFIG", "GET", "save") == "save"  # empty: no snapshots
        assert (redis.data_dir / "redis.conf").stat().st_mode & 0o077 == 0
        command_line = subprocess.run(["ps", "-o", "args=", "-p", str(redis.pid)], capture_output=True, text=True)
        assert password not in command_line.stdout
        data_dir = redis.data_dir
    assert not redis.is_running() and not data_dir.exists()


def test_a_password_that_cannot_go_into_the_config_is_refused() -> None:
    with pytest.raises(ValueError):
        LocalRedis(password='with"quote')
    with pytest.raises(ValueError):
        LocalRedis(password="")

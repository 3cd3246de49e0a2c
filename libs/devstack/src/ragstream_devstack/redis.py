"""A real Redis server (Debian's `redis-server`) for the gateway's shared rate limits and quota counters.

    with LocalRedis(password=credentials.secret("redis")) as redis:
        print(redis.url)   # redis://:<password>@127.0.0.1:<port>/0

Bound to 127.0.0.1 with a password (`requirepass`, written to a 0600 config file, never on the command line)
and no persistence (no RDB snapshots, no AOF): counters and windows are short-lived, and a restarted Redis
starting empty only forgets the last minute's windows and today's question counts.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self
from urllib.parse import quote

from ragstream_devstack.processes import (
    DevstackError,
    LocalProcess,
    ProcessSpec,
    free_port,
    require_executable,
    stop_process_tree,
)

_log = logging.getLogger(__name__)

REDIS_ENV = "REDIS_URL"
INSTALL_HINT = "apt-get install redis-server (make setup does it)"
# The gateway's windows and counters need a few MB; past the cap Redis refuses writes rather than evicting
# (an evicted window would admit a burst), which the gateway treats like an outage.
_MAX_MEMORY = "256mb"


class LocalRedis(LocalProcess):
    """redis-server on `host`:`port` (a free port by default) that requires `password`."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        password: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if not password or any(c in password for c in '"\\\r\n '):
            raise ValueError("LocalRedis needs a password (requirepass) without quotes, backslashes or spaces")
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._password = password
        self._given_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://:<password>@host:port/0, the form GATEWAY_RATE_LIMIT_STORAGE takes."""
        return f"redis://:{quote(self._password, safe='')}@{self.host}:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        if self._given_dir is not None:
            return self._given_dir
        if self._base_dir is None:
            raise DevstackError("LocalRedis has not been started")
        return self._base_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        if self._given_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="ragstream-redis-"))
        self._launch(f"Redis on {self.host}:{self.port}", self.log_file)
        _log.info("Redis ready at %s:%s (pid %s)", self.host, self.port, self.pid)
        return self

    def stop(self) -> None:
        """SIGTERM (Redis saves nothing: persistence is off), SIGKILL if it hangs. Idempotent."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            stop_process_tree(self._proc, graceful=signal.SIGTERM, timeout=10)
            self._proc = None
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def process_spec(self, name: str = "redis") -> ProcessSpec:
        """Write the config file and return how to run the server; `make run` hands this to its Supervisor,
        which restarts it on the same port with the same password."""
        server = require_executable("redis-server", INSTALL_HINT)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.data_dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(render_config(self.host, self.port, self._password, self.data_dir))
        return ProcessSpec(
            name=name,
            command=(server, str(config)),
            log_file=self.log_file,
            stop_signal=signal.SIGTERM,
            grace_s=10.0,
            ready=self.is_ready,
            startup_timeout_s=self.startup_timeout,
        )

    def is_ready(self) -> bool:
        """True once the server answers PING after AUTH with our password."""
        try:
            return ping(self.host, self.port, self._password)
        except OSError:
            return False


def render_config(host: str, port: int, password: str, data_dir: Path) -> str:
    lines = [
        f"bind {host}",
        f"port {port}",
        "protected-mode yes",
        f'requirepass "{password}"',
        f'dir "{data_dir}"',
        'logfile ""',  # stdout, which the ProcessSpec sends to redis.log
        "daemonize no",
        'save ""',
        "appendonly no",
        f"maxmemory {_MAX_MEMORY}",
        "maxmemory-policy noeviction",
    ]
    return "\n".join(lines) + "\n"


def ping(host: str, port: int, password: str, timeout: float = 1.0) -> bool:
    """AUTH then PING over RESP; True on `+OK` and `+PONG`."""
    command = b"".join(_resp(*args) for args in (("AUTH", password), ("PING",)))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command)
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    return reply.startswith(b"+OK\r\n+PONG\r\n")


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@contextlib.contextmanager
def provide_redis(password: str) -> Iterator[str]:
    """Yields a redis:// URL (with its password) for as long as the context is open: REDIS_URL if set (nothing
    is started), else a LocalRedis on a free port."""
    external = os.environ.get(REDIS_ENV)
    if external:
        yield external
    else:
        with LocalRedis(password=password) as redis:
            yield redis.url

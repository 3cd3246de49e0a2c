"""Process helpers shared by the launchers: tool checks, free ports, process specs, clean shutdown."""

from __future__ import annotations

import atexit
import ctypes
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

_PR_SET_PDEATHSIG = 1
_ERROR_MARK = re.compile(r"\b(ERROR|FATAL|PANIC)\b")


class LocalProcess:
    """A server run as a child process (`_proc`), with `start() -> Self` and `stop()`; usable as `with`."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def process_spec(self) -> ProcessSpec:
        raise NotImplementedError

    def _launch(self, what: str, log: Path, then: Callable[[], None] | None = None) -> None:
        """Spawn `process_spec()` and wait until it is ready (then run `then`); on any failure, including
        Ctrl-C, `stop()` cleans up (a temporary data directory too) and the error propagates."""
        atexit.register(self.stop)
        try:
            spec = self.process_spec()
            self._proc = spawn(spec)
            ready = spec.ready or (lambda: True)
            wait_until(ready, proc=self._proc, timeout=spec.startup_timeout_s, what=what, log=log)
            if then is not None:
                then()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start one server process, so a LocalProcess and the Supervisor launch it the same way.

    Built once per run: a restart reuses the same command line, hence the same ports and data directory.
    """

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] | None = None  # None: inherit ours
    # Where stdout+stderr go (appended); None: the supervisor prints them, prefixed with `name`.
    log_file: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    grace_s: float = 20.0  # after `stop_signal`, how long before SIGKILL
    user: str | None = None  # run as this user (postgres refuses to run as root)
    ready: Callable[[], bool] | None = field(default=None, compare=False)
    startup_timeout_s: float = 60.0


def spawn(spec: ProcessSpec, *, stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Start `spec` as the leader of a new session and process group.

    Its own group means Ctrl-C in a terminal reaches only us (we stop servers in order) and that the whole
    tree can be signalled with killpg. `stdout` overrides `spec.log_file` (e.g. subprocess.PIPE).
    """
    log = spec.log_file.open("ab") if spec.log_file is not None and stdout is None else None
    try:
        return subprocess.Popen(
            spec.command,
            env=dict(spec.env) if spec.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else stdout,
            stderr=subprocess.STDOUT,
            user=spec.user,
            start_new_session=True,
            preexec_fn=die_with_parent(spec.stop_signal),
        )
    finally:
        if log is not None:
            log.close()


class DevstackError(RuntimeError):
    """A local service could not be provided; the message says what to do about it."""


class MissingToolError(DevstackError):
    """A required executable (java, mvn) is not on PATH."""


def require_executable(name: str, install_hint: str) -> str:
    """Absolute path of `name` on PATH, or a MissingToolError that says what to install."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"`{name}` was not found on PATH. Install it, e.g.: {install_hint}")
    return path


# Ports handed out by this process: never the same one twice, though each is free again until its server binds it.
_HANDED_OUT: set[int] = set()
LOWEST_PORT = 20000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now, for a server that binds it a little later.

    Drawn below the kernel's ephemeral range: a port the kernel picks for `bind(0)` comes from the range it also
    gives outgoing connections, so between the pick and the server's bind a Kafka or Postgres client connection
    could take it ("Address already in use" in a service that starts later)."""
    ephemeral_low = _ephemeral_range_start()
    for _ in range(200):
        port = random.randrange(LOWEST_PORT, ephemeral_low)
        if port not in _HANDED_OUT and _bindable(host, port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_range_start() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default; macOS draws from 49152 up
    return max(low, LOWEST_PORT + 1000)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """preexec_fn that makes the child get `sig` when we die, so no server outlives us.

    Linux ties the parent-death signal to the spawning *thread*, so it is only safe
    from the main thread (a worker thread may exit while the server should live on).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def _set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))

    return _set_parent_death_signal


def stop_process_tree(
    proc: subprocess.Popen[bytes],
    *,
    graceful: signal.Signals = signal.SIGTERM,
    timeout: float = 20.0,
) -> None:
    """Send `graceful`, wait, then SIGKILL; also reap any children it left behind."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(graceful)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=5)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def log_excerpt(path: Path, max_errors: int = 6, last: int = 15) -> str:
    """The first error lines (each with the line after it: Java puts the cause there) and the tail.

    Servers keep logging for a while after the error that killed them, so the tail alone misses it.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"<no log at {path}>"
    errors: list[str] = []
    for index, line in enumerate(lines):
        if len(errors) >= 2 * max_errors:
            break
        if _ERROR_MARK.search(line):
            errors += lines[index : index + 2]
    parts = ["errors:", *errors, "last lines:"] if errors else []
    return "\n".join([*parts, *lines[-last:]])


def wait_until(
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes],
    timeout: float,
    what: str,
    log: Path,
) -> None:
    """Poll `ready` until it holds; fail early with the log tail if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevstackError(
                f"{what} exited with status {proc.returncode} during startup. Log {log}:\n{log_excerpt(log)}"
            )
        if ready():
            return
        time.sleep(0.2)
    raise DevstackError(f"{what} did not become ready within {timeout:.0f}s. Log {log}:\n{log_excerpt(log)}")

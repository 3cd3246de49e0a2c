"""`make run`'s process manager: start named processes, restart any that exits, stop all in reverse order.

Like a Kubernetes pod with `restartPolicy: Always`: every exit that we did not ask for is followed by a restart
after an exponential back-off (here 1 s doubling to 30 s; the kubelet uses 10 s doubling to 5 min), and a
process that stayed up `reset_after_s` starts over at the first delay. Output is prefixed and coloured like
honcho's, which has no restarts (it stops everything when one process exits).

Each process leads its own session and process group, so Ctrl-C in the terminal reaches only us and we stop
the processes in order: the last started first (the services, then Kafka, then Postgres), each with its stop
signal, then SIGKILL after its grace period, and whatever it left behind is killed too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import IO, Self, TextIO

import psutil

from ragstream_devstack.processes import DevstackError, ProcessSpec, log_excerpt, spawn

_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")  # honcho's cycle: cyan, yellow, ...
_SYSTEM = "system"
_DESCENDANTS_EVERY_S = 1.0  # how often each process tree is remembered, to clean up after a crash


@dataclass(frozen=True)
class Backoff:
    """Delay before a restart: `initial_s` doubling per consecutive exit up to `max_s`."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0  # an exit after this much uptime starts the sequence over

    def delay(self, attempt: int) -> float:
        """Delay before restart `attempt` (1-based) of an unbroken run of exits."""
        return float(min(self.initial_s * 2 ** max(attempt - 1, 0), self.max_s))


@dataclass(frozen=True)
class Exit:
    """One unexpected exit and the restart it scheduled."""

    name: str
    returncode: int | None  # negative: killed by that signal; None: could not be started
    uptime_s: float
    attempt: int
    delay_s: float
    at: float  # time.monotonic() when it was seen


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "could not be started"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class Printer:
    """`HH:MM:SS name | line`, the name coloured when writing to a terminal (as honcho prints)."""

    def __init__(self, stream: TextIO, *, width: int = 9, colour: bool | None = None) -> None:
        self._stream = stream
        self._width = width
        self._colour = stream.isatty() if colour is None else colour
        self._lock = threading.Lock()

    def write(self, name: str, text: str, colour: str = "0") -> None:
        self._width = max(self._width, len(name))
        prefix = f"{time.strftime('%H:%M:%S')} {name:<{self._width}} |"
        if self._colour:
            prefix = f"\033[{colour}m{prefix}\033[0m"
        with self._lock:
            self._stream.write(f"{prefix} {text}\n")
            self._stream.flush()


@dataclass
class _Child:
    spec: ProcessSpec
    colour: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    start_times: list[float] = field(default_factory=list)
    attempt: int = 0  # exits since the last stable run
    restart_at: float | None = None
    descendants: list[psutil.Process] = field(default_factory=list)
    descendants_at: float = 0.0


class Supervisor:
    """Owns a set of named processes until stop(); usable as `with Supervisor() as s: s.start(...); s.serve()`."""

    def __init__(self, *, backoff: Backoff | None = None, output: TextIO | None = None, poll_s: float = 0.1) -> None:
        self.backoff = backoff or Backoff()
        self.poll_s = poll_s
        self.exits: list[Exit] = []
        self._printer = Printer(output or sys.stdout)
        self._children: dict[str, _Child] = {}  # in start order
        self._stop_requested = threading.Event()
        self._saved_handlers: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, spec: ProcessSpec, *, wait_ready: bool = True) -> None:
        """Start `spec` and supervise it from now on; with a `ready` check, block until it passes.

        A process that dies before it is first ready is an error (a port in use, a broken data directory):
        restarting it would only hide that.
        """
        if spec.name in self._children:
            raise DevstackError(f"a process named {spec.name!r} is already supervised")
        child = _Child(spec, _COLOURS[len(self._children) % len(_COLOURS)])
        self._children[spec.name] = child
        self._spawn(child)
        if spec.ready is not None and wait_ready:
            self._wait_ready(child, spec.ready)

    def serve(self, until: Callable[[], bool] | None = None) -> None:
        """Watch and restart until SIGINT/SIGTERM (or request_stop(), or `until()` holds); stop() ends it all."""
        self._install_signal_handlers()
        while not self._stop_requested.is_set() and not (until is not None and until()):
            self._tick()
            self._stop_requested.wait(self.poll_s)

    def request_stop(self) -> None:
        self._stop_requested.set()

    def stop(self) -> None:
        """Stop every process, the last started first: stop signal, grace period, SIGKILL. Idempotent."""
        self._stop_requested.set()
        self._install_signal_handlers()  # a second Ctrl-C must not cut the shutdown short
        try:
            for child in reversed(self._children.values()):
                child.restart_at = None
                self._stop_child(child)
        finally:
            self._restore_signal_handlers()

    def pid(self, name: str) -> int | None:
        proc = self._children[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def restarts(self, name: str) -> int:
        return len(self._children[name].start_times) - 1

    def start_times(self, name: str) -> list[float]:
        return list(self._children[name].start_times)

    def _say(self, text: str) -> None:
        self._printer.write(_SYSTEM, text)

    def _spawn(self, child: _Child) -> None:
        stdout = None if child.spec.log_file is not None else subprocess.PIPE
        child.restart_at = None
        child.started_at = time.monotonic()
        child.start_times.append(child.started_at)
        try:
            child.proc = spawn(child.spec, stdout=stdout)
        except OSError as exc:
            self._say(f"{child.spec.name} could not be started: {exc}")
            child.proc = None
            self._schedule_restart(child, None)
            return
        child.descendants, child.descendants_at = [], 0.0
        where = f" (output: {child.spec.log_file})" if child.spec.log_file is not None else ""
        self._say(f"{child.spec.name} started with pid {child.proc.pid}{where}")
        if child.proc.stdout is not None:
            threading.Thread(
                target=self._relay, args=(child.spec.name, child.colour, child.proc.stdout), daemon=True
            ).start()

    def _relay(self, name: str, colour: str, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                self._printer.write(name, raw.decode(errors="replace").rstrip("\r\n"), colour)

    def _wait_ready(self, child: _Child, ready: Callable[[], bool]) -> None:
        spec = child.spec
        deadline = time.monotonic() + spec.startup_timeout_s
        while time.monotonic() < deadline:
            proc = child.proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise DevstackError(f"{spec.name} {describe_exit(code)} during startup.{self._log_hint(spec)}")
            if ready():
                self._say(f"{spec.name} is ready")
                return
            time.sleep(0.2)
        raise DevstackError(f"{spec.name} was not ready within {spec.startup_timeout_s:.0f}s.{self._log_hint(spec)}")

    @staticmethod
    def _log_hint(spec: ProcessSpec) -> str:
        return f" Log {spec.log_file}:\n{log_excerpt(spec.log_file)}" if spec.log_file is not None else ""

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self._children.values():
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                _kill_leftovers(proc.pid, child.descendants)
                child.proc = None
                self._schedule_restart(child, proc.returncode)
            elif proc is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
            elif proc is not None and now - child.descendants_at >= _DESCENDANTS_EVERY_S:
                child.descendants, child.descendants_at = _descendants(proc.pid), now

    def _schedule_restart(self, child: _Child, returncode: int | None) -> None:
        now = time.monotonic()
        uptime = now - child.started_at
        child.attempt = 1 if uptime >= self.backoff.reset_after_s else child.attempt + 1
        delay = self.backoff.delay(child.attempt)
        child.restart_at = now + delay
        self.exits.append(Exit(child.spec.name, returncode, uptime, child.attempt, delay, now))
        self._say(
            f"{child.spec.name} {describe_exit(returncode)} after {uptime:.1f}s;"
            f" restart attempt {child.attempt} in {delay:g}s"
        )

    def _stop_child(self, child: _Child) -> None:
        proc, spec = child.proc, child.spec
        child.proc = None
        if proc is None:
            return
        if proc.poll() is not None:
            _kill_leftovers(proc.pid, child.descendants)
            return
        descendants = _descendants(proc.pid) or child.descendants
        self._say(f"stopping {spec.name} (pid {proc.pid}, {spec.stop_signal.name})")
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(spec.stop_signal)
        try:
            proc.wait(spec.grace_s)
        except subprocess.TimeoutExpired:
            self._say(f"{spec.name} did not stop within {spec.grace_s:.0f}s; SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
        _kill_leftovers(proc.pid, descendants)
        self._say(f"{spec.name} stopped ({describe_exit(proc.returncode)})")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._saved_handlers:
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)
        self._saved_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stop_requested.is_set():
            self._say(f"{signal.Signals(signum).name} received; stopping everything")
        self._stop_requested.set()


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    return []


def _kill_leftovers(pgid: int, descendants: list[psutil.Process]) -> None:
    """SIGKILL what is left of a process's group and of the tree it had: nothing outlives its leader.

    Both, because a descendant may leave the group (postgres backends call setsid) and an orphan leaves the tree.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    alive = [process for process in descendants if process.is_running()]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)

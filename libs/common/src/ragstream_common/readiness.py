"""Readiness that follows dependencies: NOT_SERVING while one is down, SERVING again by itself once it is back.

A `DependencyProbe` runs named checks (Postgres answers `SELECT 1`, the Kafka cluster answers a metadata
request, a consumer is not stuck retrying a transient failure), each under a short timeout, every few seconds.
Its watch loop reports each change of the verdict (the service's gRPC health) and exports every verdict as
`ragstream_ready`; the gateway's /readyz reads the same results. Pure asyncio: the checks are handed in, so this
module imports no driver.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Gauge

from ragstream_common.logs import get_logger

if TYPE_CHECKING:  # the database driver is the `postgres` extra: a check over a pool needs no import of it
    from psycopg_pool import AsyncConnectionPool

log = get_logger(__name__)

# The watch loop's verdict, for the RagstreamServiceNotReady alert: a process that answers scrapes (so `up` is 1)
# but has a dependency down. 0 until the first verdict.
READY = Gauge("ragstream_ready", "1 while every dependency check of this service passes (its health SERVING), else 0")

Check = Callable[[], Awaitable[bool]]
OnChange = Callable[[bool], Awaitable[None]]


class RetryingConsumer(Protocol):
    """What readiness needs of a consumer (`ragstream_common.kafka.EventConsumer`)."""

    def transient_failure_s(self) -> float: ...


class DependencyProbe:
    """Named dependency checks, run together; a check that raises or outlasts `timeout_s` failed."""

    def __init__(self, checks: Mapping[str, Check] | None = None, *, interval_s: float = 3.0, timeout_s: float = 2.0):
        self._checks = dict(checks or {})
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._results: dict[str, bool] = {}
        self._checked_at = -math.inf
        self._ready: bool | None = None

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def check_now(self) -> dict[str, bool]:
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._passes(name) for name in names))
        self._results = dict(zip(names, outcomes, strict=True))
        self._checked_at = time.monotonic()
        return dict(self._results)

    async def checks(self) -> dict[str, bool]:
        """The latest results (the gateway's readiness port); checked afresh when they are stale, e.g. when
        no watch loop runs."""
        if time.monotonic() - self._checked_at > 2 * self.interval_s:
            return await self.check_now()
        return dict(self._results)

    async def step(self, on_change: OnChange) -> bool:
        """Check once; call `on_change(ready)` the first time and whenever the verdict flips."""
        results = await self.check_now()
        ready = all(results.values())
        READY.set(1 if ready else 0)
        if ready != self._ready:
            failing = sorted(name for name, ok in results.items() if not ok)
            (log.info if ready else log.warning)("readiness changed", ready=ready, failing=failing)
            await on_change(ready)
            self._ready = ready
        return ready

    async def watch(self, on_change: OnChange, first_delay_s: float = 0.0) -> None:
        """`step` every `interval_s`, the first after `first_delay_s`, until cancelled."""
        await asyncio.sleep(first_delay_s)
        while True:
            await self.step(on_change)
            await asyncio.sleep(self.interval_s)

    async def _passes(self, name: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._checks[name]()
        except Exception as exc:  # down, refused, timed out: all mean "not ready"
            log.debug("dependency check failed", check=name, error=repr(exc))
            return False


def postgres_answers(pool: AsyncConnectionPool, timeout_s: float = 2.0) -> Check:
    """The database answers `SELECT 1` through the service's own pool."""

    async def check() -> bool:
        async with pool.connection(timeout=timeout_s) as connection:
            await connection.execute("SELECT 1")
        return True

    return check


def consumer_keeps_up(consumer: RetryingConsumer, max_failing_s: float = 10.0) -> Check:
    """The consumer has not been retrying a transient failure for longer than `max_failing_s`."""

    async def check() -> bool:
        return consumer.transient_failure_s() <= max_failing_s

    return check

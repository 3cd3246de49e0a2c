"""DependencyProbe: verdicts, flips, timeouts and the stuck-consumer check, over plain async checks."""

from __future__ import annotations

import asyncio

import pytest
from ragstream_common.readiness import DependencyProbe, consumer_keeps_up

pytestmark = pytest.mark.unit


class Switch:
    def __init__(self) -> None:
        self.up = True

    async def check(self) -> bool:
        if not self.up:
            raise ConnectionRefusedError("down")
        return True


class Consumer:
    def __init__(self, failing_s: float) -> None:
        self.failing_s = failing_s

    def transient_failure_s(self) -> float:
        return self.failing_s


async def test_step_reports_the_first_verdict_and_every_flip_only() -> None:
    database = Switch()
    probe = DependencyProbe({"database": database.check, "kafka": Switch().check})
    seen: list[bool] = []

    async def record(ready: bool) -> None:
        seen.append(ready)

    assert await probe.step(record) is True
    await probe.step(record)
    database.up = False
    assert await probe.step(record) is False
    await probe.step(record)
    assert await probe.checks() == {"database": False, "kafka": True}
    database.up = True
    await probe.step(record)
    assert seen == [True, False, True]


async def test_a_check_that_hangs_fails_after_the_timeout() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    probe = DependencyProbe({"kafka": hangs}, timeout_s=0.05)
    async with asyncio.timeout(2):
        assert await probe.check_now() == {"kafka": False}


async def test_checks_are_run_afresh_when_no_watch_keeps_them_fresh() -> None:
    database = Switch()
    probe = DependencyProbe({"database": database.check}, interval_s=0.01)
    assert await probe.checks() == {"database": True}
    database.up = False
    await asyncio.sleep(0.05)
    assert await probe.checks() == {"database": False}


async def test_watch_follows_the_dependency() -> None:
    database = Switch()
    probe = DependencyProbe({"database": database.check}, interval_s=0.01)
    seen: list[bool] = []

    async def record(ready: bool) -> None:
        seen.append(ready)

    watch = asyncio.ensure_future(probe.watch(record))
    try:
        async with asyncio.timeout(2):
            while seen != [True]:
                await asyncio.sleep(0.01)
            database.up = False
            while seen != [True, False]:
                await asyncio.sleep(0.01)
            database.up = True
            while seen != [True, False, True]:
                await asyncio.sleep(0.01)
    finally:
        watch.cancel()


async def test_a_consumer_stuck_on_a_transient_failure_is_not_ready() -> None:
    assert await consumer_keeps_up(Consumer(0.0), max_failing_s=10)()
    assert await consumer_keeps_up(Consumer(9.5), max_failing_s=10)()
    assert not await consumer_keeps_up(Consumer(10.5), max_failing_s=10)()

"""A periodic loop's pause ends at its interval, or at once when the service is stopping."""

from __future__ import annotations

import asyncio
import time

import pytest
from ragstream_common.lifecycle import sleep_or_stop

pytestmark = pytest.mark.unit


async def test_the_pause_lasts_its_interval_while_the_service_runs() -> None:
    started = time.monotonic()
    assert await sleep_or_stop(asyncio.Event(), 0.05) is False
    assert time.monotonic() - started >= 0.045


async def test_a_stop_ends_the_pause_at_once() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    started = time.monotonic()
    assert await sleep_or_stop(stop, 30) is True
    assert time.monotonic() - started < 5

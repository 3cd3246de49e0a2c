"""Process lifecycle: SIGTERM/SIGINT stop consuming, finish and commit in-flight work, then exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from ragstream_common.logs import get_logger

log = get_logger(__name__)

ServiceBody = Callable[[AsyncExitStack, asyncio.Event], Awaitable[list[Awaitable[None]]]]


async def run_until_stopped(body: ServiceBody, grace_s: float = 20.0) -> None:
    """Run a service: `body` starts resources on the exit stack and returns its long-running loops.

    On a signal the stop event is set; loops get `grace_s` to finish their batch and commit, then the exit
    stack closes everything in reverse order of start.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        loops = [asyncio.ensure_future(work) for work in await body(stack, stop)]
        log.info("service started")
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                log.error("loop crashed", error=repr(task.exception()))
                stop.set()
        stop.set()
        log.info("stopping: draining in-flight work")
        _, pending = await asyncio.wait(loops, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stopped.cancel()
        crashed = [t for t in loops if t.done() and not t.cancelled() and t.exception() is not None]
    log.info("service stopped")
    if crashed:
        raise SystemExit(1)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """A periodic loop's pause: `seconds`, or less when `stop` is set meanwhile; whether the loop should end."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()

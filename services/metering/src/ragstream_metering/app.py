"""Metering worker composition root: Postgres pool, the faust app run inside this asyncio loop, the flush timer,
gRPC health, /metrics (run_service) with the consumer lag and DLQ depth every consumer reports, like every other
worker.

faust runs as a service of our loop (`await app.start()`), not under `faust worker`: the process keeps the
platform's settings, logs, traces, health and SIGTERM handling, and health follows faust's state.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import faust
from ragstream_common.kafka.topics import USAGE
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger
from ragstream_common.service import dependency_probe, open_pool, run_service, serve_while_ready, start_grpc

from ragstream_metering import metrics
from ragstream_metering.adapters.usage_pg import PostgresUsageWriter
from ragstream_metering.config import MeteringSettings
from ragstream_metering.kafka_metrics import report_dlq_depth_until, report_lag_every
from ragstream_metering.stream import UsageMeter, build_app

log = get_logger(__name__)


async def start(settings: MeteringSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    pool = await open_pool(stack, settings, max_size=2)
    app = build_app(settings)
    meter = UsageMeter(
        app,
        PostgresUsageWriter(pool),
        settings.window_expires_s,
        batch_max=settings.batch_max,
        batch_window_s=settings.batch_window_s,
    )
    server = await start_grpc(stack, settings, [], [])
    # Nothing in faust's data directory outlives the process (the tables are in memory): removed after faust
    # stopped, so that restarts do not pile up directories (a SIGKILLed process leaves its one behind). Only a
    # directory this process creates: a METERING_DATA_DIR that already exists is not ours to delete.
    if not settings.data_dir.exists():
        stack.callback(shutil.rmtree, settings.data_dir, ignore_errors=True)
    await app.start()
    stack.push_async_callback(app.stop)
    probe = await dependency_probe(stack, settings, pool)
    probe.add("faust", _faust_running(app))
    await serve_while_ready(stack, server, probe)
    return [
        flush_every(meter, settings.flush_interval_s, stop),
        _watch_faust(app, stop),
        report_lag_every(meter.positions, stop),
        report_dlq_depth_until(settings.kafka, USAGE.name, stop),
    ]


async def flush_every(meter: UsageMeter, interval_s: float, stop: asyncio.Event) -> None:
    """Flush changed windows every `interval_s` and once more on the way out; a failed flush (Postgres away) is
    retried at the next tick, since the windows still hold the facts."""
    while not stop.is_set():
        await sleep_or_stop(stop, interval_s)
        try:
            await meter.flush()
        except Exception as exc:  # any failure is retried: the windows still hold the facts
            metrics.FLUSH_FAILURES.inc()
            log.warning("flush failed, retrying at the next tick", error=repr(exc))


def _faust_running(app: faust.App) -> Callable[[], Awaitable[bool]]:
    async def running() -> bool:
        return bool(app.started) and not app.should_stop and not app.crashed

    return running


async def _watch_faust(app: faust.App, stop: asyncio.Event) -> None:
    """End the process (non-zero) when faust stops by itself (a crashed agent): the orchestrator restarts it."""
    while not stop.is_set():
        if app.crashed or app.should_stop:
            raise RuntimeError(f"faust app stopped: {app.crash_reason!r}")
        await sleep_or_stop(stop, 1.0)


def main() -> None:
    run_service(MeteringSettings, start)


if __name__ == "__main__":
    main()

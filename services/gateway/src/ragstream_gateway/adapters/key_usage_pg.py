"""`last_used_at` of API keys without a write per request.

A request only notes its key in memory; a key is queued at most once per `interval_s` (60 s) per gateway, and a
background flush sends the queue every `flush_s` through `ragstream_touch_api_keys` (migration 0006), which
writes a row only when its stored time is over a minute old: a key used on every replica costs its row one write a
minute. `last_used_at` is therefore accurate to about a minute, which is what listings need.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AsyncExitStack

from psycopg_pool import AsyncConnectionPool
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

log = get_logger(__name__)
_TOUCH = "SELECT ragstream_touch_api_keys(%s)"
_BATCH = 1000  # the function takes at most this many ids per call


class PostgresKeyUsage:
    """The `KeyUsage` port over the gateway's own pool."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        interval_s: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._noted: OrderedDict[str, float] = OrderedDict()
        self._pending: set[str] = set()

    def note(self, key_id: str) -> None:
        now = self._clock()
        last = self._noted.get(key_id)
        if last is not None and now - last < self._interval_s:
            return
        self._noted[key_id] = now
        self._noted.move_to_end(key_id)
        while len(self._noted) > self._max_keys:
            self._noted.popitem(last=False)
        self._pending.add(key_id)

    async def flush(self) -> int:
        """Write the queued keys; how many rows changed. A failed write is retried at the next flush."""
        if not self._pending:
            return 0
        pending, self._pending = sorted(self._pending), set()
        written = 0
        try:
            async with self._pool.connection() as connection:
                for start in range(0, len(pending), _BATCH):
                    cursor = await connection.execute(_TOUCH, (pending[start : start + _BATCH],))
                    row = await cursor.fetchone()
                    written += int(row[0]) if row else 0
        except Exception as exc:
            log.warning("key last-use write failed; retrying later", error=repr(exc), keys=len(pending))
            self._pending.update(pending)
        return written

    async def run(self, stop: asyncio.Event, flush_s: float) -> None:
        while not stop.is_set():
            await sleep_or_stop(stop, flush_s)
            await self.flush()


async def start_key_usage(
    stack: AsyncExitStack, pool: AsyncConnectionPool, *, flush_s: float = 5.0
) -> PostgresKeyUsage:
    """The recorder, flushing until `stack` closes (then once more)."""
    usage = PostgresKeyUsage(pool)
    stop = asyncio.Event()
    task = asyncio.ensure_future(usage.run(stop, flush_s))

    async def close() -> None:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 5)

    # Registered after the pool, so it runs before the pool closes.
    stack.push_async_callback(close)
    return usage

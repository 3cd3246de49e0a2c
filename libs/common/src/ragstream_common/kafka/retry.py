"""Waiting out a failure without leaving the consumer group: backoff, paused partitions, keep-alive polls.

While a batch waits for its retry, its partitions are paused, so the fetcher neither buffers nor returns their
records (the position stays just past the batch, which is kept in memory), and the consumer keeps calling
`getmany` on them: such a call returns nothing but restarts aiokafka's `max_poll_interval_ms` clock, so the
member is not evicted however long the dependency stays down (heartbeats have their own task).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ragstream_common.kafka.metrics import PAUSED_PARTITIONS
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

log = get_logger(__name__)

# 2**60 * base is far above any cap; a larger power would overflow the float conversion.
_MAX_EXPONENT = 60


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter: retry n waits uniform(0, min(cap, base * 2**n)).

    Full jitter spreads the retries of many consumers hit by the same outage, so the recovering dependency is
    not met by all of them at once.
    """

    base_s: float
    cap_s: float
    # A draw from [0, 1): tests pass a fixed sequence.
    draw: Callable[[], float] = random.random
    attempt: int = 0

    def ceiling(self) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, _MAX_EXPONENT))

    def next_delay(self) -> float:
        delay = self.draw() * self.ceiling()
        self.attempt += 1
        return delay


class PartitionPause:
    """The partitions of one consumer held back while their batch waits to be retried."""

    def __init__(self, consumer: AIOKafkaConsumer, group: str, poll_every_s: float = 1.0) -> None:
        self._consumer = consumer
        self._group = group
        self._poll_every_s = poll_every_s
        self.paused: set[TopicPartition] = set()

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        new = (set(partitions) & self._consumer.assignment()) - self.paused
        if new:
            self._consumer.pause(*new)
            self.paused |= new
            PAUSED_PARTITIONS.labels(self._group).set(len(self.paused))

    def resume(self) -> None:
        # Only assigned partitions can be resumed; a revoked one lost its paused state with its assignment.
        assigned = self.paused & self._consumer.assignment()
        if assigned:
            self._consumer.resume(*assigned)
        self.paused.clear()
        PAUSED_PARTITIONS.labels(self._group).set(0)

    def forget(self, revoked: Iterable[TopicPartition]) -> None:
        self.paused -= set(revoked)
        PAUSED_PARTITIONS.labels(self._group).set(len(self.paused))

    async def sleep(self, delay_s: float, stop: asyncio.Event) -> bool:
        """Wait `delay_s` while polling the paused partitions; False when `stop` was set meanwhile. A rebalance
        that takes every paused partition ends the wait early: the batch is no longer this member's."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        held = bool(self.paused)
        while not stop.is_set():
            await self._keep_alive()
            remaining = deadline - loop.time()
            if remaining <= 0 or (held and not self.paused):
                return True
            await sleep_or_stop(stop, min(remaining, self._poll_every_s))
        return False

    async def _keep_alive(self) -> None:
        """A fetch limited to paused partitions: returns nothing, but counts as a poll."""
        polled = self.paused & self._consumer.assignment()
        if not polled:  # an empty list would mean "every partition"
            return
        try:
            fetched = await self._consumer.getmany(*polled, timeout_ms=0)
        except KafkaError as exc:
            log.warning("keep-alive poll failed", error=repr(exc))
            return
        # A rebalance that finished during the call may have handed a partition back unpaused: put what it
        # returned back, so that nothing is skipped.
        for partition, records in fetched.items():
            if records:
                self._consumer.seek(partition, records[0].offset)

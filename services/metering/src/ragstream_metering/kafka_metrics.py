"""The faust worker's Kafka metrics, under the common consumer's names and labels (ragstream_common.kafka.metrics),
so that the dashboards and alerts watching every consumer group watch `ragstream-metering` too: records in and
handled, dead letters, lag per partition of rag.usage.recorded.v1, and the depth of its DLQ.

faust's consumer runs in a thread of its own and buffers fetched records for the agent, so its fetch position
says little about what was counted: the position here is the offset past the last record the agent took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from faust.types import TP, ConsumerT
from ragstream_common.kafka.dlq_depth import report_dlq_depths
from ragstream_common.kafka.metrics import CONSUMED, DEAD_LETTERED, RECORDS, forget_lag, report_lag
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

log = get_logger(__name__)

# How often the lag is refreshed: the common consumer's LAG_REPORT_INTERVAL_S.
LAG_REPORT_INTERVAL_S = 1.0
# How often the DLQ depth is read: the common consumer's default dlq_depth_interval_s.
DLQ_DEPTH_INTERVAL_S = 30.0


class AgentPositions:
    """What `report_lag` reads for the agent's source topic: the faust consumer's assignment of it and its
    highwaters, and as position the offset past the last record the agent took from each partition (a record
    fetched but still buffered counts as lag). A partition is reported once the agent took a record of it since
    it was assigned; one revoked is forgotten, series included (its new owner reports it)."""

    def __init__(self, consumer: Callable[[], ConsumerT], topic: str, group: str) -> None:
        self._consumer = consumer  # faust creates its consumer lazily: read it when the worker runs
        self.topic, self.group = topic, group
        self._positions: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return {tp for tp in self._consumer().assignment() if tp.topic == self.topic}

    def highwater(self, tp: TP, /) -> int | None:
        """None while unknown, and for a partition a rebalance in faust's consumer thread took since the
        assignment was read (aiokafka asserts it is assigned)."""
        try:
            return self._consumer().highwater(tp)
        except (AssertionError, AttributeError, KeyError):
            return None

    async def position(self, tp: TP, /) -> int | None:
        return self._positions.get(tp)

    def received(self, tp: TP) -> None:
        RECORDS.labels(self.group, tp.topic).inc()

    def handled(self, tp: TP, offset: int, *, dead_lettered: bool = False) -> None:
        """The agent is done with the record at `offset` of `tp`: counted, seen before, or dead-lettered."""
        (DEAD_LETTERED if dead_lettered else CONSUMED).labels(tp.topic, self.group).inc()
        self._positions[tp] = max(self._positions.get(tp, 0), offset + 1)

    def revoked(self, partitions: Iterable[TP]) -> None:
        partitions = set(partitions)
        for tp in partitions:
            self._positions.pop(tp, None)
        forget_lag(self.group, partitions)

    def on_partitions_revoked(self, _app: Any, /, *revoked: Iterable[TP], **_: Any) -> None:
        """Receiver of faust's `app.on_partitions_revoked` signal (sent with the set of revoked partitions)."""
        for partitions in revoked:
            self.revoked(partitions)


async def report_lag_every(positions: AgentPositions, stop: asyncio.Event) -> None:
    """`ragstream_consumer_lag{group, topic, partition}` of the agent's partitions until `stop` is set."""
    while not stop.is_set():
        try:
            await report_lag(positions, positions.group)
        except Exception as exc:  # a metric must never take the worker down; the next round tries again
            log.warning("consumer lag not read", error=repr(exc))
        await sleep_or_stop(stop, LAG_REPORT_INTERVAL_S)


async def report_dlq_depth_until(kafka: KafkaSettings, topic: str, stop: asyncio.Event) -> None:
    """`ragstream_dlq_depth{topic="<topic>.dlq"}` every DLQ_DEPTH_INTERVAL_S until `stop` is set."""
    depths = asyncio.ensure_future(report_dlq_depths(kafka, (topic,), DLQ_DEPTH_INTERVAL_S))
    try:
        await stop.wait()
    finally:
        depths.cancel()
        with suppress(asyncio.CancelledError):
            await depths

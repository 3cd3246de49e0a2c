"""Consumer lag: highwater minus position per assigned partition, dropped when a partition is revoked."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import REGISTRY
from ragstream_common.kafka.metrics import forget_lag, partition_lag, report_lag

pytestmark = pytest.mark.unit

GROUP = "test-lag-group"


class ConsumerState:
    """What report_lag reads of an AIOKafkaConsumer: its assignment, highwaters (from fetches) and positions."""

    def __init__(self, highwaters: dict[TopicPartition, int | None], positions: dict[TopicPartition, int]) -> None:
        self._highwaters, self._positions = highwaters, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwaters[tp]

    async def position(self, tp: TopicPartition) -> int:
        if tp.partition == 3:
            raise IllegalStateError("revoked meanwhile")
        if tp not in self._positions:
            await asyncio.sleep(10)  # a partition being reset waits for the broker
        return self._positions[tp]


def lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "ragstream_consumer_lag", {"group": GROUP, "topic": topic, "partition": str(partition)}
    )


def test_partition_lag() -> None:
    assert partition_lag(120, 100) == 20
    assert partition_lag(100, 100) == 0
    assert partition_lag(100, 105) == 0  # a position past a stale highwater is no negative lag
    assert partition_lag(None, 5) is None
    assert partition_lag(5, None) is None


async def test_report_sets_known_partitions_and_skips_the_rest() -> None:
    behind, caught_up, unfetched, revoked, resetting = (TopicPartition("rag.t", p) for p in range(5))
    consumer = ConsumerState(
        {behind: 50, caught_up: 7, unfetched: None, resetting: 9, revoked: 4}, {behind: 20, caught_up: 7}
    )
    assert await report_lag(consumer, GROUP) == 2  # type: ignore[arg-type]  # its local state, no broker
    assert lag("rag.t", 0) == 30
    assert lag("rag.t", 1) == 0
    assert lag("rag.t", 2) is None
    assert lag("rag.t", 4) is None
    assert lag("rag.t", 3) is None

    forget_lag(GROUP, [behind, unfetched])
    assert lag("rag.t", 0) is None
    assert lag("rag.t", 1) == 0

"""The metering worker's Kafka metrics under the common consumer's names, labelled with its group: records in,
handled and dead-lettered from the agent under `test_context()`, and lag per partition of rag.usage.recorded.v1
from the offsets the agent took against the faust consumer's highwaters (its changelog partitions left out)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pytest
from faust.types import TP
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from rag.v1 import usage_pb2
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.metrics import report_lag
from ragstream_common.kafka.topics import USAGE
from ragstream_metering.config import MeteringSettings
from ragstream_metering.kafka_metrics import AgentPositions
from ragstream_metering.stream import UsageMeter, build_app

pytestmark = pytest.mark.unit

GROUP = "metering-kafka-unit"
CHANGELOG = f"{GROUP}-usage_windows-changelog"


class Writer:
    async def write_window(self, tenant_id: str, window_start: datetime, totals: Mapping[str, int]) -> None:
        pass


async def drop(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    pass


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"group": GROUP, **labels})


class FaustConsumer:
    """What AgentPositions reads of faust's consumer: its assignment (changelogs included) and highwaters."""

    def __init__(self, highwaters: dict[TP, int]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


async def test_the_agent_counts_records_in_handled_and_dead_lettered_under_its_group(tmp_path: Path) -> None:
    meter = UsageMeter(
        build_app(MeteringSettings(group_id=GROUP, data_dir=tmp_path)),
        Writer(),
        7200,
        dead_letters=drop,
        batch_window_s=0.01,
    )
    fact = usage_pb2.UsageRecorded(tenant_id="acme", usage_id="q1:question", quantities={"questions": 1})
    fact.occurred_at.CopyFrom(Timestamp(seconds=1_800_000_000))
    value, headers = cloudevents.encode(fact, source="ragstream/test")
    async with meter.agent.test_context() as agent:
        await agent.put(value, key=b"acme", headers=headers, partition=2)
        await agent.put(value, key=b"acme", headers=headers, partition=2)  # a duplicate is handled too
        await agent.put(b"not a usage fact", key=b"acme", headers=[], partition=2)
    topic = USAGE.name
    assert sample("ragstream_consumer_records_total", topic=topic) == 3
    assert sample("ragstream_events_consumed_total", topic=topic) == 2
    assert sample("ragstream_events_dead_lettered_total", topic=topic) == 1
    # The agent took offsets 0, 1 and 2 of partition 2: its position there is 3.
    assert await meter.positions.position(TP(topic, 2)) == 3


async def test_lag_is_highwater_minus_the_offset_past_the_last_record_taken() -> None:
    usage = {p: TP(USAGE.name, p) for p in range(3)}
    consumer = FaustConsumer({usage[0]: 100, usage[1]: 50, usage[2]: 8, TP(CHANGELOG, 0): 999})
    positions = AgentPositions(lambda: consumer, USAGE.name, GROUP)  # type: ignore[arg-type,return-value]
    positions.handled(usage[0], 39)
    positions.handled(usage[1], 49)
    positions.handled(usage[1], 10)  # an earlier offset handled late does not move the position back
    assert positions.assignment() == set(usage.values())  # the changelog is faust's, not lag of this group
    assert await report_lag(positions, GROUP) == 2  # partition 2: nothing taken yet, not reported

    def lag(partition: int, topic: str = USAGE.name) -> float | None:
        return sample("ragstream_consumer_lag", topic=topic, partition=str(partition))

    assert (lag(0), lag(1), lag(2), lag(0, CHANGELOG)) == (60, 0, None, None)
    positions.on_partitions_revoked(object(), {usage[0]})
    assert lag(0) is None
    assert await report_lag(positions, GROUP) == 1
    assert lag(0) is None and lag(1) == 0


class Rebalancing(FaustConsumer):
    """A consumer whose partitions a rebalance (in faust's consumer thread) takes between two reads."""

    def highwater(self, tp: TP) -> int:
        raise AssertionError("Partition is not assigned")


async def test_a_partition_taken_by_a_rebalance_meanwhile_is_skipped() -> None:
    tp = TP(USAGE.name, 5)
    positions = AgentPositions(lambda: Rebalancing({tp: 1}), USAGE.name, GROUP)  # type: ignore[arg-type,return-value]
    positions.handled(tp, 0)
    assert await report_lag(positions, GROUP) == 0

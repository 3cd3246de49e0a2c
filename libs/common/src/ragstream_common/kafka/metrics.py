"""Prometheus metrics of the Kafka adapters: consumption, lag, retries, paused partitions, dead letters, DLQ depth,
records produced.

Every `topic` label is bounded (`topic_label`): the declared topics as they are, all tenants' own topics
(`rag.tenant.<id>.*`, one set per tenant, which the gateway's intake consumer reads by pattern) as one value.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from typing import Any, Protocol

from aiokafka.errors import IllegalStateError
from prometheus_client import Counter, Gauge

from ragstream_common.kafka.acls import TENANT_TOPIC_PREFIX


def topic_label(topic: str) -> str:
    """A topic as a bounded label: the declared topics as they are, every tenant's own topics as one."""
    return f"{TENANT_TOPIC_PREFIX}*" if topic.startswith(TENANT_TOPIC_PREFIX) else topic


class TopicCounter(Counter):
    """A Counter whose `topic` label is always `topic_label(...)` of the value given, whoever increments it (the
    dead-letter sender, the faust worker), so no caller can make it unbounded."""

    def labels(self, *labelvalues: object, **labelkwargs: object) -> TopicCounter:
        if labelkwargs and "topic" in labelkwargs:
            labelkwargs["topic"] = topic_label(str(labelkwargs["topic"]))
        elif labelvalues:
            index = self._labelnames.index("topic")
            values = list(labelvalues)
            values[index] = topic_label(str(values[index]))
            labelvalues = tuple(values)
        return super().labels(*labelvalues, **labelkwargs)


CONSUMED = TopicCounter("ragstream_events_consumed_total", "Events handled", ["topic", "group"])
DEAD_LETTERED = TopicCounter("ragstream_events_dead_lettered_total", "Events sent to a DLQ", ["topic", "group"])
RETRIES = TopicCounter(
    "ragstream_consumer_retries_total",
    "Events handed to their handler again after a failure, by failure kind (transient, unclassified)",
    ["topic", "group", "kind"],
)
PAUSED_PARTITIONS = Gauge(
    "ragstream_consumer_paused_partitions", "Partitions paused while their batch waits to be retried", ["group"]
)
DLQ_DEPTH = Gauge("ragstream_dlq_depth", "Records retained in a dead-letter topic", ["topic"])
POSITION_TIMEOUT_S = 0.05
RECORDS = TopicCounter("ragstream_consumer_records_total", "Records fetched by a consumer group", ["group", "topic"])
PRODUCED = Counter(
    "ragstream_producer_records_total",
    "Records the brokers acknowledged, by topic (tenants' own topics summed as rag.tenant.*)",
    ["topic"],
)
LAG = Gauge(
    "ragstream_consumer_lag",
    "Records of an assigned partition past the consumer's position (highwater - position); tenants' own topics "
    "summed per partition number as rag.tenant.*",
    ["group", "topic", "partition"],
)


class LagSource(Protocol):
    """What `report_lag` reads of a consumer: an AIOKafkaConsumer, or the metering worker's view of its faust
    consumer (ragstream_metering.kafka_metrics). Partitions are (topic, partition) named tuples."""

    def assignment(self) -> Iterable[Any]: ...

    def highwater(self, tp: Any, /) -> int | None: ...

    async def position(self, tp: Any, /) -> int | None: ...


def count_acknowledged(topic: str, delivery: asyncio.Future[Any]) -> None:
    """Done-callback of a send's delivery future: count the record once the brokers acknowledged it."""
    if not delivery.cancelled() and delivery.exception() is None:
        PRODUCED.labels(topic_label(topic)).inc()


def partition_lag(highwater: int | None, position: int | None) -> int | None:
    """Records behind in a partition; None while either end is unknown (no fetch returned for it yet)."""
    if highwater is None or position is None:
        return None
    return max(highwater - position, 0)


async def report_lag(consumer: LagSource, group: str) -> int:
    """Set `ragstream_consumer_lag` for each assigned partition whose highwater a fetch has reported; return how
    many partitions were read.

    Reads the consumer's local state: the highwater comes with each fetch response, and `position` of a fetched
    partition returns at once. One being reset (it would wait for the broker) or revoked meanwhile is skipped.
    Position, not last offset + 1: the fetcher steps over transaction markers, so a caught-up group reads 0.
    Tenants' topics share one label, so their partitions' lags are summed per partition number.
    """
    reported = 0
    lags: dict[tuple[str, str], int] = defaultdict(int)
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_S)
        except (TimeoutError, IllegalStateError):
            continue
        lag = partition_lag(highwater, position)
        if lag is not None:
            lags[(topic_label(tp.topic), str(tp.partition))] += lag
            reported += 1
    for (topic, partition), lag in lags.items():
        LAG.labels(group, topic, partition).set(lag)
    return reported


def forget_lag(group: str, partitions: Iterable[Any]) -> None:
    """Drop the lag series of partitions this member no longer owns (their new owner reports them). A series
    summing tenants' topics goes with any of them; the next report sets it again from those still owned."""
    for tp in partitions:
        with suppress(KeyError):
            LAG.remove(group, topic_label(tp.topic), str(tp.partition))

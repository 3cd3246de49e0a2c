"""Prometheus metrics of the Kafka adapters: consumption, retries, paused partitions, dead letters, DLQ depth."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMED = Counter("ragstream_events_consumed_total", "Events handled", ["topic", "group"])
DEAD_LETTERED = Counter("ragstream_events_dead_lettered_total", "Events sent to a DLQ", ["topic", "group"])
RETRIES = Counter(
    "ragstream_consumer_retries_total",
    "Events handed to their handler again after a failure, by failure kind (transient, unclassified)",
    ["topic", "group", "kind"],
)
PAUSED_PARTITIONS = Gauge(
    "ragstream_consumer_paused_partitions", "Partitions paused while their batch waits to be retried", ["group"]
)
DLQ_DEPTH = Gauge("ragstream_dlq_depth", "Records retained in a dead-letter topic", ["topic"])

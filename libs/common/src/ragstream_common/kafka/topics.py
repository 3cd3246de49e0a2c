"""Every Kafka topic of Ragstream, declared once: name, partitions, retention, cleanup and event types.

Names follow `rag.<context>.<event>.v1`. Dead-letter topics are `<topic>.dlq`. Broker auto-create stays off;
`python -m ragstream_common.kafka.bootstrap` creates these idempotently. Each tenant's own topics
(`rag.tenant.<id>.*`, kafka/tenant_topics.py) are created when the tenant is provisioned, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 24 * 3600 * 1000
LARGE_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    # What orders the topic's records: one document's events ("document": `<tenant>/<document>`), one query's,
    # one tenant's ("tenant": the tenant id) or one connector's ("connector": `<tenant>/<connector>`).
    partition_key: Literal["document", "query", "tenant", "connector"] = "document"
    cleanup_policy: str = "delete"
    # Fully-qualified proto names (also the CloudEvents `ce_type`) accepted on the topic.
    event_types: tuple[str, ...] = ()
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


_LARGE = {"max.message.bytes": str(LARGE_MESSAGE_BYTES)}

DOCUMENTS_RECEIVED = TopicSpec(
    "rag.documents.received.v1",
    partitions=6,
    retention_ms=7 * DAY_MS,
    event_types=("rag.v1.DocumentReceived", "rag.v1.DocumentUpdated", "rag.v1.DocumentDeleted"),
    extra_config=_LARGE,
)
CHUNKS_READY = TopicSpec(
    "rag.chunks.ready.v1",
    partitions=6,
    retention_ms=3 * DAY_MS,
    event_types=("rag.v1.ChunksReady", "rag.v1.DocumentDeleted"),
    extra_config=_LARGE,
)
CHUNKS_EMBEDDED = TopicSpec(
    "rag.chunks.embedded.v1",
    partitions=6,
    retention_ms=3 * DAY_MS,
    event_types=("rag.v1.ChunksEmbedded", "rag.v1.DocumentDeleted"),
    extra_config=_LARGE,
)
# Compacted: the latest status per document is what matters to late readers.
DOCUMENTS_STATUS = TopicSpec(
    "rag.documents.status.v1",
    partitions=3,
    retention_ms=-1,
    cleanup_policy="compact",
    event_types=(
        "rag.v1.DocumentProcessing",
        "rag.v1.DocumentIndexed",
        "rag.v1.DocumentFailed",
        "rag.v1.DocumentRemoved",
    ),
)
QUERIES_REQUESTED = TopicSpec(
    "rag.queries.requested.v1",
    partitions=6,
    retention_ms=DAY_MS,
    partition_key="query",
    event_types=("rag.v1.QueryRequested",),
)
QUERIES_EMBEDDED = TopicSpec(
    "rag.queries.embedded.v1",
    partitions=6,
    retention_ms=DAY_MS,
    partition_key="query",
    event_types=("rag.v1.QueryEmbedded",),
)
QUERIES_RETRIEVED = TopicSpec(
    "rag.queries.retrieved.v1",
    partitions=6,
    retention_ms=DAY_MS,
    partition_key="query",
    event_types=("rag.v1.QueryRetrieved",),
)
# Connector work (services/connectors): verified webhook notifications, resyncs, polls, renewals and removals,
# keyed by connector so each connector's sync runs in order on one worker.
CONNECTORS_NOTIFIED = TopicSpec(
    "rag.connectors.notified.v1",
    partitions=6,
    retention_ms=7 * DAY_MS,
    partition_key="connector",
    event_types=("rag.v1.ConnectorNotified",),
    extra_config=_LARGE,
)
# Usage facts for metering (services/metering; docs/observability.md): keyed by tenant, so one tenant's usage is
# aggregated by one metering instance. Kept a week: a metering outage catches up without losing a count.
USAGE = TopicSpec(
    "rag.usage.recorded.v1",
    partitions=6,
    retention_ms=7 * DAY_MS,
    partition_key="tenant",
    event_types=("rag.v1.UsageRecorded",),
)
# Answers have no internal topic: an HTTP caller's answer travels only on its live gRPC reply, and a Kafka
# caller's goes to its own tenant's `rag.tenant.<id>.answers.v1` (kafka/tenant_topics.py). The former shared
# `rag.answers.produced.v1` carried every tenant's answers to whoever could read it; it is retired.

PIPELINE_TOPICS: tuple[TopicSpec, ...] = (
    DOCUMENTS_RECEIVED,
    CHUNKS_READY,
    CHUNKS_EMBEDDED,
    DOCUMENTS_STATUS,
    QUERIES_REQUESTED,
    QUERIES_EMBEDDED,
    QUERIES_RETRIEVED,
    CONNECTORS_NOTIFIED,
    USAGE,
)


def dead_letter_spec(spec: TopicSpec) -> TopicSpec:
    """DLQs keep poison records for a month, large enough for any record of the source topic."""
    return TopicSpec(spec.dlq, partitions=1, retention_ms=30 * DAY_MS, extra_config=_LARGE)


# Which dead letters were redriven (key `<dlq topic>:<offset>`): redrives stay idempotent (ragstream_common.dlq).
# Compacted to one mark per dead letter; marks outlive their DLQ records (30 days), then go.
DLQ_REDRIVES = TopicSpec(
    "rag.dlq.redrives.v1",
    partitions=1,
    retention_ms=60 * DAY_MS,
    cleanup_policy="compact,delete",
)

# Every audit log row of the gateway, for a SIEM (docs/events.md): keyed by tenant, so each tenant's hash chain
# arrives in order. Kept a month, so a SIEM that was down catches up; the audit log stays the source of truth.
SECURITY_EVENTS = TopicSpec(
    "rag.security.events.v1",
    partitions=3,
    retention_ms=30 * DAY_MS,
    partition_key="tenant",
    event_types=("rag.v1.SecurityEvent",),
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    PIPELINE_TOPICS + tuple(dead_letter_spec(t) for t in PIPELINE_TOPICS) + (DLQ_REDRIVES, SECURITY_EVENTS)
)
TOPICS_BY_NAME = {spec.name: spec for spec in ALL_TOPICS}

"""Who may do what on Ragstream's Kafka: one SCRAM principal per service, each with exactly its topics and groups.

Service principals are `User:ragstream-<service>`. What each reads comes from the registry (its consumer groups
and their topics); what it writes is listed here and checked against the service's adapters/routes.py by
tests/unit/test_common_kafka_acls.py, which also proves the map grants nothing beyond those facts and the
explicit extras below. Every consumer dead-letters into `<topic>.dlq` of what it reads (and reads those DLQs'
sizes for `ragstream_dlq_depth`). Grants are literal, with one exception: a stream processor (faust-streaming,
STREAM_APPS) gets its own internal topics (`<app id>-...`: table changelogs, repartitions) by prefix.

Not here: each tenant's topics (`rag.tenant.<id>.*`), granted per tenant when it is provisioned
(kafka/tenant_topics.py); `ragstream-admin`, the broker's super user (local broker, setup and tests only).
DESCRIBE is granted explicitly beside READ/WRITE (Kafka implies it; MSK IAM's DescribeTopic does not).
Pure data, no I/O and no confluent-kafka import, so any service may read the names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ragstream_common.kafka.topics import (
    CHUNKS_EMBEDDED,
    CHUNKS_READY,
    CONNECTORS_NOTIFIED,
    DLQ_REDRIVES,
    DOCUMENTS_RECEIVED,
    DOCUMENTS_STATUS,
    PIPELINE_TOPICS,
    QUERIES_EMBEDDED,
    QUERIES_REQUESTED,
    QUERIES_RETRIEVED,
    SECURITY_EVENTS,
    TOPICS_BY_NAME,
    USAGE,
)
from ragstream_common.registry import SERVICES

ResourceKind = Literal["topic", "group", "cluster"]
PatternKind = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "create", "delete", "alter", "describe_configs", "alter_configs"]

CLUSTER = "kafka-cluster"  # the one name a cluster resource has
ADMIN_USER = "ragstream-admin"
PROVISIONER_USER = "ragstream-provisioner"
TENANT_TOPIC_PREFIX = "rag.tenant."


@dataclass(frozen=True)
class AclGrant:
    """One ALLOW ACL from any host: `principal` may do `operation` on the resource(s) named."""

    principal: str  # "User:ragstream-ingest"
    resource_type: ResourceKind
    name: str  # topic/group name or prefix; CLUSTER for the cluster
    pattern: PatternKind
    operation: Operation


@dataclass(frozen=True)
class ServiceAccess:
    """The internal topics and groups one service uses."""

    service: str
    groups: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


# What each service publishes on internal topics (its adapters/routes.py). Generate publishes only to tenants'
# answers topics, granted per tenant.
PRODUCES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ingest": (CHUNKS_READY.name, DOCUMENTS_STATUS.name),
        # rag.usage.recorded.v1 (every service that meters something): usage facts per tenant (docs/observability.md).
        "embed": (CHUNKS_EMBEDDED.name, QUERIES_EMBEDDED.name, USAGE.name),
        "retrieve": (DOCUMENTS_STATUS.name, QUERIES_RETRIEVED.name),
        "generate": (USAGE.name,),
        # Documents it brings in, and its own scheduler's work (polls, renewals, resyncs) onto its topic.
        "connectors": (DOCUMENTS_RECEIVED.name, CONNECTORS_NOTIFIED.name, USAGE.name),
        "metering": (),
        # rag.security.events.v1: the audit export relay (every audit row, for a SIEM; docs/events.md);
        # rag.connectors.notified.v1: verified webhook deliveries and the connector API's requests.
        "gateway": (
            DOCUMENTS_RECEIVED.name,
            QUERIES_REQUESTED.name,
            SECURITY_EVENTS.name,
            CONNECTORS_NOTIFIED.name,
            USAGE.name,
        ),
    }
)
# The gateway's admin DLQ API (docs/dlq.md) reads every declared DLQ, republishes a dead letter to the topic it
# came from and keeps the redrive ledger. (Its intake bridge's group is in the registry; the tenants' intake
# topics it reads by pattern are granted per tenant.)
_DLQ_API_READS = (*(spec.dlq for spec in PIPELINE_TOPICS), DLQ_REDRIVES.name)
_DLQ_API_WRITES = (*(spec.name for spec in PIPELINE_TOPICS), DLQ_REDRIVES.name)
EXTRA_READS: Mapping[str, tuple[str, ...]] = MappingProxyType({"gateway": _DLQ_API_READS})
EXTRA_WRITES: Mapping[str, tuple[str, ...]] = MappingProxyType({"gateway": _DLQ_API_WRITES})
# Stream processors and their faust app id, which is also their consumer group (in the registry): faust creates
# and uses internal topics named `<app id>-<table>-changelog`, `<app id>-...-repartition`, `<app id>-__assignor-...`.
STREAM_APPS: Mapping[str, str] = MappingProxyType({"metering": "ragstream-metering"})


def service_user(service: str) -> str:
    """The SCRAM user of a service, `ragstream-<service>`."""
    return f"ragstream-{service}"


def principal(user: str) -> str:
    return f"User:{user}"


def service_access(service: str) -> ServiceAccess:
    """The internal topics `service` reads (its consumer groups' and the extras) and writes (what it publishes,
    each consumed topic's DLQ, the extras), and its consumer groups."""
    spec = SERVICES[service]
    consumed = [t for group in spec.consumer_groups for t in group.topics if t in TOPICS_BY_NAME]
    groups = [group.group_id for group in spec.consumer_groups]
    reads = consumed + list(EXTRA_READS.get(service, ()))
    writes = list(PRODUCES[service]) + [TOPICS_BY_NAME[t].dlq for t in consumed] + list(EXTRA_WRITES.get(service, ()))
    return ServiceAccess(service, _unique(groups), _unique(reads), _unique(writes))


def service_grants(service: str) -> list[AclGrant]:
    """The static ACLs of `ragstream-<service>`: literal topic and group grants only."""
    access, who = service_access(service), principal(service_user(service))
    grants = [_topic(who, topic, "read") for topic in access.reads]
    grants += [_topic(who, topic, "write") for topic in access.writes]
    grants += [_topic(who, topic, "describe") for topic in _unique([*access.reads, *access.writes])]
    grants += [AclGrant(who, "group", group, "literal", "read") for group in access.groups]
    return grants


def provisioner_grants() -> list[AclGrant]:
    """`ragstream-provisioner` (the gateway's tenant admin path): create and delete tenants' topics, and manage
    SCRAM users and ACLs. ALTER on the cluster is powerful (any user, any ACL): keep its password to that path."""
    who = principal(PROVISIONER_USER)
    tenant_topics = [AclGrant(who, "topic", TENANT_TOPIC_PREFIX, "prefixed", op) for op in _PROVISIONER_TOPIC_OPS]
    return tenant_topics + [AclGrant(who, "cluster", CLUSTER, "literal", op) for op in ("alter", "describe")]


def stream_app_grants(service: str) -> list[AclGrant]:
    """A stream processor's own internal topics, by the prefix `<app id>-` (none for other services)."""
    app_id = STREAM_APPS.get(service)
    if app_id is None:
        return []
    who = principal(service_user(service))
    return [AclGrant(who, "topic", stream_topic_prefix(app_id), "prefixed", op) for op in _STREAM_TOPIC_OPS]


def stream_topic_prefix(app_id: str) -> str:
    """The prefix of every internal topic of the faust app `app_id`."""
    return f"{app_id}-"


def static_grants() -> dict[str, list[AclGrant]]:
    """{SCRAM user: its grants} for every service principal and the provisioner."""
    grants = {service_user(name): service_grants(name) + stream_app_grants(name) for name in SERVICES}
    grants[PROVISIONER_USER] = provisioner_grants()
    return grants


_PROVISIONER_TOPIC_OPS: tuple[Operation, ...] = ("create", "delete", "describe")
_STREAM_TOPIC_OPS: tuple[Operation, ...] = ("create", "read", "write", "describe")


def _topic(who: str, topic: str, operation: Operation) -> AclGrant:
    return AclGrant(who, "topic", topic, "literal", operation)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))

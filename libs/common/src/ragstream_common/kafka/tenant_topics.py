"""Each tenant's own Kafka topics, named once: intake (documents, queries), answers, and who may use them.

A tenant's external producers and consumers authenticate as `tenant-<id>` and reach only:

- `rag.tenant.<id>.documents.v1` (write): DocumentReceived, DocumentUpdated, DocumentDeleted;
- `rag.tenant.<id>.queries.v1` (write): QueryRequested;
- `rag.tenant.<id>.answers.v1` (read): AnswerProduced for the queries it asked over Kafka;
- consumer groups whose id starts with `rag.tenant.<id>:`.

The gateway's intake bridge moves intake records onto the internal topics with the tenant taken from the topic
name: only that tenant's principal may write the topic, so the topic name is the credential's scope. Records the
bridge cannot forward (undecodable, or naming another tenant) go to `<intake topic>.dlq`, which only services
can reach. Tenant ids match `^[A-Za-z0-9._-]{1,64}$`; since they may contain dots, the tenant is parsed from
between the fixed prefix and the fixed suffix, and the group prefix ends with `:`, a character no tenant id
has, so that tenant `a`'s prefix never covers the groups of tenant `a.b`.

Pure: names and grants only, no I/O and no confluent-kafka (generate imports it for its answers' topics).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from ragstream_common.kafka.acls import TENANT_TOPIC_PREFIX, AclGrant, Operation, principal, service_user
from ragstream_common.kafka.topics import (
    DAY_MS,
    DOCUMENTS_RECEIVED,
    QUERIES_REQUESTED,
    TopicSpec,
    dead_letter_spec,
)

TENANT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
# Ends a tenant's consumer group prefix: outside the tenant id alphabet, so no prefix covers another tenant.
GROUP_SEPARATOR = ":"
TENANT_USER_PREFIX = "tenant-"
GATEWAY_PRINCIPAL = principal(service_user("gateway"))
GENERATE_PRINCIPAL = principal(service_user("generate"))

IntakeKind = Literal["documents", "queries"]
# What the intake bridge subscribes to (aiokafka matches it from the start of each topic name).
INTAKE_PATTERN = r"^rag\.tenant\.[A-Za-z0-9._-]{1,64}\.(documents|queries)\.v1$"
_INTAKE = re.compile(r"rag\.tenant\.(?P<tenant>[A-Za-z0-9._-]{1,64})\.(?P<kind>documents|queries)\.v1")
_TENANT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class TenantTopics:
    """The topic names of one tenant."""

    tenant_id: str
    documents: str
    queries: str
    answers: str

    @property
    def dead_letters(self) -> tuple[str, str]:
        """The intake topics' DLQs (the bridge's dead letters), readable by services only."""
        return (f"{self.documents}.dlq", f"{self.queries}.dlq")

    @property
    def all(self) -> tuple[str, ...]:
        return (self.documents, self.queries, self.answers, *self.dead_letters)


@dataclass(frozen=True)
class IntakeTopic:
    """What an intake topic's name says: whose it is and which events it carries."""

    tenant_id: str
    kind: IntakeKind


def check_tenant_id(tenant_id: str) -> str:
    """`tenant_id` when it is a valid tenant id; ValueError otherwise (topic and principal names embed it)."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise ValueError(f"not a tenant id: {tenant_id!r} (expected {TENANT_ID_PATTERN})")
    return tenant_id


def tenant_topics(tenant_id: str) -> TenantTopics:
    base = f"{TENANT_TOPIC_PREFIX}{check_tenant_id(tenant_id)}"
    return TenantTopics(tenant_id, f"{base}.documents.v1", f"{base}.queries.v1", f"{base}.answers.v1")


def intake_topic(topic: str) -> IntakeTopic | None:
    """The tenant and kind of an intake topic name; None for any other topic (its DLQ and answers included)."""
    match = _INTAKE.fullmatch(topic)
    if match is None:
        return None
    kind: IntakeKind = "documents" if match["kind"] == "documents" else "queries"
    return IntakeTopic(match["tenant"], kind)


def tenant_user(tenant_id: str) -> str:
    """The tenant's SCRAM user name."""
    return f"{TENANT_USER_PREFIX}{check_tenant_id(tenant_id)}"


def tenant_principal(tenant_id: str) -> str:
    return principal(tenant_user(tenant_id))


def group_prefix(tenant_id: str) -> str:
    """Every consumer group the tenant may use starts with this (e.g. `rag.tenant.acme:crm-sync`)."""
    return f"{TENANT_TOPIC_PREFIX}{check_tenant_id(tenant_id)}{GROUP_SEPARATOR}"


def tenant_topic_specs(tenant_id: str) -> tuple[TopicSpec, ...]:
    """The topics provisioning creates: partitions and retention like their internal counterparts."""
    names = tenant_topics(tenant_id)
    documents = replace(DOCUMENTS_RECEIVED, name=names.documents)
    queries = replace(QUERIES_REQUESTED, name=names.queries)
    return (documents, queries, answers_spec(tenant_id), dead_letter_spec(documents), dead_letter_spec(queries))


def answers_spec(tenant_id: str) -> TopicSpec:
    """Where generate publishes the answers to the tenant's Kafka queries, keyed by query id."""
    return TopicSpec(
        tenant_topics(tenant_id).answers,
        partitions=6,
        retention_ms=7 * DAY_MS,
        partition_key="query",
        event_types=("rag.v1.AnswerProduced",),
    )


def tenant_grants(tenant_id: str) -> list[AclGrant]:
    """The tenant principal's ACLs: write its intake topics, read its answers, use its own consumer groups."""
    names, principal = tenant_topics(tenant_id), tenant_principal(tenant_id)
    return [
        *_literal(principal, names.documents, "write", "describe"),
        *_literal(principal, names.queries, "write", "describe"),
        *_literal(principal, names.answers, "read", "describe"),
        _grant(principal, "group", group_prefix(tenant_id), "prefixed", "read"),
    ]


def service_grants(tenant_id: str) -> list[AclGrant]:
    """Per-tenant ACLs of the service principals: the gateway's intake bridge reads the intake topics and
    dead-letters into their DLQs; generate writes the answers topic."""
    names = tenant_topics(tenant_id)
    documents_dlq, queries_dlq = names.dead_letters
    return [
        *_literal(GATEWAY_PRINCIPAL, names.documents, "read", "describe"),
        *_literal(GATEWAY_PRINCIPAL, names.queries, "read", "describe"),
        *_literal(GATEWAY_PRINCIPAL, documents_dlq, "write", "describe"),
        *_literal(GATEWAY_PRINCIPAL, queries_dlq, "write", "describe"),
        *_literal(GENERATE_PRINCIPAL, names.answers, "write", "describe"),
    ]


def topic_collision(tenant_id: str, existing: Iterable[str]) -> str | None:
    """An existing topic that Kafka would refuse the tenant's topics beside, or None.

    Kafka refuses a topic whose name equals an existing one once '.' and '_' are treated alike (their metric
    names would clash), so tenants `a.b` and `a_b` cannot both have topics.
    """
    wanted = {_metric_name(name): name for name in tenant_topics(tenant_id).all}
    for topic in existing:
        clash = wanted.get(_metric_name(topic))
        if clash is not None and clash != topic:
            return topic
    return None


def _metric_name(topic: str) -> str:
    return topic.replace(".", "_")


def _literal(principal: str, topic: str, *operations: Operation) -> list[AclGrant]:
    return [_grant(principal, "topic", topic, "literal", operation) for operation in operations]


def _grant(
    principal: str,
    resource_type: Literal["topic", "group"],
    name: str,
    pattern: Literal["literal", "prefixed"],
    operation: Operation,
) -> AclGrant:
    return AclGrant(principal, resource_type, name, pattern, operation)

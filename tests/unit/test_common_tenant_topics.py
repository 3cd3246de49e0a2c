"""Tenant topic names, parsing a tenant back out of them (dotted ids included), the intake pattern, the group
prefix that never covers another tenant, topic-name collisions, and the per-tenant ACL grants."""

from __future__ import annotations

import re

import pytest
from ragstream_common.kafka.acls import AclGrant
from ragstream_common.kafka.tenant_topics import (
    INTAKE_PATTERN,
    IntakeTopic,
    answers_spec,
    check_tenant_id,
    group_prefix,
    intake_topic,
    service_grants,
    tenant_grants,
    tenant_principal,
    tenant_topic_specs,
    tenant_topics,
    tenant_user,
    topic_collision,
)
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, QUERIES_REQUESTED, TOPICS_BY_NAME
from ragstream_common.registry import SERVICES

pytestmark = pytest.mark.unit
TRICKY_IDS = ["a", "a.b", "acme.documents.v1", "x.queries", "a..b", "-._", "Z" * 64]


def test_names_of_a_tenants_topics_principal_and_groups() -> None:
    names = tenant_topics("acme")
    assert (names.documents, names.queries, names.answers) == (
        "rag.tenant.acme.documents.v1",
        "rag.tenant.acme.queries.v1",
        "rag.tenant.acme.answers.v1",
    )
    assert names.dead_letters == ("rag.tenant.acme.documents.v1.dlq", "rag.tenant.acme.queries.v1.dlq")
    assert tenant_user("acme") == "tenant-acme" and tenant_principal("acme") == "User:tenant-acme"
    assert group_prefix("acme") == "rag.tenant.acme:"


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "ä", "a:b", "Z" * 65, "a\n"])
def test_only_valid_tenant_ids_make_names(bad: str) -> None:
    with pytest.raises(ValueError, match="not a tenant id"):
        check_tenant_id(bad)
    with pytest.raises(ValueError):
        tenant_topics(bad)


@pytest.mark.parametrize("tenant", TRICKY_IDS)
def test_the_tenant_is_parsed_back_from_the_fixed_suffix_even_with_dots(tenant: str) -> None:
    names = tenant_topics(tenant)
    assert intake_topic(names.documents) == IntakeTopic(tenant, "documents")
    assert intake_topic(names.queries) == IntakeTopic(tenant, "queries")
    # Answers and dead letters are not intake topics, however the tenant id looks.
    assert intake_topic(names.answers) is None
    assert all(intake_topic(dlq) is None for dlq in names.dead_letters)


@pytest.mark.parametrize(
    "topic",
    [
        "rag.documents.received.v1",
        "rag.queries.requested.v1",
        "rag.tenant..documents.v1",
        "rag.tenant.a/b.documents.v1",
        "rag.tenant.a.documents.v2",
        "rag.tenant.a.documents.v1.dlq",
        "xrag.tenant.a.documents.v1",
        f"rag.tenant.{'Z' * 65}.queries.v1",
    ],
)
def test_other_topics_are_not_intake_topics(topic: str) -> None:
    assert intake_topic(topic) is None
    assert re.match(INTAKE_PATTERN, topic) is None


def test_the_bridge_pattern_matches_exactly_the_intake_topics() -> None:
    pattern = re.compile(INTAKE_PATTERN)
    for tenant in TRICKY_IDS:
        names = tenant_topics(tenant)
        assert {t for t in names.all if pattern.match(t)} == {names.documents, names.queries}
    assert not [name for name in TOPICS_BY_NAME if pattern.match(name)]
    # The registry declares the bridge's group with this very pattern.
    [group] = [g for g in SERVICES["gateway"].consumer_groups if g.topic_pattern]
    assert (group.group_id, group.topic_pattern, group.topics) == ("ragstream-gateway-intake", INTAKE_PATTERN, ())


def test_no_tenants_group_prefix_covers_another_tenants_groups() -> None:
    # With a '.' ending the prefix, tenant `a` would own every group of tenant `a.b`; ':' is no tenant id's.
    for owner in TRICKY_IDS:
        for other in TRICKY_IDS:
            if other != owner:
                assert not f"{group_prefix(other)}consumer".startswith(group_prefix(owner)), (owner, other)


def test_topics_are_specified_like_their_internal_counterparts() -> None:
    specs = {spec.name: spec for spec in tenant_topic_specs("acme")}
    assert set(specs) == set(tenant_topics("acme").all)
    documents = specs["rag.tenant.acme.documents.v1"]
    assert (documents.partitions, documents.config(), documents.event_types) == (
        DOCUMENTS_RECEIVED.partitions,
        DOCUMENTS_RECEIVED.config(),
        DOCUMENTS_RECEIVED.event_types,
    )
    queries = specs["rag.tenant.acme.queries.v1"]
    assert (queries.partitions, queries.config(), queries.partition_key) == (
        QUERIES_REQUESTED.partitions,
        QUERIES_REQUESTED.config(),
        "query",
    )
    answers = answers_spec("acme")
    assert specs[answers.name] == answers
    assert (answers.partition_key, answers.event_types) == ("query", ("rag.v1.AnswerProduced",))
    assert all(specs[dlq].partitions == 1 for dlq in tenant_topics("acme").dead_letters)


def test_a_tenant_whose_topics_kafka_would_refuse_is_found_before_anything_is_created() -> None:
    existing = ["rag.documents.received.v1", *tenant_topics("a.b").all]
    # '.' and '_' make the same metric name: Kafka refuses the second of two such topics.
    assert topic_collision("a_b", existing) == "rag.tenant.a.b.documents.v1"
    assert topic_collision("a.b", existing) is None  # its own topics (provisioning again)
    assert topic_collision("a", existing) is None
    assert topic_collision("rag", ["rag_tenant_rag_answers_v1"]) == "rag_tenant_rag_answers_v1"


def _grants(grants: list[AclGrant]) -> set[tuple[str, str, str, str, str]]:
    return {(g.principal, g.resource_type, g.name, g.pattern, g.operation) for g in grants}


def test_the_tenant_principal_writes_its_intake_reads_its_answers_and_uses_its_groups_only() -> None:
    principal, t = "User:tenant-a.b", "rag.tenant.a.b"
    assert _grants(tenant_grants("a.b")) == {
        (principal, "topic", f"{t}.documents.v1", "literal", "write"),
        (principal, "topic", f"{t}.documents.v1", "literal", "describe"),
        (principal, "topic", f"{t}.queries.v1", "literal", "write"),
        (principal, "topic", f"{t}.queries.v1", "literal", "describe"),
        (principal, "topic", f"{t}.answers.v1", "literal", "read"),
        (principal, "topic", f"{t}.answers.v1", "literal", "describe"),
        (principal, "group", f"{t}:", "prefixed", "read"),
    }


def test_services_get_only_what_the_bridge_and_generate_need_on_a_tenants_topics() -> None:
    t = "rag.tenant.acme"
    gateway, generate = "User:ragstream-gateway", "User:ragstream-generate"
    assert _grants(service_grants("acme")) == {
        (gateway, "topic", f"{t}.documents.v1", "literal", "read"),
        (gateway, "topic", f"{t}.documents.v1", "literal", "describe"),
        (gateway, "topic", f"{t}.queries.v1", "literal", "read"),
        (gateway, "topic", f"{t}.queries.v1", "literal", "describe"),
        (gateway, "topic", f"{t}.documents.v1.dlq", "literal", "write"),
        (gateway, "topic", f"{t}.documents.v1.dlq", "literal", "describe"),
        (gateway, "topic", f"{t}.queries.v1.dlq", "literal", "write"),
        (gateway, "topic", f"{t}.queries.v1.dlq", "literal", "describe"),
        (generate, "topic", f"{t}.answers.v1", "literal", "write"),
        (generate, "topic", f"{t}.answers.v1", "literal", "describe"),
    }

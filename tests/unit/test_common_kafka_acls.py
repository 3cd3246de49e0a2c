"""The static Kafka ACL map (kafka/acls.py) against the facts in code: registry consumer groups and topics,
each service's adapters/routes.py, the DLQ conventions. It must cover everything and grant nothing more."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from google.protobuf.message import Message
from ragstream_common.kafka.acls import (
    ADMIN_USER,
    EXTRA_READS,
    EXTRA_WRITES,
    PRODUCES,
    PROVISIONER_USER,
    STREAM_APPS,
    TENANT_TOPIC_PREFIX,
    AclGrant,
    provisioner_grants,
    service_grants,
    service_user,
    static_grants,
    stream_app_grants,
)
from ragstream_common.kafka.tenant_topics import TENANT_TOPIC_PREFIX as TENANT_TOPICS_PREFIX
from ragstream_common.kafka.topics import (
    CHUNKS_EMBEDDED,
    CHUNKS_READY,
    DLQ_REDRIVES,
    DOCUMENTS_RECEIVED,
    DOCUMENTS_STATUS,
    PIPELINE_TOPICS,
    QUERIES_RETRIEVED,
    TOPICS_BY_NAME,
    TopicSpec,
)
from ragstream_common.registry import SERVICE_NAMES, SERVICES

pytestmark = pytest.mark.unit


def _routes_modules(service: str) -> ModuleType:
    return importlib.import_module(f"ragstream_{service}.adapters.routes")


def _routed_topics(service: str) -> tuple[set[str], set[str]]:
    """(internal topics, per-tenant topics) the service's routes send messages to."""
    internal, tenant = set(), set()
    for value in vars(_routes_modules(service)).values():
        if not isinstance(value, dict) or not value or not all(isinstance(k, type) for k in value):
            continue
        for message_type, route in value.items():
            assert issubclass(message_type, Message)
            if isinstance(route, TopicSpec):
                internal.add(route.name)
                continue
            message = message_type()
            if "tenant_id" in message.DESCRIPTOR.fields_by_name:
                message.tenant_id = "acme"
            tenant.add(route(message).name)
    return internal, tenant


def _consumed(service: str) -> set[str]:
    return {t for group in SERVICES[service].consumer_groups for t in group.topics if t in TOPICS_BY_NAME}


def _ops(grants: list[AclGrant], operation: str, resource: str = "topic") -> set[str]:
    return {g.name for g in grants if g.operation == operation and g.resource_type == resource}


def test_every_registered_service_has_an_entry() -> None:
    assert set(PRODUCES) == set(SERVICE_NAMES)
    assert set(static_grants()) == {*(service_user(s) for s in SERVICE_NAMES), PROVISIONER_USER}
    assert ADMIN_USER not in static_grants()  # the super user needs no ACLs, and gets none


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_what_a_service_publishes_is_what_its_routes_say(service: str) -> None:
    internal, tenant = _routed_topics(service)
    assert set(PRODUCES[service]) == internal
    # Anything else it publishes is a tenant's own topic, granted when that tenant is provisioned.
    assert all(topic.startswith(TENANT_TOPIC_PREFIX) for topic in tenant)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_grants_are_exactly_the_facts_plus_the_listed_extras(service: str) -> None:
    grants = service_grants(service)
    consumed = _consumed(service)
    reads = consumed | set(EXTRA_READS.get(service, ()))
    writes = set(PRODUCES[service]) | {f"{t}.dlq" for t in consumed} | set(EXTRA_WRITES.get(service, ()))
    groups = {g.group_id for g in SERVICES[service].consumer_groups}

    assert _ops(grants, "read") == reads
    assert _ops(grants, "write") == writes
    assert _ops(grants, "describe") == reads | writes
    assert _ops(grants, "read", "group") == groups
    assert {g.operation for g in grants} <= {"read", "write", "describe"}
    assert {g.resource_type for g in grants} <= {"topic", "group"}
    assert len(grants) == len(set(grants))


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_grants_are_literal_declared_topics_of_their_own_principal(service: str) -> None:
    for grant in service_grants(service):
        assert grant.principal == f"User:ragstream-{service}"
        assert grant.pattern == "literal"
        assert "*" not in grant.name
        if grant.resource_type == "topic":
            assert grant.name in TOPICS_BY_NAME, grant


def test_the_only_extras_are_the_gateway_dlq_api_and_its_groups_are_registered() -> None:
    from ragstream_gateway.config import GatewaySettings

    assert set(EXTRA_READS) == set(EXTRA_WRITES) == {"gateway"}
    assert set(EXTRA_READS["gateway"]) == {*(t.dlq for t in PIPELINE_TOPICS), DLQ_REDRIVES.name}
    assert set(EXTRA_WRITES["gateway"]) == {*(t.name for t in PIPELINE_TOPICS), DLQ_REDRIVES.name}
    fields = GatewaySettings.model_fields
    registry_groups = {g.group_id for g in SERVICES["gateway"].consumer_groups}
    defaults = {fields[f"{name}_group_id"].default for name in ("status", "registry", "intake")}
    assert defaults <= registry_groups


def test_least_privilege_examples() -> None:
    generate, embed, ingest = service_grants("generate"), service_grants("embed"), service_grants("ingest")
    assert DOCUMENTS_RECEIVED.name not in _ops(generate, "read") | _ops(generate, "describe")
    assert DOCUMENTS_STATUS.name not in _ops(embed, "write")
    assert QUERIES_RETRIEVED.name not in _ops(ingest, "read")
    # Topics carrying chunk text: read only by the services that process them (and the DLQ API's DLQs).
    readers = {
        user
        for user, grants in static_grants().items()
        for g in grants
        if g.operation == "read" and g.name in (CHUNKS_READY.name, CHUNKS_EMBEDDED.name, QUERIES_RETRIEVED.name)
    }
    assert readers == {"ragstream-embed", "ragstream-retrieve", "ragstream-generate"}


def test_the_provisioner_manages_tenant_topics_users_and_acls_only() -> None:
    assert TENANT_TOPIC_PREFIX == TENANT_TOPICS_PREFIX
    who = f"User:{PROVISIONER_USER}"
    assert set(provisioner_grants()) == {
        AclGrant(who, "topic", "rag.tenant.", "prefixed", "create"),
        AclGrant(who, "topic", "rag.tenant.", "prefixed", "delete"),
        AclGrant(who, "topic", "rag.tenant.", "prefixed", "describe"),
        AclGrant(who, "cluster", "kafka-cluster", "literal", "alter"),
        AclGrant(who, "cluster", "kafka-cluster", "literal", "describe"),
    }


def test_a_stream_processor_alone_gets_its_own_internal_topics_by_prefix() -> None:
    """faust creates and uses `<app id>-...` topics (changelogs, repartitions); its app id is its group."""
    from ragstream_metering.config import MeteringSettings

    app_id = STREAM_APPS["metering"]
    assert set(STREAM_APPS) == {"metering"}
    assert app_id == MeteringSettings.model_fields["group_id"].default
    assert app_id in {group.group_id for group in SERVICES["metering"].consumer_groups}
    who = "User:ragstream-metering"
    ops = ("create", "read", "write", "describe")
    assert set(stream_app_grants("metering")) == {AclGrant(who, "topic", f"{app_id}-", "prefixed", op) for op in ops}
    assert set(static_grants()["ragstream-metering"]) == {*service_grants("metering"), *stream_app_grants("metering")}
    assert all(stream_app_grants(service) == [] for service in SERVICE_NAMES if service != "metering")
    # The prefix reaches none of the declared topics, nor any other service's group.
    assert not any(name.startswith(f"{app_id}-") for name in TOPICS_BY_NAME)

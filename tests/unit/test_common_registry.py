"""ragstream_common.registry: consistent, immutable, and what the Python code of every service reads."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import tomllib
from pathlib import Path

import pytest
from rag.v1 import services_pb2
from ragstream_common import healthcheck, registry
from ragstream_common.kafka.tenant_topics import INTAKE_PATTERN
from ragstream_common.kafka.topics import PIPELINE_TOPICS
from ragstream_common.registry import SERVICE_NAMES, SERVICES, ServiceSpec, service_spec
from ragstream_devstack.system import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, SystemPorts

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SPECS = list(SERVICES.values())
COMMON_DEPENDENCY = re.compile(r"ragstream-common(?:\[(?P<extras>[a-z0-9,\s-]+)\])?")


def by_name(spec: ServiceSpec) -> str:
    return spec.name


def test_names_are_lowercase_identifiers_in_start_order() -> None:
    assert SERVICE_NAMES == ("ingest", "embed", "retrieve", "generate", "connectors", "metering", "gateway")
    for spec in SPECS:
        assert re.fullmatch(r"[a-z]+", spec.name)
        assert (spec.package, spec.distribution, spec.env_prefix) == (
            f"ragstream_{spec.name}",
            f"ragstream-{spec.name}",
            f"{spec.name.upper()}_",
        )


def test_no_two_listeners_share_a_port() -> None:
    listeners = [port for s in SPECS for port in {s.grpc_port, s.metrics_port, s.http_port} if port is not None]
    assert len(listeners) == len(set(listeners))
    assert all(0 < port < 65536 for port in listeners)


def test_only_the_gateway_serves_http_and_never_metrics_there() -> None:
    assert [s.name for s in SPECS if s.http_port is not None] == ["gateway"]
    gateway = SERVICES["gateway"]
    assert gateway.http_port == registry.GATEWAY_HTTP_PORT
    assert gateway.metrics_port == registry.GATEWAY_METRICS_PORT != gateway.http_port
    assert all(s.has_metrics_listener for s in SPECS)


def test_registry_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SERVICES["embed"].grpc_port = 1  # type: ignore[misc]  # the point: frozen
    with pytest.raises(TypeError):
        SERVICES["new"] = SERVICES["embed"]  # type: ignore[index]  # the point: read-only mapping


def test_registry_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names) | {"__future__"}


def test_unknown_service_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown service 'ingset'; registered services: ingest, embed"):
        service_spec("ingset")
    assert service_spec("embed") is SERVICES["embed"]


def test_healthcheck_rejects_unregistered_services_and_bad_usage() -> None:
    with pytest.raises(SystemExit, match="unknown service 'os'"):
        healthcheck.settings_class("os")
    with pytest.raises(SystemExit, match=re.escape("usage: python -m ragstream_common.healthcheck <service>")):
        healthcheck.main([])


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_settings_defaults_come_from_the_registry(spec: ServiceSpec) -> None:
    # model_construct: the class defaults, whatever <SERVICE>_* variables this process happens to have.
    defaults = healthcheck.settings_class(spec.name).model_construct().model_dump()
    assert defaults["service_name"] == spec.name
    assert defaults["grpc_port"] == spec.grpc_port
    if spec.has_metrics_listener:
        assert defaults["metrics_port"] == spec.metrics_port
    if spec.http_port is not None:
        assert defaults["port"] == spec.http_port


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_consumer_groups_match_settings_and_declared_topics(spec: ServiceSpec) -> None:
    fields = healthcheck.settings_class(spec.name).model_fields
    group_defaults = {f.default for name, f in fields.items() if name == "group_id" or name.endswith("_group_id")}
    assert group_defaults == {group.group_id for group in spec.consumer_groups}
    declared = {topic.name for topic in PIPELINE_TOPICS}
    for group in spec.consumer_groups:
        assert (group.topics or group.topic_pattern) and set(group.topics) <= declared, group
        # The one pattern group reads the tenants' intake topics (kafka/tenant_topics.py keeps the original).
        assert group.topic_pattern in ("", INTAKE_PATTERN), group


def test_consumer_group_ids_are_unique() -> None:
    ids = [group.group_id for spec in SPECS for group in spec.consumer_groups]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_grpc_services_are_declared_in_the_contracts(spec: ServiceSpec) -> None:
    declared = {service.full_name for service in services_pb2.DESCRIPTOR.services_by_name.values()}
    assert set(spec.grpc_services) <= declared


def test_every_contract_service_has_one_server() -> None:
    served = [name for spec in SPECS for name in spec.grpc_services]
    declared = [service.full_name for service in services_pb2.DESCRIPTOR.services_by_name.values()]
    assert sorted(served) == sorted(declared)


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_common_extras_match_the_service_pyproject(spec: ServiceSpec) -> None:
    project = tomllib.loads((ROOT / "services" / spec.name / "pyproject.toml").read_text())["project"]
    (dependency,) = [m for d in project["dependencies"] if (m := COMMON_DEPENDENCY.fullmatch(d))]
    extras = {e.strip() for e in (dependency["extras"] or "").split(",") if e.strip()}
    assert extras == spec.common_extras
    assert spec.needs_postgres == ("postgres" in extras) and spec.needs_s3 == ("s3" in extras)


def test_devstack_ports_are_the_registry_ports() -> None:
    assert DEFAULT_GRPC_PORTS == {s.name: s.grpc_port for s in SPECS}
    assert DEFAULT_METRICS_PORTS == {s.name: s.metrics_port for s in SPECS}
    ports = SystemPorts.free()
    assert set(ports.grpc) == set(SERVICE_NAMES) and set(ports.metrics) == set(DEFAULT_METRICS_PORTS)

"""docker-compose.yml: valid against the Compose Specification and wired as docs/deployment.md says."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES, SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# grpc and metrics ports of the workers, from the registry (the gateway, with its HTTP port too, is tested apart).
WORKER_PORTS = {s.name: (s.grpc_port, s.metrics_port) for s in SERVICES.values() if s.http_port is None}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    # The compose-spec schema as vendored (from SchemaStore) by the pinned check-jsonschema package. Read as a
    # file, without importing the package: its CLI needs a newer click than faust-streaming allows.
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    text = (package / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
    schema = json.loads(text)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return validator_cls(schema)


@pytest.mark.parametrize(
    "document", ["docker-compose.yml", "docker-compose.tls.yml", "docker-compose.observability.yml"]
)
def test_compose_files_match_the_compose_spec(document: str, compose_validator: jsonschema.protocols.Validator) -> None:
    loaded = yaml.safe_load((ROOT / document).read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in compose_validator.iter_errors(loaded)]
    assert errors == []


def test_schema_rejects_unknown_service_keys(
    compose: dict[str, Any], compose_validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    assert not compose_validator.is_valid(broken)


def test_infrastructure_images_are_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg")
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:1.")


def test_kafka_runs_the_rendered_server_properties(compose: dict[str, Any]) -> None:
    # The settings themselves (KRaft, SASL, ACLs, no auto-creation) are checked in test_infra_compose_trust.py.
    kafka = compose["services"]["kafka"]
    assert kafka["command"][:2] == ["bash", "-c"]
    assert "kafka-server-start.sh /run/secrets/kafka-server-properties" in kafka["command"][-1]
    assert kafka["hostname"] == "kafka"


def test_jaeger_accepts_otlp_and_serves_its_ui(compose: dict[str, Any]) -> None:
    jaeger = compose["services"]["jaeger"]
    published = {port.rsplit(":", 1)[-1] for port in jaeger["ports"]}
    assert {"16686", "4317"} <= published
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


@pytest.mark.parametrize(("one_shot", "store"), [("migrate", "postgres"), ("topics", "kafka")])
def test_one_shots_run_their_module_once_their_store_is_healthy(
    compose: dict[str, Any], one_shot: str, store: str
) -> None:
    service = compose["services"][one_shot]
    assert service["entrypoint"][:4] == ["python", "-m", "ragstream_devstack.compose_init", store]
    assert service["restart"] == "no"
    assert service["depends_on"][store]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_is_built_from_the_shared_dockerfile_for_itself(compose: dict[str, Any], name: str) -> None:
    build = compose["services"][name]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == "services/Dockerfile"
    assert (ROOT / build["dockerfile"]).is_file()
    assert build["args"]["SERVICE"] == name


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_waits_for_schema_topics_and_stores(compose: dict[str, Any], name: str) -> None:
    depends_on = compose["services"][name]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["topics"]["condition"] == "service_completed_successfully"
    assert depends_on["kafka"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_gets_platform_env_and_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = service["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # Its own DATABASE_URL (a password in it) is in its env file: test_infra_compose_trust.py.
    assert "DATABASE_URL" not in env
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert service["healthcheck"]["test"][0] == "CMD"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_runs_hardened(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["user"] == "10001:10001"


@pytest.mark.parametrize(("name", "ports"), WORKER_PORTS.items())
def test_worker_listens_on_its_conventional_ports(compose: dict[str, Any], name: str, ports: tuple[int, int]) -> None:
    env = compose["services"][name]["environment"]
    prefix = name.upper()
    assert env[f"{prefix}_GRPC_HOST"] == "0.0.0.0"
    assert (env[f"{prefix}_GRPC_PORT"], env[f"{prefix}_METRICS_PORT"]) == ports
    assert f"127.0.0.1:{ports[0]}" in compose["services"][name]["healthcheck"]["test"][-1]


def test_gateway_binds_all_interfaces_and_publishes_its_http_port(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    spec = SERVICES["gateway"]
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"
    assert gateway["environment"]["GATEWAY_PORT"] == spec.http_port
    assert gateway["environment"]["GATEWAY_GRPC_PORT"] == spec.grpc_port
    assert any(port.endswith(f"{spec.http_port}:{spec.http_port}") for port in gateway["ports"])
    assert all(gateway["depends_on"][w]["condition"] == "service_healthy" for w in WORKER_PORTS)


def test_gateway_serves_metrics_on_its_own_unpublished_port(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    spec = SERVICES["gateway"]
    assert gateway["environment"]["GATEWAY_METRICS_PORT"] == spec.metrics_port != spec.http_port
    assert gateway["build"]["args"]["SECOND_PORT"] == str(spec.metrics_port)
    assert not any(str(spec.metrics_port) in port for port in gateway["ports"])
    # Clients connect directly here: the socket peer is the client (GATEWAY_TRUSTED_PROXY_HOPS defaults to 0).
    assert "GATEWAY_TRUSTED_PROXY_HOPS" not in gateway["environment"]

"""Every place outside Python that names a service agrees with ragstream_common.registry, both ways.

docker-compose.yml, infra/k8s, infra/istio, services/<name>/ and the root pyproject.toml cannot import the
registry, so they keep their own copies of names and ports; these tests are what keeps the copies honest
(docs/adding-a-service.md lists the places).
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from ragstream_common.healthcheck import settings_class
from ragstream_common.registry import SERVICE_NAMES, SERVICES, ServiceSpec
from test_infra_istio import CALLERS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
ISTIO = ROOT / "infra" / "istio"
MESH_PRINCIPAL = "cluster.local/ns/ragstream/sa/"
NAME_LABEL = "app.kubernetes.io/name"
SPECS = list(SERVICES.values())
# Third-party workloads the Kubernetes base runs beside the services (not registered services): Redis, the
# gateway's rate limits and quotas (test_infra_redis.py).
DATA_STORES = {"redis"}


def by_name(spec: ServiceSpec) -> str:
    return spec.name


@functools.cache
def documents(directory: Path) -> tuple[dict[str, Any], ...]:
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] != "Kustomization"]
    return tuple(found)


def of_kind(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents(directory) if d["kind"] == kind}


@functools.cache
def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def long_running_images() -> dict[str, dict[str, Any]]:
    """Compose services built from services/Dockerfile that run the service itself (not a one-shot job)."""
    return {
        name: service
        for name, service in compose_services().items()
        if "build" in service and service.get("restart") != "no"
    }


def selected_name(selector: dict[str, Any]) -> str:
    """The service a selector picks by its name label (matchLabels or a bare label map)."""
    labels = selector.get("matchLabels", selector)
    return str(labels[NAME_LABEL])


def app_ports(spec: ServiceSpec) -> set[int]:
    """What callers reach: the gRPC port and, for the gateway, its HTTP API."""
    return {spec.grpc_port} | ({spec.http_port} if spec.http_port is not None else set())


# --- every registered service is wired everywhere -----------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_compose_builds_and_runs_it_on_its_ports(spec: ServiceSpec) -> None:
    service = compose_services()[spec.name]
    assert service["build"]["args"] == {
        "SERVICE": spec.name,
        "GRPC_PORT": str(spec.grpc_port),
        "SECOND_PORT": str(spec.metrics_port),
    }
    assert service["environment"][f"{spec.env_prefix}GRPC_PORT"] == spec.grpc_port
    if spec.has_metrics_listener:
        assert service["environment"][f"{spec.env_prefix}METRICS_PORT"] == spec.metrics_port


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_k8s_deployment_and_services_expose_its_ports(spec: ServiceSpec) -> None:
    deployment = of_kind(K8S / "base", "Deployment")[spec.name]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in container["ports"]} == app_ports(spec) | {spec.metrics_port}
    assert container["image"] == f"ragstream/{spec.name}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[f"{spec.env_prefix}GRPC_PORT"] == str(spec.grpc_port)
    services = [
        s for s in of_kind(K8S / "base", "Service").values() if selected_name(s["spec"]["selector"]) == spec.name
    ]
    assert spec.name in {s["metadata"]["name"] for s in services}
    assert {p["port"] for s in services for p in s["spec"]["ports"]} == app_ports(spec)


def has_callers(spec: ServiceSpec) -> bool:
    """Whether anything in the cluster calls the service's gRPC API (test_infra_istio.CALLERS, from the code)."""
    return any(CALLERS[service.removeprefix("rag.v1.")] for service in spec.grpc_services)


def called_apis(spec: ServiceSpec) -> set[str]:
    return {service for service in spec.grpc_services if CALLERS[service.removeprefix("rag.v1.")]}


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_k8s_network_policy_admits_its_callers_and_prometheus(spec: ServiceSpec) -> None:
    policies = of_kind(K8S / "base", "NetworkPolicy")
    called = app_ports(spec) if has_callers(spec) else app_ports(spec) - {spec.grpc_port}
    if called:
        policy = policies[spec.name]["spec"]
        assert selected_name(policy["podSelector"]) == spec.name
        assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == called
    scraped = policies["allow-prometheus-scrape"]["spec"]["ingress"][0]["ports"]
    assert any(p["port"] <= spec.metrics_port <= p.get("endPort", p["port"]) for p in scraped)


def kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def test_kustomize_base_and_aws_overlay_list_every_service() -> None:
    images = {f"ragstream/{name}" for name in SERVICE_NAMES}
    base = kustomization(K8S / "base")
    assert {f"{name}.yaml" for name in SERVICE_NAMES} <= set(base["resources"])
    assert {image["name"] for image in base["images"]} == images
    overlay = kustomization(K8S / "overlays" / "aws")
    assert {image["name"] for image in overlay["images"]} == images
    # IRSA: every service's ServiceAccount gets its IAM role (plus `bootstrap`, the Jobs' account).
    targeted = [p["target"] for p in overlay["patches"] if "target" in p]
    annotated = {target["name"] for target in targeted if target["kind"] == "ServiceAccount"}
    assert annotated == {*SERVICE_NAMES, "bootstrap"}


def terraform_locals(file: str, name: str) -> Any:
    with (ROOT / "infra" / "terraform" / file).open() as handle:
        parsed = hcl2.load(handle, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))
    (block,) = (b for b in parsed["locals"] if name in b)
    return block[name]


def test_terraform_has_a_repository_and_least_privilege_role_per_service() -> None:
    # `toset([...])` arrives as one interpolated string.
    assert set(re.findall(r'"([a-z]+)"', terraform_locals("main.tf", "services"))) == set(SERVICE_NAMES)
    policies = terraform_locals("iam.tf", "service_account_policies")
    assert set(policies) == {*SERVICE_NAMES, "bootstrap"}
    for spec in SPECS:
        # Blobs live in S3 in AWS: exactly the services built with the `s3` extra may touch the bucket.
        assert any("blob_read_write" in p for p in policies[spec.name]) == spec.needs_s3, spec.name


@pytest.mark.parametrize("spec", [s for s in SPECS if s.grpc_services], ids=by_name)
def test_istio_authorizes_exactly_its_grpc_services(spec: ServiceSpec) -> None:
    policies = [
        p
        for p in of_kind(ISTIO, "AuthorizationPolicy").values()
        if "selector" in p["spec"] and selected_name(p["spec"]["selector"]) == spec.name
    ]
    paths = {
        path
        for p in policies
        for rule in p["spec"]["rules"]
        for to in rule.get("to", [])
        for path in to["operation"].get("paths", [])
    }
    assert paths == {f"/{service}/*" for service in called_apis(spec)}


# The gateway's ReplyService is dialed pod by pod (headless gateway-reply), so only workers get a route.
@pytest.mark.parametrize("spec", [s for s in SPECS if s.grpc_services and s.http_port is None], ids=by_name)
def test_istio_routes_and_guards_each_grpc_backend(spec: ServiceSpec) -> None:
    host = f"{spec.name}.ragstream.svc.cluster.local"
    assert of_kind(ISTIO, "DestinationRule")[spec.name]["spec"]["host"] == host
    (route,) = of_kind(ISTIO, "VirtualService")[spec.name]["spec"]["http"]
    assert route["route"][0]["destination"] == {"host": host, "port": {"number": spec.grpc_port}}


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_service_package_has_readme_console_script_and_settings(spec: ServiceSpec) -> None:
    directory = ROOT / "services" / spec.name
    assert (directory / "README.md").is_file()
    project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    assert project["name"] == spec.distribution
    assert project["scripts"][spec.distribution] == f"{spec.package}.app:main"
    assert (directory / "src" / spec.package / "app.py").is_file()
    settings = settings_class(spec.name)()
    assert settings.service_name == spec.name and settings.grpc_port == spec.grpc_port


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_docs_state_its_ports(spec: ServiceSpec) -> None:
    """The port table of docs/deployment.md and the settings table of the service README."""
    table = (ROOT / "docs" / "deployment.md").read_text().split("## Ports and environment", 1)[1].split("\n## ")[0]
    (row,) = [line for line in table.splitlines() if line.startswith(f"| {spec.name} |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].startswith(str(spec.grpc_port)) and str(spec.metrics_port) in cells[2], row
    assert all(f"`{service}`" in row for service in spec.grpc_services if spec.http_port is None), row
    readme = (ROOT / "services" / spec.name / "README.md").read_text()
    assert f"{spec.env_prefix}GRPC_PORT" in readme and str(spec.grpc_port) in readme


@pytest.mark.parametrize("spec", SPECS, ids=by_name)
def test_root_pyproject_covers_and_lints_the_package(spec: ServiceSpec) -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = root["tool"]
    assert tool["uv"]["sources"][spec.distribution] == {"workspace": True}
    # The package, or it with extras (ragstream-embed[export]).
    assert any(d.split("[")[0] == spec.distribution for d in root["dependency-groups"]["dev"])
    assert spec.package in tool["coverage"]["run"]["source_pkgs"]
    assert spec.package in tool["importlinter"]["root_packages"]
    (settings_contract,) = [
        c for c in tool["importlinter"]["contracts"] if c["name"] == "Settings never import adapters"
    ]
    assert f"{spec.package}.config" in settings_contract["source_modules"]
    assert f"{spec.package}.adapters" in settings_contract["forbidden_modules"]


# --- nothing names a service that is not registered ----------------------------------------------------------


def test_compose_runs_only_registered_services() -> None:
    assert set(long_running_images()) == set(SERVICE_NAMES)
    built = {service["build"]["args"]["SERVICE"] for service in compose_services().values() if "build" in service}
    assert built <= set(SERVICE_NAMES)


def test_k8s_workloads_name_only_registered_services() -> None:
    base = K8S / "base"
    assert set(of_kind(base, "Deployment")) == set(SERVICE_NAMES) | DATA_STORES
    assert set(of_kind(base, "PodDisruptionBudget")) == set(SERVICE_NAMES)
    for kind in ("Service", "NetworkPolicy", "HorizontalPodAutoscaler"):
        for name, doc in of_kind(base, kind).items():
            selector = doc["spec"].get("selector") or doc["spec"].get("podSelector") or {}
            target = doc["spec"].get("scaleTargetRef", {}).get("name")
            if NAME_LABEL in selector.get("matchLabels", selector):
                assert selected_name(selector) in {*SERVICES, *DATA_STORES}, f"{kind}/{name}"
            if target is not None:
                assert target in SERVICES, f"{kind}/{name}"


def test_istio_names_only_registered_services() -> None:
    for kind in ("DestinationRule", "VirtualService"):
        for name, doc in of_kind(ISTIO, kind).items():
            hosts = [doc["spec"]["host"]] if kind == "DestinationRule" else doc["spec"]["hosts"]
            if any(h.endswith(".ragstream.svc.cluster.local") for h in hosts):
                assert name in SERVICES and hosts == [f"{name}.ragstream.svc.cluster.local"], f"{kind}/{name}"
    for name, policy in of_kind(ISTIO, "AuthorizationPolicy").items():
        if "selector" in policy["spec"]:
            assert selected_name(policy["spec"]["selector"]) in {*SERVICES, *DATA_STORES}, name
        for rule in policy["spec"].get("rules", []):
            for source in rule["from"]:
                for principal in source["source"]["principals"]:
                    if principal.startswith(MESH_PRINCIPAL):
                        assert principal.removeprefix(MESH_PRINCIPAL) in SERVICES, f"{name}: {principal}"


def test_every_service_directory_is_registered() -> None:
    assert {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")} == set(SERVICE_NAMES)

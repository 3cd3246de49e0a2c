"""infra/k8s: manifests parse, match the Kubernetes API schemas and follow the hardening rules."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES, SERVICES, ServiceSpec
from ragstream_gateway.config import GatewaySettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
MANIFEST_DIRS = (K8S, ROOT / "infra" / "istio")
KUBERNETES_VERSION = "1.33"
# Workers: the services probed over gRPC health, with a metrics listener of their own.
WORKERS = [spec for spec in SERVICES.values() if spec.http_port is None]


@functools.cache
def load_documents(*directories: Path) -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Every YAML document under `directories` (read once per run; callers must not mutate them)."""
    found: list[tuple[Path, dict[str, Any]]] = []
    for directory in directories:
        for path in sorted(directory.rglob("*.yaml")):
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return tuple(found)


def base_documents(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for p, d in load_documents(K8S / "base") if d["kind"] == kind}


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    workloads = [d for _, d in load_documents(K8S) if d["kind"] in ("Deployment", "Job")]
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in workloads]


def test_every_manifest_parses_and_names_its_resource() -> None:
    documents = load_documents(*MANIFEST_DIRS)
    assert len(documents) > 40
    for path, doc in documents:
        assert {"apiVersion", "kind"} <= doc.keys(), path
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path


def is_builtin(doc: dict[str, Any]) -> bool:
    """Kubernetes' own API groups (core, apps, networking.k8s.io, ...), not a custom resource such as AWS's
    SecurityGroupPolicy (vpcresources.k8s.aws), which kubernetes-validate has no schema for."""
    group = doc["apiVersion"].rpartition("/")[0]
    kustomize = doc["kind"] in {"Kustomization", "Component"}  # kustomize.config.k8s.io: build input, not an API
    return not kustomize and ("." not in group or group.endswith(".k8s.io"))


def test_builtin_resources_match_the_kubernetes_schema() -> None:
    builtin = [(p, d) for p, d in load_documents(K8S) if is_builtin(d)]
    # Custom resources are validated by kubeconform against the vendored CRD schemas (make check-infra); here,
    # each must at least have one.
    for _, doc in load_documents(K8S):
        if not is_builtin(doc) and doc["kind"] not in {"Kustomization", "Component"}:
            group, _, version = doc["apiVersion"].rpartition("/")
            schema = ROOT / "infra" / "schemas" / group / f"{doc['kind'].lower()}_{version}.json"
            assert schema.is_file(), f"{doc['kind']} ({doc['apiVersion']}) has no vendored schema"
    for path, doc in builtin:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


@pytest.mark.parametrize(("name", "spec"), pod_specs(), ids=[name for name, _ in pod_specs()])
def test_pods_are_hardened(name: str, spec: dict[str, Any]) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert "memory" in container["resources"]["limits"]
        image = container["image"]
        if image.startswith("ragstream/"):
            assert ":" not in image, "our tags are set by kustomize `images:`"
        else:
            assert ":" in image and not image.endswith(":latest"), "third-party images are pinned"


@pytest.mark.parametrize("spec", WORKERS, ids=lambda spec: spec.name)
def test_workers_use_grpc_probes_on_their_port(spec: ServiceSpec) -> None:
    (container,) = base_documents("Deployment")[spec.name]["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == spec.grpc_port
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[f"{spec.env_prefix}GRPC_PORT"] == str(spec.grpc_port)
    assert env[f"{spec.env_prefix}METRICS_PORT"] == str(spec.metrics_port)
    assert env[f"{spec.env_prefix}GRPC_HOST"] == "0.0.0.0"
    annotations = base_documents("Deployment")[spec.name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(spec.metrics_port)


def test_gateway_uses_http_probes_and_binds_all_interfaces() -> None:
    (container,) = base_documents("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    gateway = SERVICES["gateway"]
    assert env["GATEWAY_PORT"] == str(gateway.http_port)
    assert env["GATEWAY_GRPC_PORT"] == str(gateway.grpc_port)
    annotations = base_documents("Deployment")["gateway"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(gateway.metrics_port)


def test_gateway_serves_metrics_apart_and_judges_the_client_two_proxies_back() -> None:
    (container,) = base_documents("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    gateway = SERVICES["gateway"]
    assert env["GATEWAY_METRICS_PORT"] == str(gateway.metrics_port) != str(gateway.http_port)
    assert {"name": "metrics", "containerPort": gateway.metrics_port} in container["ports"]
    assert env["GATEWAY_DOCS_ENABLED"] == "false"
    # The AWS load balancer and the Istio ingress gateway append to X-Forwarded-For (mesh-config.yaml).
    assert env["GATEWAY_TRUSTED_PROXY_HOPS"] == "2"
    assert "GATEWAY_FORWARDED_ALLOW_IPS" not in env, "ignored since uvicorn's proxy headers are off"
    settings = GatewaySettings(
        metrics_port=env["GATEWAY_METRICS_PORT"],
        docs_enabled=env["GATEWAY_DOCS_ENABLED"],
        trusted_proxy_hops=env["GATEWAY_TRUSTED_PROXY_HOPS"],
        rate_limit_fail_open=env["GATEWAY_RATE_LIMIT_FAIL_OPEN"],
    )
    assert (settings.metrics_port, settings.docs_enabled, settings.trusted_proxy_hops) == (9100, False, 2)
    assert settings.rate_limit_fail_open is False


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_has_account_service_and_disruption_budget(name: str) -> None:
    deployment = base_documents("Deployment")[name]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in base_documents("ServiceAccount")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert base_documents("Service")[name]["spec"]["selector"] == selector
    assert base_documents("PodDisruptionBudget")[name]["spec"]["selector"]["matchLabels"] == selector
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"configMapRef": {"name": "ragstream-config"}} in env_from


def test_embed_scales_horizontally() -> None:
    (hpa,) = base_documents("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "embed"
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in base_documents("Deployment")["embed"]["spec"]


@pytest.mark.parametrize(
    ("job", "modules"),
    [
        ("migrate", ["ragstream_common.migrate", "ragstream_common.db_logins"]),
        ("topics", ["ragstream_common.kafka.bootstrap"]),
    ],
)
def test_bootstrap_jobs_run_their_modules_in_order_without_a_sidecar(job: str, modules: list[str]) -> None:
    template = base_documents("Job")[job]["spec"]["template"]
    # Init containers run one after another, each to success, before the Job's container.
    steps = [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]
    assert [step["command"] for step in steps] == [["python", "-m", module] for module in modules]
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def test_namespace_denies_ingress_by_default() -> None:
    policies = base_documents("NetworkPolicy")
    default = policies["default-deny-ingress"]["spec"]
    assert default["podSelector"] == {} and default["policyTypes"] == ["Ingress"]
    assert "ingress" not in default


KUSTOMIZATIONS = [
    "infra/k8s/base",
    "infra/k8s/overlays/aws",
    "infra/k8s/observability",
    "infra/k8s/observability/logging",
    "infra/k8s/overlays/aws-observability",
    "infra/istio",
]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_kustomizations_build(target: str) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / target)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    documents = list(yaml.safe_load_all(built))
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    assert documents and all(d["metadata"].get("namespace") for d in documents if d["kind"] not in cluster_scoped)

"""Tracing and log shipping configs: the OpenTelemetry Collector and Jaeger pipelines are wired, tail sampling keeps
errors and slow traces, Fluent Bit routes the security events apart, and the Kubernetes manifests build and validate.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import hcl2
import kubernetes_validate
import pytest
import structlog
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "infra" / "observability"
COLLECTOR_CONFIGS = [OBSERVABILITY / "otel-collector" / "compose.yaml", OBSERVABILITY / "otel-collector" / "k8s.yaml"]
FLUENT_BIT_CONFIGS = [OBSERVABILITY / "fluent-bit" / "compose.yaml", OBSERVABILITY / "fluent-bit" / "k8s.yaml"]
KUSTOMIZATIONS = ["infra/k8s/observability", "infra/k8s/overlays/aws-observability", "infra/k8s/observability/logging"]
KUBERNETES_VERSION = "1.33"
# The log events that make up the security stream, each written by a log call in the code.
SECURITY_EVENTS = [
    "api key refused",
    "admin credential refused",
    "grpc call refused",
    "reply refused",
    "connector notification refused",
    "audit write failed",
    "audit entry lost",
]
ORDINARY_EVENTS = ["answer failed", "query failed", "request failed", "api key refused twice"]


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


@functools.cache
def kustomize(target: str) -> tuple[dict[str, Any], ...]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / target)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(built) if d)


def built(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kustomize(target) if d["kind"] == kind}


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")


# ---- OpenTelemetry Collector and Jaeger v2 (the same configuration model) ----


def assert_pipelines_use_defined_components(config: dict[str, Any]) -> None:
    service = config["service"]
    assert set(service.get("extensions", [])) <= set(config.get("extensions") or {})
    assert service["pipelines"]
    for name, pipeline in service["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            used = set(pipeline.get(section, []))
            assert used <= set(config.get(section) or {}), f"{name}: {section} {used - set(config[section])}"
        assert pipeline["receivers"] and pipeline["exporters"], name


def policies(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_collector_pipeline_uses_only_defined_components(path: Path) -> None:
    config = load(path)
    assert_pipelines_use_defined_components(config)
    (traces,) = config["service"]["pipelines"].values()
    # Memory protection first, batching last: batches must hold whole sampling decisions.
    assert traces["processors"] == ["memory_limiter", "tail_sampling", "batch"]
    assert {"grpc", "http"} == set(config["receivers"]["otlp"]["protocols"])


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_tail_sampling_keeps_errors_slow_traces_and_a_share(path: Path) -> None:
    by_type = policies(load(path))
    assert by_type["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert by_type["latency"]["latency"]["threshold_ms"] > 0
    assert 0 < by_type["probabilistic"]["probabilistic"]["sampling_percentage"] <= 100


def test_production_samples_a_small_share_of_ordinary_traces() -> None:
    share = policies(load(OBSERVABILITY / "otel-collector" / "k8s.yaml"))["probabilistic"]["probabilistic"]
    assert share["sampling_percentage"] <= 10


def test_slow_traces_are_the_ones_over_the_query_latency_slo() -> None:
    recording = (OBSERVABILITY / "prometheus" / "rules" / "recording.yml").read_text()
    (slo_seconds,) = set(re.findall(r'route="/v1/query", le="([0-9.]+)"', recording))
    for path in COLLECTOR_CONFIGS:
        assert policies(load(path))["latency"]["latency"]["threshold_ms"] == float(slo_seconds) * 1000


def test_collectors_export_to_the_jaeger_of_their_environment() -> None:
    compose = load(OBSERVABILITY / "otel-collector" / "compose.yaml")["exporters"]["otlp/jaeger"]
    k8s = load(OBSERVABILITY / "otel-collector" / "k8s.yaml")["exporters"]["otlp/jaeger"]
    assert compose["endpoint"] == "jaeger:4317"
    assert k8s["endpoint"] == "jaeger-collector.observability.svc.cluster.local:4317"


@needs_kubectl
def test_the_collector_exports_to_a_service_of_the_observability_build() -> None:
    endpoint = load(OBSERVABILITY / "otel-collector" / "k8s.yaml")["exporters"]["otlp/jaeger"]["endpoint"]
    host, port = endpoint.rsplit(":", 1)
    service = built("infra/k8s/observability", "Service")[host.split(".")[0]]
    assert host.split(".")[1] == service["metadata"]["namespace"]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


@needs_kubectl
def test_production_jaeger_keeps_traces_on_its_volume() -> None:
    target = "infra/k8s/overlays/aws-observability"
    assert "jaeger" not in built(target, "Deployment"), "the in-memory all-in-one is replaced"
    jaeger = built(target, "StatefulSet")["jaeger"]
    config = yaml.safe_load(built(target, "ConfigMap")["jaeger"]["data"]["config.yaml"])
    assert_pipelines_use_defined_components(config)
    (store,) = config["extensions"]["jaeger_storage"]["backends"].values()
    assert store["badger"]["ephemeral"] is False
    (claim,) = jaeger["spec"]["volumeClaimTemplates"]
    (container,) = jaeger["spec"]["template"]["spec"]["containers"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert all(path.startswith(mount + "/") for path in store["badger"]["directories"].values())
    # The base's Services reach it: same labels, every target port named by the container.
    port_names = {p["name"] for p in container["ports"]}
    for name in ("jaeger-collector", "jaeger-query"):
        service = built(target, "Service")[name]["spec"]
        assert service["selector"].items() <= jaeger["spec"]["template"]["metadata"]["labels"].items()
        assert {p["targetPort"] for p in service["ports"]} <= port_names


# ---- Fluent Bit ----


def security_rule(config: dict[str, Any]) -> tuple[str, re.Pattern[str], str, str]:
    (rewrite,) = [f for f in config["pipeline"]["filters"] if f["name"] == "rewrite_tag"]
    _key, regex, new_tag, keep = rewrite["rule"].split(" ")
    return rewrite["match"], re.compile(regex), new_tag, keep


@functools.cache
def logged_events() -> frozenset[str]:
    """Event names of the code's log calls: `log.<level>(\n? "<event>"`."""
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    found = re.findall(
        r"log\.(?:warning|error|info|exception)\(\s*\"([^\"]+)\"", "\n".join(p.read_text() for p in sources)
    )
    return frozenset(found)


@pytest.mark.parametrize("path", FLUENT_BIT_CONFIGS, ids=lambda p: p.name)
def test_fluent_bit_copies_security_events_to_their_own_stream(path: Path) -> None:
    match, regex, new_tag, keep = security_rule(load(path))
    assert new_tag == "security.$TAG" and keep == "true"
    for event in SECURITY_EVENTS:
        assert event in logged_events(), f"no log call writes {event!r}"
        assert regex.fullmatch(event), event
    for event in ORDINARY_EVENTS:
        assert not regex.fullmatch(event), event
    outputs = load(path)["pipeline"]["outputs"]
    assert {o["match"] for o in outputs} == {match, "security.*"}


def test_the_security_stream_has_its_own_index_and_log_group() -> None:
    for path in FLUENT_BIT_CONFIGS:
        opensearch = {o["match"]: o for o in load(path)["pipeline"]["outputs"] if o["name"] == "opensearch"}
        assert opensearch["security.*"]["logstash_prefix"] == "ragstream-security"
        assert {o["logstash_prefix"] for o in opensearch.values()} == {"ragstream-logs", "ragstream-security"}
        assert all(o["logstash_format"] is True for o in opensearch.values()), "an index per day"
    cloudwatch = {
        o["match"]: o for o in load(FLUENT_BIT_CONFIGS[1])["pipeline"]["outputs"] if "cloudwatch" in o["name"]
    }
    assert cloudwatch["security.*"]["log_group_name"] == "${LOG_GROUP_PREFIX}/security"
    assert cloudwatch["kube.*"]["log_group_template"] == "${LOG_GROUP_PREFIX}/services/$service"
    assert not any(o["auto_create_group"] for o in cloudwatch.values()), "terraform owns retention and encryption"


@pytest.mark.parametrize("path", FLUENT_BIT_CONFIGS, ids=lambda p: p.name)
def test_fluent_bit_parses_our_log_lines_with_a_defined_parser(path: Path) -> None:
    config = load(path)
    parsers = {p["name"]: p for p in config["parsers"]}
    (parse,) = [f for f in config["pipeline"]["filters"] if f["name"] == "parser"]
    parser = parsers[parse["parser"]]
    assert (parse["key_name"], parser["format"], parser["time_key"]) == ("log", "json", "timestamp")
    # structlog's timestamp (ragstream_common.logs) in Fluent Bit's format (%L: fractional seconds, like %f).
    stamped = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    datetime.strptime(stamped, parser["time_format"].replace("%L", "%f"))


# ---- Kubernetes ----


def is_builtin(doc: dict[str, Any]) -> bool:
    """Kubernetes' own API groups; kubernetes-validate has no schema for custom resources (PodMonitor, ...)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@needs_kubectl
@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_observability_kustomizations_build_and_match_the_schema(target: str) -> None:
    documents = kustomize(target)
    assert all(
        d["metadata"].get("namespace")
        for d in documents
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
    )
    for doc in filter(is_builtin, documents):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


@needs_kubectl
@pytest.mark.parametrize(
    ("target", "name"),
    [("infra/k8s/observability", "otel-collector"), ("infra/k8s/observability/logging", "fluent-bit")],
)
def test_workloads_mount_their_generated_config(target: str, name: str) -> None:
    workloads = {**built(target, "Deployment"), **built(target, "DaemonSet")}
    volumes = workloads[name]["spec"]["template"]["spec"]["volumes"]
    (config_map,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    assert config_map in built(target, "ConfigMap") and config_map.startswith(f"{name}-")
    (container,) = workloads[name]["spec"]["template"]["spec"]["containers"]
    (key,) = built(target, "ConfigMap")[config_map]["data"]
    assert any(arg.endswith(f"/{key}") for arg in container["args"])


@needs_kubectl
def test_log_shipper_reads_node_logs_read_only_with_no_capabilities() -> None:
    target = "infra/k8s/observability/logging"
    namespace = built(target, "Namespace")["logging"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged", "hostPath needs it"
    pod = built(target, "DaemonSet")["fluent-bit"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"] and context["privileged"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["varlog"]["readOnly"] is True
    (rules,) = [r["rules"] for r in built(target, "ClusterRole").values()]
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in rules)


# ---- Terraform ----


def test_terraform_log_groups_match_what_the_shipper_writes() -> None:
    """Groups /<name>/services/<service>, .../unattributed and /<name>/security, encrypted, with set retention;
    LOG_GROUP_PREFIX of the shipper is /<name>."""
    tf = ROOT / "infra" / "terraform" / "observability.tf"
    with tf.open() as handle:
        parsed = hcl2.load(handle, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))
    groups: dict[str, Any] = {}
    for block in parsed["resource"]:
        groups.update(block.get("aws_cloudwatch_log_group", {}))
    assert set(groups) == {"service", "security"}
    assert groups["security"]["retention_in_days"] == "${var.security_log_retention_days}"
    assert groups["service"]["retention_in_days"] == "${var.log_retention_days}"
    assert all(group["kms_key_id"] == "${aws_kms_key.logs.arn}" for group in groups.values())
    text = tf.read_text()
    for name in (
        '"/${var.name}/services/${service}"',
        '"/${var.name}/services/unattributed"',
        '"/${var.name}/security"',
    ):
        assert name in text
    outputs = {o["match"]: o for o in load(FLUENT_BIT_CONFIGS[1])["pipeline"]["outputs"] if "cloudwatch" in o["name"]}
    assert outputs["kube.*"]["log_group_name"] == "${LOG_GROUP_PREFIX}/services/unattributed"

"""Where each EKS overlay's traces go, followed the way the cluster's DNS would: the OTLP endpoint of dev, staging and
prod names a Service of the observability build that environment runs (its overlay's comment says which), whose
pods are an OpenTelemetry Collector; the collector's trace exporter names the Jaeger behind it. Production's chain
ends at Jaeger v2 on a persistent volume and meets no all-in-one anywhere; dev's and staging's may end at the
in-memory all-in-one."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
# The observability build each environment's cluster runs, as the overlays' comments say.
OBSERVABILITY = {
    "dev": "observability",
    "staging": "observability",
    "prod": "overlays/aws-observability",
}
ALL_IN_ONE = "jaegertracing/all-in-one"


@functools.cache
def rendered(path: str) -> tuple[dict[str, Any], ...]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(built) if d)


def otlp_endpoint(overlay: str) -> str:
    (config,) = (
        d
        for d in rendered(f"overlays/{overlay}")
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("ragstream-config-")
    )
    return str(config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"])


def resolve(build: str, address: str) -> list[dict[str, Any]]:
    """The workloads behind `<service>.<namespace>.svc.cluster.local:<port>` in the build: the Service of that name,
    namespace and port, then every Deployment or StatefulSet whose pods its selector picks."""
    host, _, port = address.rpartition(":")
    service_name, namespace, *rest = host.split(".")
    assert rest == ["svc", "cluster", "local"], f"{address} is not a cluster Service's full name"
    documents = rendered(build)
    (service,) = (
        d
        for d in documents
        if d["kind"] == "Service"
        and d["metadata"]["name"] == service_name
        and d["metadata"].get("namespace") == namespace
    )
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}, f"{service_name} does not serve {port}"
    selector = service["spec"]["selector"].items()
    workloads = [
        d
        for d in documents
        if d["kind"] in ("Deployment", "StatefulSet")
        and d["metadata"].get("namespace") == namespace
        and selector <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert workloads, f"no pods behind {address} in {build}"
    return workloads


def images(workload: dict[str, Any]) -> list[str]:
    return [str(c["image"]) for c in workload["spec"]["template"]["spec"]["containers"]]


def trace_exporter_endpoints(build: str) -> list[str]:
    (config_map,) = (
        d for d in rendered(build) if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("otel-collector")
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    return [str(config["exporters"][name]["endpoint"]) for name in exporters]


@pytest.mark.parametrize("overlay", sorted(OBSERVABILITY))
def test_each_overlay_sends_traces_to_a_collector_of_its_observability_build(overlay: str) -> None:
    endpoint = urlsplit(otlp_endpoint(overlay))
    assert endpoint.scheme == "http" and endpoint.port == 4317, "OTLP over gRPC"
    build = OBSERVABILITY[overlay]
    (collector,) = resolve(build, endpoint.netloc)
    assert all("opentelemetry-collector" in image for image in images(collector)), images(collector)
    # The collector samples (tail sampling) before anything is stored: services never write to Jaeger directly.
    for address in trace_exporter_endpoints(build):
        assert all("jaeger" in image for workload in resolve(build, address) for image in images(workload))
    # The overlay says which observability build its cluster runs (the mapping above is that, not a guess).
    assert f"infra/k8s/{build}" in (K8S / "overlays" / overlay / "kustomization.yaml").read_text()


def test_production_traces_never_reach_the_all_in_one() -> None:
    build = OBSERVABILITY["prod"]
    endpoint = urlsplit(otlp_endpoint("prod")).netloc
    (collector,) = resolve(build, endpoint)
    jaegers = [w for address in trace_exporter_endpoints(build) for w in resolve(build, address)]
    assert jaegers and not any(ALL_IN_ONE in image for workload in [collector, *jaegers] for image in images(workload))
    # Jaeger v2 keeps the traces on a volume of its own.
    assert all(w["kind"] == "StatefulSet" and w["spec"]["volumeClaimTemplates"] for w in jaegers)
    # Nothing in production's observability build is the all-in-one.
    assert not any(
        ALL_IN_ONE in image
        for d in rendered(build)
        if d["kind"] in ("Deployment", "StatefulSet")
        for image in images(d)
    )
    # Whereas dev's build stores in the in-memory all-in-one: the two must never be confused.
    dev_jaegers = [w for a in trace_exporter_endpoints(OBSERVABILITY["dev"]) for w in resolve("observability", a)]
    assert any(ALL_IN_ONE in image for workload in dev_jaegers for image in images(workload))

"""infra/k8s/overlays dev, staging, prod and in-cluster: each renders, closes egress, declares its external hosts
to the mesh, pins images by digest, scales on the registry's consumer groups, grows dev < staging < prod, and
passes kubeconform -strict against Kubernetes' schemas and the vendored CRD schemas (infra/schemas)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.kafka.acls import static_grants
from ragstream_common.kafka.topics import ALL_TOPICS
from ragstream_common.registry import SERVICES

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "infra" / "k8s" / "overlays"
EKS_ENVIRONMENTS = ("dev", "staging", "prod")
ALL_OVERLAYS = (*EKS_ENVIRONMENTS, "in-cluster")
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
KUBERNETES_VERSION = "1.33.0"
# The services whose work queues on Kafka scale on consumer lag (KEDA); the others on CPU (HPA).
LAG_SCALED = ("ingest", "embed", "retrieve")
# acls.py's pattern kinds as Strimzi spells them.
STRIMZI_PATTERNS = {"literal": "literal", "prefixed": "prefix"}


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(built) if d)


def of_kind(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == kind}


def config(overlay: str) -> dict[str, str]:
    (config_map,) = (m for n, m in of_kind(overlay, "ConfigMap").items() if n.startswith("ragstream-config-"))
    return dict(config_map["data"])


def running_workload(overlay: str, service: str) -> dict[str, Any]:
    """What runs the service's pods: its Rollout under blue-green, else its Deployment."""
    return of_kind(overlay, "Rollout").get(service) or of_kind(overlay, "Deployment")[service]


def autoscaler_bounds(overlay: str, service: str) -> tuple[int, int]:
    if service in LAG_SCALED:
        scaled = of_kind(overlay, "ScaledObject")[service]["spec"]
        return scaled["minReplicaCount"], scaled["maxReplicaCount"]
    hpa = of_kind(overlay, "HorizontalPodAutoscaler")[service]["spec"]
    return hpa["minReplicas"], hpa["maxReplicas"]


def quantity(value: str | int) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_namespace_has_quota_and_default_limits(overlay: str) -> None:
    (quota,) = of_kind(overlay, "ResourceQuota").values()
    (limits,) = of_kind(overlay, "LimitRange").values()
    assert quota["metadata"]["namespace"] == limits["metadata"]["namespace"] == "ragstream"
    assert {"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods"} <= quota["spec"]["hard"].keys()
    (container,) = (limit for limit in limits["spec"]["limits"] if limit["type"] == "Container")
    assert {"default", "defaultRequest", "max"} <= container.keys()
    # Room for every service at its autoscaler's maximum.
    hard = quota["spec"]["hard"]
    for resource in ("cpu", "memory"):
        needed = 0.0
        for service in SERVICES:
            container_spec = of_kind(overlay, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
            needed += autoscaler_bounds(overlay, service)[1] * quantity(
                container_spec["resources"]["requests"][resource]
            )
        assert needed <= quantity(hard[f"requests.{resource}"]), (resource, needed)


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_egress_is_denied_by_default_and_never_open(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deny = policies["default-deny-egress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Egress"] and "egress" not in deny
    allowed: set[int] = set()
    for name, policy in policies.items():
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"{name} opens egress to anywhere on any port"
            for peer in rule["to"]:
                assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0" or peer["ipBlock"].get("except"), name
            allowed |= {port["port"] for port in rule["ports"]}
    # DNS, the gRPC APIs, the collector, HTTPS and Postgres everywhere; Kafka's SCRAM listener of the platform.
    assert {53, 50050, 4317, 443, 5432, 15012} <= allowed
    assert ({9096, 9098, 6379} if overlay in EKS_ENVIRONMENTS else {9092, 6379}) <= allowed


def test_mesh_admits_only_registered_hosts() -> None:
    mesh = yaml.safe_load((ROOT / "infra" / "istio" / "mesh-config.yaml").read_text())
    assert mesh["spec"]["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}


@pytest.mark.parametrize("overlay", EKS_ENVIRONMENTS)
def test_service_entries_cover_the_external_data_stores(overlay: str) -> None:
    entries = of_kind(overlay, "ServiceEntry")
    hosts = {host for entry in entries.values() for host in entry["spec"]["hosts"]}
    ports = {port["number"] for entry in entries.values() for port in entry["spec"]["ports"]}
    literals = config(overlay)
    brokers = {address.rsplit(":", 1)[0] for address in literals["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    assert brokers <= hosts
    assert literals["DATABASE_LOCATION"].split(":", 1)[0] in hosts
    assert f"{literals['BLOB_S3_BUCKET']}.s3.{literals['BLOB_S3_REGION']}.amazonaws.com" in hosts
    assert {
        f"kms.{literals['SECRETS_KMS_REGION']}.amazonaws.com",
        f"sts.{literals['AWS_REGION']}.amazonaws.com",
    } <= hosts
    assert any(host.endswith(".cache.amazonaws.com") for host in hosts)
    assert "llm" in entries
    assert {9096, 9098, 5432, 6379, 443} <= ports
    for entry in entries.values():
        assert entry["spec"]["location"] == "MESH_EXTERNAL" and entry["spec"]["exportTo"] == ["."]


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_service_images_are_pinned_by_digest(overlay: str) -> None:
    for service in SERVICES:
        pod = of_kind(overlay, "Deployment")[service]["spec"]["template"]["spec"]
        images = [c["image"] for c in pod["containers"]]
        assert all(re.fullmatch(rf".+/{service}@sha256:[0-9a-f]{{64}}", image) for image in images), images
        if overlay in EKS_ENVIRONMENTS:
            assert all(image.startswith("111122223333.dkr.ecr.") for image in images)
    for job in of_kind(overlay, "Job").values():
        assert all("@sha256:" in c["image"] for c in job["spec"]["template"]["spec"]["containers"])


def test_placeholder_digest_is_the_documented_one() -> None:
    for overlay in ALL_OVERLAYS:
        text = (OVERLAYS / overlay / "kustomization.yaml").read_text()
        assert set(re.findall(r"^ +digest: (\S+)", text, re.M)) == {PLACEHOLDER_DIGEST}
        assert "64 zeros" in text


def test_production_traces_go_to_the_production_collector() -> None:
    endpoint = config("prod")["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector-production.observability.svc.cluster.local:4317"
    assert "jaeger" not in endpoint and "all-in-one" not in endpoint
    # Only the production observability stack serves that collector name, and it runs no all-in-one Jaeger.
    services = of_kind("aws-observability", "Service")
    assert any(p["port"] == 4317 for p in services["otel-collector-production"]["spec"]["ports"])
    assert "otel-collector-production" not in of_kind("../observability", "Service")  # the development stack
    images = [
        c["image"]
        for d in rendered("aws-observability")
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert not any("all-in-one" in image for image in images)


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_kafka_lag_triggers_name_the_registrys_consumer_groups(overlay: str) -> None:
    scaled = of_kind(overlay, "ScaledObject")
    assert set(scaled) == set(LAG_SCALED)
    kafka_config = of_kind(overlay, "ConfigMap")["keda-kafka"]["data"]
    assert kafka_config["sasl"] == "scram_sha512"
    auth = of_kind(overlay, "TriggerAuthentication")["kafka-scram"]["spec"]
    assert {ref["parameter"] for ref in auth["secretTargetRef"]} == {"password"}
    for service in LAG_SCALED:
        triggers = scaled[service]["spec"]["triggers"]
        expected = {(g.group_id, g.topics[0]) for g in SERVICES[service].consumer_groups}
        assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == expected
        for trigger in triggers:
            assert trigger["type"] == "kafka" and int(trigger["metadata"]["lagThreshold"]) > 0
            assert trigger["authenticationRef"]["name"] == "kafka-scram"
            port = 9096 if overlay in EKS_ENVIRONMENTS else 9092
            assert all(s.endswith(f":{port}") for s in trigger["metadata"]["bootstrapServers"].split(","))
        # It scales what runs the pods, never past the topics' 6 partitions.
        target = scaled[service]["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == running_workload(overlay, service)["kind"]
        assert autoscaler_bounds(overlay, service)[1] <= 6
    assert "embed" not in of_kind(overlay, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_service_autoscales_and_has_a_disruption_budget(overlay: str) -> None:
    for service in SERVICES:
        low, high = autoscaler_bounds(overlay, service)
        assert 1 <= low < high
        assert service in of_kind(overlay, "PodDisruptionBudget")
    for hpa in of_kind(overlay, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == running_workload(overlay, target["name"])["kind"]


def test_environments_grow_from_dev_to_prod() -> None:
    for service in SERVICES:
        bounds = [autoscaler_bounds(env, service) for env in EKS_ENVIRONMENTS]
        replicas = [running_workload(env, service)["spec"]["replicas"] for env in EKS_ENVIRONMENTS]
        assert bounds[0][0] < bounds[1][0] < bounds[2][0] and replicas[0] < replicas[1] < replicas[2]
        assert bounds[0][1] < bounds[1][1] <= bounds[2][1]
        resources = [
            of_kind(env, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]["resources"]
            for env in EKS_ENVIRONMENTS
        ]
        for tier in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                values = [quantity(r[tier][resource]) for r in resources]
                assert values[0] < values[1] < values[2], (service, tier, resource, values)
    quotas = [
        quantity(next(iter(of_kind(env, "ResourceQuota").values()))["spec"]["hard"]["requests.cpu"])
        for env in EKS_ENVIRONMENTS
    ]
    assert quotas[0] < quotas[1] < quotas[2]


@pytest.mark.parametrize("overlay", ("staging", "prod"))
def test_staging_and_production_release_blue_green(overlay: str) -> None:
    rollouts = of_kind(overlay, "Rollout")
    assert set(SERVICES) <= set(rollouts)
    assert all(of_kind(overlay, "Deployment")[s]["spec"]["replicas"] == 0 for s in SERVICES)


@pytest.mark.parametrize("overlay", EKS_ENVIRONMENTS)
def test_every_secret_read_is_synced_from_secrets_manager(overlay: str) -> None:
    synced = {
        e["spec"]["target"]["name"]: {item["secretKey"] for item in e["spec"].get("data", [])}
        for e in of_kind(overlay, "ExternalSecret").values()
    }
    (store,) = of_kind(overlay, "ClusterSecretStore").values()
    assert store["spec"]["provider"]["aws"]["service"] == "SecretsManager"
    assert "serviceAccountRef" in store["spec"]["provider"]["aws"]["auth"]["jwt"]
    for external in of_kind(overlay, "ExternalSecret").values():
        assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": store["metadata"]["name"]}
    for workload in [*of_kind(overlay, "Deployment").values(), *of_kind(overlay, "Job").values()]:
        spec = workload["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in synced.get(ref["name"], set()), (workload["metadata"]["name"], ref)
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in synced
    assert "ragstream-keda" in synced


@pytest.mark.parametrize("overlay", EKS_ENVIRONMENTS)
def test_ingress_host_gets_a_certificate_where_the_gateway_reads_it(overlay: str) -> None:
    (certificate,) = of_kind(overlay, "Certificate").values()
    gateway = list(yaml.safe_load_all((ROOT / "infra" / "istio" / "ingress-gateway.yaml").read_text()))
    (server,) = (
        s
        for d in gateway
        if d["kind"] == "Gateway"
        for s in d["spec"]["servers"]
        if "tls" in s and "credentialName" in s["tls"]
    )
    assert certificate["metadata"]["namespace"] == "istio-system"
    assert certificate["spec"]["secretName"] == server["tls"]["credentialName"]
    # The HTTPS server takes any SNI (the ALB sends none); the certificate names the host the public routes serve.
    (routes,) = (d for d in gateway if d["kind"] == "VirtualService" and d["metadata"]["name"] == "gateway-public")
    assert certificate["spec"]["dnsNames"] == routes["spec"]["hosts"]
    assert certificate["spec"]["issuerRef"]["name"] in of_kind(overlay, "ClusterIssuer")


def test_in_cluster_topics_match_the_code() -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in of_kind("in-cluster", "KafkaTopic").values()}
    assert set(topics) == {spec.name for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        declared = topics[spec.name]
        assert declared["partitions"] == spec.partitions and declared["replicas"] == 3
        assert {k: str(v) for k, v in declared["config"].items() if k != "min.insync.replicas"} == spec.config()


def test_in_cluster_users_have_exactly_the_codes_acls() -> None:
    users = of_kind("in-cluster", "KafkaUser")
    for user, grants in static_grants().items():
        spec = users[user]["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        declared = {
            (
                acl["resource"]["type"],
                acl["resource"].get("name", "kafka-cluster"),
                acl["resource"].get("patternType", "literal"),
                operation,
            )
            for acl in spec["authorization"]["acls"]
            for operation in acl["operations"]
        }
        expected = {
            (g.resource_type, g.name, STRIMZI_PATTERNS[g.pattern], g.operation.title().replace("_", "")) for g in grants
        }
        assert declared == expected, user
    keda = {
        (a["resource"]["name"], tuple(a["operations"]))
        for a in users["ragstream-keda"]["spec"]["authorization"]["acls"]
    }
    assert {ops for _, ops in keda} == {("Describe",)}
    assert {g.group_id for s in LAG_SCALED for g in SERVICES[s].consumer_groups} <= {name for name, _ in keda}


def test_in_cluster_data_stores_are_replicated_and_backed_up() -> None:
    (kafka,) = of_kind("in-cluster", "Kafka").values()
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert config("in-cluster")["KAFKA_BOOTSTRAP_SERVERS"].endswith(
        f"{kafka['metadata']['name']}-kafka-bootstrap.kafka.svc.cluster.local:{listener['port']}"
    )
    pools = of_kind("in-cluster", "KafkaNodePool").values()
    assert {role for pool in pools for role in pool["spec"]["roles"]} == {"controller", "broker"}
    assert all(pool["spec"]["storage"]["volumes"][0]["type"] == "persistent-claim" for pool in pools)
    (postgres,) = of_kind("in-cluster", "Cluster").values()
    assert postgres["spec"]["instances"] == 3 and postgres["spec"]["storage"]["size"]
    assert "CREATE EXTENSION IF NOT EXISTS vector" in postgres["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert postgres["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    (backup,) = of_kind("in-cluster", "ScheduledBackup").values()
    assert backup["spec"]["cluster"]["name"] == postgres["metadata"]["name"]
    host = config("in-cluster")["DATABASE_LOCATION"].split(":", 1)[0]
    assert host == f"{postgres['metadata']['name']}-rw.postgres.svc.cluster.local"


# kubeconform --------------------------------------------------------------------------------------------------

KUBECONFORM = ROOT / ".cache" / "bin" / "kubeconform"
KUBERNETES_SCHEMAS = (
    Path(__import__("kubernetes_validate").__file__).parent
    / "kubernetes-json-schema"
    / f"v{KUBERNETES_VERSION}-local-strict"
)


def kubeconform() -> Path:
    if not KUBECONFORM.exists():
        go = shutil.which("go") or "/usr/local/go/bin/go"
        if not Path(go).exists():
            pytest.skip("kubeconform missing and no Go toolchain to install it")
        env = {**os.environ, "GOBIN": str(KUBECONFORM.parent)}
        subprocess.run(
            [go, "install", "github.com/yannh/kubeconform/cmd/kubeconform@v0.6.7"], env=env, check=True, timeout=600
        )
    return KUBECONFORM


def standalone_kubernetes_schemas(documents: tuple[dict[str, Any], ...], directory: Path) -> None:
    """kubernetes-validate's schemas point into a shared _definitions.json by absolute path, which kubeconform
    cannot follow: write each needed one standalone, with the definitions inlined."""
    definitions = json.loads((KUBERNETES_SCHEMAS / "_definitions.json").read_text())["$defs"]
    for doc in documents:
        group, _, version = doc["apiVersion"].rpartition("/")
        if "." in group and not group.endswith(".k8s.io"):
            continue
        suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
        name = f"{doc['kind'].lower()}{suffix}.json"
        if (directory / name).exists():
            continue
        text = (KUBERNETES_SCHEMAS / name).read_text().replace("/api/_definitions.json#/$defs/", "#/$defs/")
        (directory / name).write_text(json.dumps({**json.loads(text), "$defs": definitions}))


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_overlay_passes_kubeconform_strict(overlay: str, tmp_path: Path) -> None:
    documents = rendered(overlay)
    standalone_kubernetes_schemas(documents, tmp_path)
    result = subprocess.run(
        [
            str(kubeconform()),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            str(tmp_path / "{{.ResourceKind}}{{.KindSuffix}}.json"),
            "-schema-location",
            str(ROOT / "infra/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"),
            "-",
        ],
        input=yaml.safe_dump_all(documents),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, [r for r in report["resources"] if r["status"] != "statusValid"]
    assert report["summary"]["valid"] == len(documents) and report["summary"]["skipped"] == 0

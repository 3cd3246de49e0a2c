"""Redis, the gateway's shared rate limits and quotas, in every deployment layer: compose, the Kubernetes base,
Istio and Terraform (ElastiCache). Only the gateway may reach it and knows its password; it never evicts and
never persists; the gateway gets its URL from a secret and fails closed without it."""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hcl2
import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES
from ragstream_devstack import compose_secrets
from ragstream_devstack.compose_secrets import REDIS_SECRET, write_compose_secrets
from ragstream_devstack.credentials import LocalCredentials
from ragstream_gateway.ratelimit import open_storage
from test_infra_compose_trust import sourced_env
from test_infra_k8s_trust import env_of, secrets_read

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "infra" / "k8s" / "base"
TERRAFORM = ROOT / "infra" / "terraform"
REDIS_PORT = 6379
GATEWAY_PRINCIPAL = "cluster.local/ns/ragstream/sa/gateway"
# What every Redis of ours runs with besides its password: no RDB, no AOF, 256 MB, refuse writes when full.
SERVER_FLAGS = ["--save", "", "--appendonly", "no", "--maxmemory", "256mb", "--maxmemory-policy", "noeviction"]
HCL = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@functools.cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def manifests(directory: Path) -> list[dict[str, Any]]:
    return [d for path in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def base(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests(BASE) if d["kind"] == kind}


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def selects(policy: dict[str, Any], name: str) -> bool:
    return policy["spec"].get("selector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == name


def terraform_blocks(directory: Path, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle, serialization_options=HCL).get(kind, []):
                found.update(block)
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("compose") / "compose"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        write_compose_secrets(directory)
        yield directory


# --- compose -------------------------------------------------------------------------------------------------


def test_compose_redis_is_pinned_unpublished_and_hardened() -> None:
    redis = compose()["services"]["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+(-alpine)?", redis["image"])
    assert "ports" not in redis, "only the compose network may reach Redis"
    assert redis["read_only"] is True and redis["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in redis["security_opt"]
    assert not redis["user"].startswith("0")


def test_compose_redis_takes_its_password_from_a_secret_file_not_its_command_line() -> None:
    redis = compose()["services"]["redis"]
    assert redis["secrets"] == ["redis-auth"]
    assert compose()["secrets"]["redis-auth"]["file"] == "./var/compose/redis/auth.conf"
    command = redis["command"]
    assert command[:2] == ["redis-server", "/run/secrets/redis-auth"]
    assert command[2:] == SERVER_FLAGS
    assert "requirepass" not in " ".join(command)
    check = redis["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "REDISCLI_AUTH=" in check[1] and "grep -qx PONG" in check[1]


def test_compose_holders_of_the_redis_password_are_redis_and_the_gateway(generated: Path) -> None:
    password = LocalCredentials(generated / "credentials").secret(REDIS_SECRET)
    assert (generated / "redis" / "auth.conf").read_text() == f"requirepass {password}\n"
    holders = {n for n, s in compose()["services"].items() if "redis-auth" in s.get("secrets", [])}
    assert holders == {"redis"}
    for name in SERVICE_NAMES:
        text = (generated / "env" / f"{name}.env").read_text()
        assert (password in text) == (name == "gateway"), name


def test_compose_gateway_reads_the_redis_url_from_its_env_file_and_fails_closed(generated: Path) -> None:
    gateway = compose()["services"]["gateway"]
    env = gateway["environment"]
    assert "GATEWAY_RATE_LIMIT_STORAGE" not in env, "the URL holds the password: env file only"
    assert env["GATEWAY_RATE_LIMIT_FAIL_OPEN"] == "false"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    url = sourced_env(generated / "env" / "gateway.env")["GATEWAY_RATE_LIMIT_STORAGE"]
    credentials = LocalCredentials(generated / "credentials")
    assert url == compose_secrets.redis_url(credentials)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("redis", "redis", REDIS_PORT, "/0")
    assert parts.password == credentials.secret(REDIS_SECRET)
    open_storage(url)  # the gateway's own parser takes it


# --- Kubernetes and Istio ------------------------------------------------------------------------------------


def test_k8s_redis_runs_one_unpersisted_noeviction_instance() -> None:
    deployment = base("Deployment")["redis"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    container = only_container(deployment)
    assert container["image"] == compose()["services"]["redis"]["image"]
    (script,) = container["args"]
    assert container["command"] == ["/bin/sh", "-c"]
    assert shlex.split(script.split("&& exec ", 1)[1]) == ["redis-server", "/tmp/auth.conf", *SERVER_FLAGS]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all(set(v) == {"name", "emptyDir"} for v in volumes), "no persistent volume"
    assert {v["emptyDir"].get("medium") for v in volumes} == {"Memory"}


def test_k8s_redis_password_comes_from_its_own_secret_and_no_one_elses() -> None:
    container = only_container(base("Deployment")["redis"])
    ref = env_of(container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("ragstream-redis", "password") and not ref.get("optional")
    assert secrets_read(container) == {"ragstream-redis"}
    assert '"$REDIS_PASSWORD"' in container["args"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping' in container[probe]["exec"]["command"][-1]
    readers = {name for name, d in base("Deployment").items() if "ragstream-redis" in secrets_read(only_container(d))}
    assert readers == {"redis"}


def test_k8s_gateway_requires_the_redis_url_and_fails_closed() -> None:
    env = env_of(only_container(base("Deployment")["gateway"]))
    ref = env["GATEWAY_RATE_LIMIT_STORAGE"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("ragstream-gateway-credentials", "rate-limit-storage")
    assert "optional" not in ref, "per-pod memory would admit N times every limit"
    assert env["GATEWAY_RATE_LIMIT_FAIL_OPEN"]["value"] == "false"


def test_k8s_redis_service_and_network_policy_admit_only_the_gateway() -> None:
    (port,) = base("Service")["redis"]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (REDIS_PORT, "redis")
    policy = base("NetworkPolicy")["redis"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "redis"}}
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": REDIS_PORT}]
    # NetworkPolicies add up: no other one may open 6379 (the Prometheus policy selects every pod).
    other_ports = [
        port
        for name, doc in base("NetworkPolicy").items()
        if name != "redis"
        for other_rule in doc["spec"].get("ingress", [])
        for port in other_rule["ports"]
    ]
    assert not [p for p in other_ports if p["port"] <= REDIS_PORT <= p.get("endPort", p["port"])]


def test_istio_admits_only_the_gateway_to_redis() -> None:
    istio = manifests(ROOT / "infra" / "istio")
    (policy,) = [d for d in istio if d["kind"] == "AuthorizationPolicy" and selects(d, "redis")]
    (rule,) = policy["spec"]["rules"]
    assert rule["from"] == [{"source": {"principals": [GATEWAY_PRINCIPAL]}}]
    assert rule["to"] == [{"operation": {"ports": [str(REDIS_PORT)]}}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_aws_overlay_replaces_redis_with_elasticache_for_the_gateway_pods_only() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "infra" / "k8s" / "overlays" / "aws")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(built) if d]
    assert not [d for d in documents if d["metadata"]["name"] == "redis"]
    (policy,) = [d for d in documents if d["kind"] == "SecurityGroupPolicy"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}
    assert len(policy["spec"]["securityGroups"]["groupIds"]) == 2  # the nodes' and the gateway pods' own
    (gateway,) = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway"]
    assert "GATEWAY_RATE_LIMIT_STORAGE" in env_of(only_container(gateway))


# --- Terraform (ElastiCache) ---------------------------------------------------------------------------------


def test_elasticache_never_evicts_and_keeps_a_week_of_snapshots() -> None:
    module = TERRAFORM / "modules" / "redis"
    resources = terraform_blocks(module, "resource")
    group = resources["aws_elasticache_parameter_group"]["this"]
    assert {"name": "maxmemory-policy", "value": "noeviction"} in group["parameter"]
    # The family follows the engine's major version (7.1 -> redis7), so an upgrade cannot leave it behind.
    assert group["family"] == 'redis${split(".", var.engine_version)[0]}'
    replication = resources["aws_elasticache_replication_group"]["this"]
    assert replication["parameter_group_name"] == "${aws_elasticache_parameter_group.this.name}"
    # Daily quota counters survive losing both nodes; a week of snapshots, outside the maintenance window.
    assert replication["snapshot_retention_limit"] >= 7
    assert replication["snapshot_window"] != replication["maintenance_window"]
    assert "default." not in (module / "main.tf").read_text()


def test_elasticache_admits_only_the_gateway_pods() -> None:
    (call,) = [m for name, m in terraform_blocks(TERRAFORM, "module").items() if name == "redis"]
    assert call["client_security_group_ids"] == "${local.rate_limit_clients}"
    clients = terraform_blocks(TERRAFORM, "locals")["rate_limit_clients"]
    assert clients == {"gateway_pods": "${aws_security_group.gateway_pods.id}"}
    assert "gateway_pods" in terraform_blocks(TERRAFORM, "resource")["aws_security_group"]
    # Security groups for pods: the VPC CNI gives selected pods a branch ENI, the cluster role manages them.
    eks = terraform_blocks(TERRAFORM, "module")["eks"]
    cni = eks["addons"]["vpc-cni"]["configuration_values"]
    assert 'ENABLE_POD_ENI = "true"' in cni and 'DISABLE_TCP_EARLY_DEMUX = "true"' in cni
    assert "AmazonEKSVPCResourceController" in eks["iam_role_additional_policies"]
    output = terraform_blocks(TERRAFORM, "output")["gateway_pod_security_group_ids"]["value"]
    assert output == ["${module.eks.node_security_group_id}", "${aws_security_group.gateway_pods.id}"]


def test_only_the_gateway_role_reads_the_redis_url() -> None:
    with (TERRAFORM / "iam.tf").open() as handle:
        parsed = hcl2.load(handle, serialization_options=HCL)
    (policies,) = [b["service_account_policies"] for b in parsed["locals"] if "service_account_policies" in b]
    readers = {account for account, documents in policies.items() if any("rate_limit_store" in d for d in documents)}
    assert readers == {"gateway"}
    documents = {k: v for block in parsed["data"] for k, v in block.get("aws_iam_policy_document", {}).items()}
    statements = {s["sid"]: s for s in documents["rate_limit_store"]["statement"]}
    assert statements["Url"]["resources"] == ["${module.redis.url_secret_arn}"]
    assert statements["Decrypt"]["resources"] == ["${module.redis.kms_key_arn}"]

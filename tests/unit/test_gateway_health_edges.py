"""GET /v1/admin/health in Kubernetes: the gateway is told every worker's Service and admitted to its gRPC health
service (NetworkPolicy, L4) and to nothing but grpc.health.v1 Check (Istio, L7), for exactly the registry's
workers and ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.registry import SERVICES
from ragstream_gateway.service_health import ServiceHealthSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {name: spec.grpc_port for name, spec in SERVICES.items() if spec.http_port is None}
POLICY = "grpc-health-from-gateway"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def named(path: Path, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents(path) if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_the_gateway_is_given_every_workers_service() -> None:
    deployment = named(ROOT / "infra/k8s/base/gateway.yaml", "Deployment", "gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    addresses = ServiceHealthSettings(addresses=env["GATEWAY_SERVICE_HEALTH_ADDRESSES"]).addresses
    assert addresses == {name: f"{name}:{port}" for name, port in WORKERS.items()}


def test_network_policy_admits_the_gateway_to_every_workers_grpc_port() -> None:
    spec = named(ROOT / "infra/k8s/base/network-policies.yaml", "NetworkPolicy", POLICY)["spec"]
    (expression,) = spec["podSelector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/name" and set(expression["values"]) == set(WORKERS)
    (rule,) = spec["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    (ports,) = rule["ports"]
    assert (ports["port"], ports["endPort"]) == (min(WORKERS.values()), max(WORKERS.values()))


def test_istio_admits_the_gateway_to_health_checks_only() -> None:
    spec = named(ROOT / "infra/istio/authorization-policies.yaml", "AuthorizationPolicy", POLICY)["spec"]
    assert "selector" not in spec and spec["action"] == "ALLOW"
    (rule,) = spec["rules"]
    assert rule["from"] == [{"source": {"principals": ["cluster.local/ns/ragstream/sa/gateway"]}}]
    (operation,) = [to["operation"] for to in rule["to"]]
    assert operation["paths"] == ["/grpc.health.v1.Health/Check"]
    assert sorted(operation["ports"]) == sorted(str(port) for port in WORKERS.values())

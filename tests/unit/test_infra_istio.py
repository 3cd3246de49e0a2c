"""infra/istio: mTLS, circuit breaking, retries, authorization edges and tracing are wired consistently."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.healthcheck import settings_class
from ragstream_common.registry import SERVICES
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.system import SystemPorts, service_env

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ISTIO = ROOT / "infra" / "istio"
BASE = ROOT / "infra" / "k8s" / "base"
# gRPC backends reached through their Service: workers serving an API. Ingest serves only health probes; the
# gateway's ReplyService is dialed pod by pod (headless gateway-reply), so it has no route of its own.
GRPC_BACKENDS = {s.name: s.grpc_port for s in SERVICES.values() if s.grpc_services and s.http_port is None}
INGRESS_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


@functools.cache
def resources(directory: Path) -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] != "Kustomization"]
    return tuple(docs)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in resources(ISTIO) if d["kind"] == kind}


def host(service: str) -> str:
    return f"{service}.ragstream.svc.cluster.local"


def test_every_istio_resource_uses_a_v1_api() -> None:
    for doc in resources(ISTIO):
        group, version = doc["apiVersion"].split("/")
        assert group.endswith("istio.io"), doc["metadata"]["name"]
        assert version == "v1" or doc["kind"] == "IstioOperator"


def test_namespace_requires_mutual_tls() -> None:
    assert of_kind("PeerAuthentication")["default"]["spec"]["mtls"]["mode"] == "STRICT"


@pytest.mark.parametrize("service", GRPC_BACKENDS)
def test_grpc_backend_has_connection_limits_and_outlier_detection(service: str) -> None:
    policy = of_kind("DestinationRule")[service]["spec"]
    assert policy["host"] == host(service)
    traffic = policy["trafficPolicy"]
    assert traffic["tls"]["mode"] == "ISTIO_MUTUAL"
    assert traffic["connectionPool"]["tcp"]["maxConnections"] > 0
    assert traffic["connectionPool"]["http"]["http2MaxRequests"] > 0
    outliers = traffic["outlierDetection"]
    assert outliers["consecutive5xxErrors"] > 0 and outliers["baseEjectionTime"]
    assert 0 < outliers["maxEjectionPercent"] <= 100


@pytest.mark.parametrize(("service", "port"), GRPC_BACKENDS.items())
def test_grpc_backend_routes_with_timeout_and_grpc_retries(service: str, port: int) -> None:
    spec = of_kind("VirtualService")[service]["spec"]
    assert spec["hosts"] == [host(service)]
    (route,) = spec["http"]
    assert route["route"][0]["destination"] == {"host": host(service), "port": {"number": port}}
    assert route["timeout"]
    retry_on = set(route["retries"]["retryOn"].split(","))
    assert {"unavailable", "cancelled", "resource-exhausted"} <= retry_on
    assert route["retries"]["attempts"] >= 1 and route["retries"]["perTryTimeout"]
    service_ports = {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in resources(BASE) if d["kind"] == "Service"
    }
    assert service_ports[service] == port


def test_public_host_reaches_only_the_gateway_over_tls() -> None:
    (gateway,) = of_kind("Gateway").values()
    protocols = {s["port"]["protocol"]: s for s in gateway["spec"]["servers"]}
    assert protocols["HTTPS"]["tls"]["mode"] == "SIMPLE"
    assert protocols["HTTP"]["tls"]["httpsRedirect"] is True
    public = [v for v in of_kind("VirtualService").values() if v["spec"].get("gateways")]
    destinations = {r["destination"]["host"] for v in public for h in v["spec"]["http"] for r in h.get("route", [])}
    assert destinations == {host("gateway")}


HSTS = "max-age=31536000; includeSubDomains"


def test_public_responses_carry_hsts_from_the_ingress() -> None:
    public = [v for v in of_kind("VirtualService").values() if v["spec"].get("gateways")]
    routes = [route for v in public for route in v["spec"]["http"]]
    assert routes and all(r["headers"]["response"]["set"]["Strict-Transport-Security"] == HSTS for r in routes)


def test_ingress_trusts_exactly_the_proxy_the_gateway_counts_besides_it() -> None:
    (mesh,) = (d for d in resources(ISTIO) if d["kind"] == "IstioOperator")
    trusted = mesh["spec"]["meshConfig"]["defaultConfig"]["gatewayTopology"]["numTrustedProxies"]
    deployment = next(d for d in resources(BASE) if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    hops = next(e["value"] for e in container["env"] if e["name"] == "GATEWAY_TRUSTED_PROXY_HOPS")
    # The load balancer appends the client, the ingress gateway appends the load balancer.
    assert int(hops) == trusted + 1 == 2


def test_authorization_denies_by_default() -> None:
    assert of_kind("AuthorizationPolicy")["allow-nothing"]["spec"] == {}


def test_only_the_gateway_accepts_the_ingress_gateway() -> None:
    for name, policy in of_kind("AuthorizationPolicy").items():
        principals = {p for r in policy["spec"].get("rules", []) for f in r["from"] for p in f["source"]["principals"]}
        if INGRESS_PRINCIPAL in principals:
            assert policy["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gateway"}, name


def grpc_callers(marker: str) -> set[str]:
    """The services whose code dials a gRPC service: `marker` is the client their sources construct."""
    return {
        name
        for name in SERVICES
        if any(marker in path.read_text() for path in (ROOT / "services" / name / "src").rglob("*.py"))
    }


# rag.v1 service -> the services that call it, as the code says (the ReplyService through GrpcReplyClient).
CALLERS = {
    "ReplyService": grpc_callers("GrpcReplyClient("),
    "EmbedService": grpc_callers("EmbedServiceStub("),
    "RetrieveService": grpc_callers("RetrieveServiceStub("),
    "GenerateService": grpc_callers("GenerateServiceStub("),
}
SERVING = {
    "ReplyService": "gateway",
    "EmbedService": "embed",
    "RetrieveService": "retrieve",
    "GenerateService": "generate",
}


def test_the_code_has_the_calls_the_policies_expect() -> None:
    assert CALLERS == {
        "ReplyService": {"retrieve", "generate"},
        "EmbedService": {"retrieve"},
        "RetrieveService": {"generate"},  # agent-mode follow-up searches
        "GenerateService": set(),
    }


def test_workers_that_answer_may_call_the_gateway_reply_service() -> None:
    (rule,) = of_kind("AuthorizationPolicy")["gateway-reply-from-workers"]["spec"]["rules"]
    principals = set(rule["from"][0]["source"]["principals"])
    assert principals == {f"cluster.local/ns/ragstream/sa/{w}" for w in CALLERS["ReplyService"]}
    assert rule["to"][0]["operation"]["paths"] == ["/rag.v1.ReplyService/*"]
    assert rule["to"][0]["operation"]["ports"] == [str(SERVICES["gateway"].grpc_port)]


@pytest.mark.parametrize("api", CALLERS)
def test_each_grpc_api_admits_exactly_its_callers(api: str) -> None:
    admitted: set[str] = set()
    for policy in of_kind("AuthorizationPolicy").values():
        if policy["spec"].get("selector", {}).get("matchLabels") != {"app.kubernetes.io/name": SERVING[api]}:
            continue
        for rule in policy["spec"].get("rules", []):
            if any(f"/rag.v1.{api}/*" in op["operation"].get("paths", []) for op in rule["to"]):
                admitted |= {p.rsplit("/", 1)[-1] for f in rule["from"] for p in f["source"]["principals"]}
    assert admitted == CALLERS[api]


@pytest.mark.parametrize("api", CALLERS)
def test_network_policies_admit_the_same_callers(api: str) -> None:
    callee = SERVICES[SERVING[api]]
    policies = [d for d in resources(BASE) if d["kind"] == "NetworkPolicy"]
    admitted: set[str] = set()
    for policy in policies:
        if policy["spec"]["podSelector"].get("matchLabels") != {"app.kubernetes.io/name": callee.name}:
            continue
        for rule in policy["spec"].get("ingress", []):
            if {"protocol": "TCP", "port": callee.grpc_port} not in rule.get("ports", []):
                continue
            for source in rule["from"]:
                selector = source.get("podSelector", {})
                admitted |= set(selector.get("matchLabels", {}).values())
                admitted |= {v for e in selector.get("matchExpressions", []) for v in e["values"]}
    assert admitted == CALLERS[api]


# (caller, callee) of every call through the callee's Service; the ReplyService is dialled at `reply_to` instead.
SERVICE_CALLS = sorted(
    (caller, SERVING[api]) for api, callers in CALLERS.items() if api != "ReplyService" for caller in callers
)


@pytest.mark.parametrize(("caller", "callee"), SERVICE_CALLS)
def test_callers_are_given_the_callee_address_everywhere(caller: str, callee: str, tmp_path: Path) -> None:
    """`<CALLER>_<CALLEE>_ADDRESS` (e.g. RETRIEVE_EMBED_ADDRESS) is a setting of the caller and names the callee's
    Service in compose and Kubernetes, and its local port in `make run`."""
    variable, port = f"{caller.upper()}_{callee.upper()}_ADDRESS", SERVICES[callee].grpc_port
    assert f"{callee}_address" in settings_class(caller).model_fields
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"][caller]["environment"][variable] == f"{callee}:{port}"
    deployment = next(d for d in resources(BASE) if d["kind"] == "Deployment" and d["metadata"]["name"] == caller)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}[variable] == f"{callee}:{port}"
    ports = SystemPorts.defaults()
    local = service_env(
        caller, kafka="127.0.0.1:1", database_url="", ports=ports, credentials=LocalCredentials(tmp_path)
    )
    assert local[variable] == f"127.0.0.1:{ports.grpc[callee]}"


def test_authorized_principals_are_real_service_accounts() -> None:
    accounts = {d["metadata"]["name"] for d in resources(BASE) if d["kind"] == "ServiceAccount"}
    for policy in of_kind("AuthorizationPolicy").values():
        for rule in policy["spec"].get("rules", []):
            for principal in rule["from"][0]["source"]["principals"]:
                if principal != INGRESS_PRINCIPAL:
                    assert principal.removeprefix("cluster.local/ns/ragstream/sa/") in accounts


def test_traces_go_to_a_declared_otlp_provider() -> None:
    (mesh,) = (d for d in resources(ISTIO) if d["kind"] == "IstioOperator")
    providers = {p["name"]: p for p in mesh["spec"]["meshConfig"]["extensionProviders"]}
    (telemetry,) = of_kind("Telemetry").values()
    for tracing in telemetry["spec"]["tracing"]:
        for provider in tracing["providers"]:
            assert providers[provider["name"]]["opentelemetry"]["port"] == 4317
    assert mesh["spec"]["components"]["cni"]["enabled"] is True

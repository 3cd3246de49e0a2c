"""The compose observability profile and its override (docker-compose.observability.yml) are wired end to end: logs
through Docker's fluentd driver to Fluent Bit, traces through the OpenTelemetry Collector, alerts from Prometheus
to Alertmanager routed by severity, and the OpenSearch retention policies applied by a one-shot before the first
index exists. Parsed, not run: there is no Docker engine in the test environment."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "infra" / "observability"
RETENTION = OBSERVABILITY / "fluent-bit" / "opensearch-retention.json"
PROFILE = "observability"


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load(ROOT / "docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return load(ROOT / "docker-compose.observability.yml")["services"]


def published(service: dict[str, Any], port: int) -> str:
    """The host address ("ip:port") a container port is published on."""
    (address,) = [p.rsplit(":", 1)[0] for p in service["ports"] if p.rsplit(":", 1)[1] == str(port)]
    return address


# ---- logs ----


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_logs_to_fluent_bit_asynchronously_under_its_own_tag(
    base: dict[str, Any], override: dict[str, Any], name: str
) -> None:
    logging = override[name]["logging"]
    assert logging["driver"] == "fluentd"
    options = logging["options"]
    assert options["fluentd-async"] == "true", "a service must not block or fail while Fluent Bit is down"
    assert options["tag"] == f"ragstream.{name}"
    # The Docker daemon dials the driver's address from the host: Fluent Bit's published forward port.
    (forward,) = load(OBSERVABILITY / "fluent-bit" / "compose.yaml")["pipeline"]["inputs"]
    assert forward["name"] == "forward"
    assert options["fluentd-address"] == published(base["fluent-bit"], forward["port"]) == "127.0.0.1:24224"


def test_fluent_bit_takes_every_service_tag_into_the_application_index(override: dict[str, Any]) -> None:
    config = load(OBSERVABILITY / "fluent-bit" / "compose.yaml")["pipeline"]
    (parser,) = [f for f in config["filters"] if f["name"] == "parser"]
    (application,) = [o for o in config["outputs"] if o["logstash_prefix"] == "ragstream-logs"]
    for service in override.values():
        tag = service["logging"]["options"]["tag"]
        for pattern in (parser["match"], application["match"]):
            assert re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), tag), (pattern, tag)


# ---- traces ----


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_sends_its_spans_to_the_collector_not_to_jaeger(
    base: dict[str, Any], override: dict[str, Any], name: str
) -> None:
    endpoint = override[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    host, port = endpoint.removeprefix("http://").split(":")
    assert host == "otel-collector" and PROFILE in base[host]["profiles"]
    receiver = load(OBSERVABILITY / "otel-collector" / "compose.yaml")["receivers"]["otlp"]["protocols"]["grpc"]
    assert receiver["endpoint"].endswith(f":{port}")
    assert override[name]["depends_on"]["otel-collector"]["condition"] == "service_started"
    # Only the override changes it: a plain `docker compose up` still exports straight to Jaeger.
    assert base[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"


def test_the_override_only_adds_telemetry_to_existing_services(base: dict[str, Any], override: dict[str, Any]) -> None:
    assert set(override) == set(SERVICE_NAMES) <= set(base)
    for service in override.values():
        assert set(service) == {"environment", "depends_on", "logging"}
        assert set(service["depends_on"]) <= {name for name, s in base.items() if PROFILE in s.get("profiles", [])}


# ---- alerts ----


def test_prometheus_sends_alerts_to_the_alertmanager_of_the_profile(base: dict[str, Any]) -> None:
    config = load(OBSERVABILITY / "prometheus" / "prometheus.yml")
    (manager,) = config["alerting"]["alertmanagers"]
    (target,) = manager["static_configs"][0]["targets"]
    host, port = target.split(":")
    alertmanager = base[host]
    assert PROFILE in alertmanager["profiles"] and PROFILE in base["prometheus"]["profiles"]
    assert published(alertmanager, int(port)).startswith("127.0.0.1:")
    config_path = next(v.split(":")[0] for v in alertmanager["volumes"] if v.endswith("alertmanager.yml:ro"))
    assert (ROOT / config_path).resolve() == OBSERVABILITY / "alertmanager" / "alertmanager.yml"
    assert alertmanager["read_only"] is True and alertmanager["cap_drop"] == ["ALL"]


def rule_severities() -> set[str]:
    rules = [load(p) for p in (OBSERVABILITY / "prometheus" / "rules").glob("*.yml")]
    return {
        rule["labels"]["severity"]
        for doc in rules
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def route_for(route: dict[str, Any], severity: str) -> str:
    """The receiver Alertmanager picks for an alert with only this severity (first matching child route)."""
    for child in route.get("routes", []):
        if f'severity="{severity}"' in child["matchers"]:
            return str(child["receiver"])
    return str(route["receiver"])


def test_alerts_are_routed_by_severity_to_defined_receivers() -> None:
    config = load(OBSERVABILITY / "alertmanager" / "alertmanager.yml")
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"]["routes"]]
    assert {r["receiver"] for r in routes} <= receivers
    assert rule_severities() == {"critical", "warning", "info"}
    assert {s: route_for(config["route"], s) for s in rule_severities()} == {
        "critical": "pager",
        "warning": "tickets",
        "info": "ui-only",
    }
    # Inhibition needs a label both alerts have: never silence across unrelated alerts.
    for rule in config["inhibit_rules"]:
        (label,) = rule["equal"]
        assert f'{label}=~".+"' in rule["source_matchers"]


# ---- retention ----


@pytest.fixture(scope="module")
def retention_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "apply_retention", OBSERVABILITY / "fluent-bit" / "apply_retention.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_retention_keeps_application_logs_two_weeks_and_security_events_a_year(retention_script: ModuleType) -> None:
    policies = retention_script.policies(json.loads(RETENTION.read_text()))
    ages = {}
    for policy_id, body in policies.items():
        states = {s["name"]: s for s in body["policy"]["states"]}
        (transition,) = states[body["policy"]["default_state"]]["transitions"]
        assert states[transition["state_name"]]["actions"] == [{"delete": {}}]
        (template,) = body["policy"]["ism_template"]
        assert template["index_patterns"] == [f"{policy_id}-*"]
        ages[policy_id] = transition["conditions"]["min_index_age"]
    assert ages == {"ragstream-logs": "14d", "ragstream-security": "365d"}
    # The indices Fluent Bit writes (one a day) are the ones the policies manage.
    outputs = load(OBSERVABILITY / "fluent-bit" / "compose.yaml")["pipeline"]["outputs"]
    assert {o["logstash_prefix"] for o in outputs} == set(policies)


def test_the_retention_one_shot_runs_before_fluent_bit_writes(base: dict[str, Any]) -> None:
    one_shot = base["opensearch-retention"]
    assert PROFILE in one_shot["profiles"] and one_shot["restart"] == "no"
    assert one_shot["depends_on"]["opensearch"]["condition"] == "service_healthy"
    assert base["fluent-bit"]["depends_on"]["opensearch-retention"]["condition"] == "service_completed_successfully"
    mounts = dict(reversed(v.rsplit(":", 2)[:2]) for v in one_shot["volumes"])  # container path -> host path
    script, *args = one_shot["entrypoint"][1:]
    assert (ROOT / mounts[script]).resolve() == OBSERVABILITY / "fluent-bit" / "apply_retention.py"
    assert (ROOT / mounts[args[args.index("--policies") + 1]]).resolve() == RETENTION
    assert args[args.index("--url") + 1] == "http://opensearch:9200"


class FakeIsm(BaseHTTPRequestHandler):
    """OpenSearch's ISM API as far as the script uses it; `stored` holds the policies by id."""

    stored: dict[str, dict[str, Any]] = {}
    calls: list[tuple[str, str]] = []

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        policy_id = self.path.rsplit("/", 1)[1]
        if policy_id not in self.stored:
            self._answer(404, {"error": {"type": "status_exception"}})
        else:
            self._answer(200, {"_id": policy_id, "_seq_no": 7, "_primary_term": 1, **self.stored[policy_id]})

    def do_PUT(self) -> None:
        self.calls.append(("PUT", self.path))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        policy_id = self.path.split("?")[0].rsplit("/", 1)[1]
        if policy_id in self.stored and "if_seq_no=7&if_primary_term=1" not in self.path:
            self._answer(409, {"error": {"type": "version_conflict_engine_exception"}})
            return
        self.stored[policy_id] = body
        self._answer(200 if "?" in self.path else 201, {"_id": policy_id})

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path))
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, {"updated_indices": 0, "failures": False, "failed_indices": []})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ism() -> Iterator[str]:
    FakeIsm.stored, FakeIsm.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIsm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_the_one_shot_creates_then_updates_the_policies_and_attaches_them(
    retention_script: ModuleType, ism: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", ism, "--policies", str(RETENTION)]
    assert retention_script.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["ragstream-logs: created", "ragstream-security: created"]
    assert FakeIsm.stored == retention_script.policies(json.loads(RETENTION.read_text()))
    assert ("POST", "/_plugins/_ism/add/ragstream-security-*") in FakeIsm.calls
    assert retention_script.main(argv) == 0  # a rerun (after editing the file) updates in place
    assert capsys.readouterr().out.splitlines() == ["ragstream-logs: updated", "ragstream-security: updated"]

"""Grafana dashboards as code (infra/observability/grafana): valid dashboards, PromQL that parses, and only
metrics the code declares, in the dashboards and in the Prometheus rules alike.

Metric names come out of PromQL by a tokenizer (`metric_names`), not a full parser. Its limits: a selector that
names its metric only by `{__name__="..."}` is not seen; an identifier directly followed by `(` is taken for a
function or aggregation; names inside string literals (label_replace arguments) are ignored. The expressions
themselves are parsed by promtool (`promtool check rules` on a generated rules file), which is exact.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "observability" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "infra" / "observability" / "prometheus" / "rules").glob("*.y*ml"))
DATASOURCE_UID = "prometheus"

# Series Prometheus makes itself rather than scrapes from our code.
PROMETHEUS_BUILTINS = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
)
# Metrics a dashboard or rule may use before the code declaring them lands (parallel work): name each here with
# the change that brings it, and drop it once declared (test_pending_metrics_are_not_yet_declared says when).
PENDING: frozenset[str] = frozenset()

# Sample names each metric type exposes (the text format; prometheus_client names a counter's family without
# its `_total`).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
    | {"inf", "nan", "Inf", "NaN"}
)
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIERS = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (see the module's docstring for what this cannot see)."""
    text = STRINGS.sub('""', GRAFANA_VARIABLES.sub("1", expr))
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers (strings are gone, so no brace is quoted)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = GROUPINGS.sub(" ", text)
    return {name for name in IDENTIFIERS.findall(text) if name not in KEYWORDS}


def exposition_names(name: str, kind: str) -> set[str]:
    """The sample names a metric family of this type exposes."""
    return {name + suffix for suffix in SUFFIXES.get(kind, ("",))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_expressions(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def rule_documents() -> Iterator[dict[str, Any]]:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def used_metric_names() -> dict[str, set[str]]:
    """Every metric name used, by where it is used (a dashboard's or rule file's name)."""
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        used[path.name] = set().union(*map(metric_names, dashboard_expressions(path)))
    for path in RULES:
        exprs = [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
        used[path.name] = set().union(*map(metric_names, exprs))
    return used


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rule_documents() if "record" in rule}


def service_packages() -> list[str]:
    from ragstream_common.registry import SERVICES

    return ["ragstream_common", *(spec.package for spec in SERVICES.values())]


def import_all(packages: Iterable[str]) -> None:
    """Import every module of the packages, so each declares its metrics in prometheus_client's REGISTRY."""
    for package in packages:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


@cache
def declared_names() -> frozenset[str]:
    from prometheus_client import REGISTRY

    import_all(service_packages())
    return frozenset(name for family in REGISTRY.collect() for name in exposition_names(family.name, family.type))


def test_there_is_a_dashboard_for_each_question() -> None:
    names = {path.stem for path in DASHBOARDS}
    assert {"overview", "ingestion", "query", "kafka-postgres", "tenants", "connectors"} <= names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_is_a_provisionable_grafana_dashboard(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert {"uid", "title", "panels", "schemaVersion", "templating", "time"} <= dashboard.keys()
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards carry no database id"
    assert len(dashboard["uid"]) <= 40
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    loaded = [json.loads(path.read_text()) for path in DASHBOARDS]
    assert len({d["uid"] for d in loaded}) == len({d["title"] for d in loaded}) == len(loaded)


def test_provisioning_serves_every_dashboard_from_the_prometheus_source() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "ragstream.yaml").read_text())
    assert DATASOURCE_UID in {source["uid"] for source in sources["datasources"] if source["type"] == "prometheus"}
    (provider,) = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ragstream.yaml").read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    # Kubernetes mounts what the kustomization generates: every dashboard, nothing stale.
    generators = yaml.safe_load((GRAFANA / "kustomization.yaml").read_text())["configMapGenerator"]
    (dashboards,) = (g for g in generators if g["name"] == "grafana-dashboards")
    assert sorted(dashboards["files"]) == sorted(f"dashboards/{path.name}" for path in DASHBOARDS)


def test_compose_runs_prometheus_and_grafana_on_request_with_these_files() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["observability"], "plain `docker compose up` leaves them out"
        assert ":" in service["image"] and not service["image"].endswith(":latest")
        assert service["read_only"] is True and service["user"] != "0"
        assert service["healthcheck"]["test"][0] == "CMD"
        binds = [v for v in service["volumes"] if v.startswith("./")]
        assert binds and all(v.endswith(":ro") for v in binds)
        assert all((ROOT / v.split(":")[0]).exists() for v in binds)
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith("./")}
    assert grafana["/etc/grafana/dashboards"] == "./infra/observability/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "./infra/observability/grafana/provisioning"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, stage) (rate(a_bucket{stage=~"x|y"}[$__rate_interval]))', {"a_bucket"}),
        ('1 - (sum(increase(b_total{s="5.."}[1h])) or vector(0)) / sum(c_total)', {"b_total", "c_total"}),
        ("count(up == 0) or vector(0)", {"up"}),
        ("d / ignoring(state) (e > 0)", {"d", "e"}),
        ("f_total / 1e6 * $price + g:ratio_rate5m offset 5m", {"f_total", "g:ratio_rate5m"}),
        ('label_replace(h, "dst", "$1", "src", "(.*)")', {"h"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make setup installs it)")
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    # promtool parses recording rules' expressions: one rule per panel query, Grafana's variables made concrete.
    rules = [
        {"record": f"dashboard:{path.stem.replace('-', '_')}:{n}", "expr": GRAFANA_VARIABLES.sub(concrete, expr)}
        for path in DASHBOARDS
        for n, expr in enumerate(dashboard_expressions(path))
    ]
    rules_file = tmp_path / "dashboards.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def concrete(match: re.Match[str]) -> str:
    """A Grafana variable as PromQL can read it: intervals as durations, the rest (unit prices) as numbers."""
    return "5m" if "interval" in match.group() or "range" in match.group() else "1"


def test_every_metric_used_by_dashboards_and_rules_is_declared() -> None:
    known = declared_names() | recorded_names() | PROMETHEUS_BUILTINS | PENDING
    unknown = {where: sorted(names - known) for where, names in used_metric_names().items() if names - known}
    assert unknown == {}


def test_pending_metrics_are_not_yet_declared() -> None:
    # Once the code declares one, drop it from PENDING so the check above covers it.
    assert sorted(PENDING & declared_names()) == []


def test_every_pending_metric_is_used() -> None:
    used = set().union(*used_metric_names().values())
    assert sorted(PENDING - used) == []


def test_tenant_cost_prices_every_metered_quantity_at_the_gateways_default_prices() -> None:
    # The estimate must agree with GET /v1/usage/cost at default prices: quantities (tokens, bytes), not facts.
    from ragstream_common.usage_records import USAGE_METRICS
    from ragstream_gateway.usage import PRICE_UNITS, UsageSettings

    dashboard = json.loads((GRAFANA / "dashboards" / "tenants.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    defaults = UsageSettings().prices()
    assert {name for name in variables if name.startswith("price_")} == {f"price_{m}" for m in USAGE_METRICS}
    for metric in USAGE_METRICS:
        variable = variables[f"price_{metric}"]
        assert float(variable["query"]) == float(variable["current"]["value"]) == float(defaults[metric]), metric
    (cost,) = (p for p in panels(dashboard) if p["title"] == "Estimated cost in range")
    expr = cost["targets"][0]["expr"]
    for metric in USAGE_METRICS:
        quantity = f'sum(increase(ragstream_metering_quantity_total{{metric="{metric}"}}[$__range]))'
        unit = {1_000: "1000", 1_000_000_000: "1e9"}[PRICE_UNITS[metric]]  # per 1,000; bytes per GB
        assert f"({quantity} or vector(0)) / {unit} * $price_{metric}" in expr, metric
    (usage,) = (p for p in panels(dashboard) if p["title"] == "Usage per hour by metric")
    assert all("ragstream_metering_quantity_total" in target["expr"] for target in usage["targets"])


def test_overview_shows_services_not_ready() -> None:
    exprs = dashboard_expressions(GRAFANA / "dashboards" / "overview.json")
    assert any("ragstream_ready" in expr and "== 0" in expr for expr in exprs)

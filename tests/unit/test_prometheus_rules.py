"""infra/observability/prometheus: promtool checks the config and rules and runs their unit tests; every alert is
tested firing and not firing, links a runbook section, and reads only metrics the code exports; the Operator's
PrometheusRule (infra/k8s/observability/prometheus-rules.yaml) holds exactly the same groups.

Run as a script (`.venv/bin/python tests/unit/test_prometheus_rules.py`) to regenerate that PrometheusRule after
editing the rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.registry import SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "observability" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
OPERATOR_RULES = ROOT / "infra" / "k8s" / "observability" / "prometheus-rules.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Where the code declares its metrics: every exported name appears there as a string literal.
SOURCE_DIRS = [*sorted((ROOT / "services").glob("*/src")), ROOT / "libs" / "common" / "src"]
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus, or a Prometheus release tarball)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def rule_groups() -> list[dict[str, Any]]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def operator_rule() -> dict[str, Any]:
    """The PrometheusRule the Operator loads: the rule files' groups, in order."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ragstream", "labels": {"app.kubernetes.io/part-of": "ragstream"}},
        "spec": {"groups": rule_groups()},
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the PromQL expressions) as literal blocks, as the rule files have them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _represent_str)


def render_operator_rule() -> str:
    header = (
        "# GENERATED from infra/observability/prometheus/rules by `python tests/unit/test_prometheus_rules.py`;\n"
        "# edit the rule files, then regenerate. The Prometheus Operator's form of the same rules.\n"
    )
    return header + yaml.dump(operator_rule(), Dumper=_BlockDumper, sort_keys=False, width=120)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_compose_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_kubernetes_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "--syntax-only", "k8s.yml")
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's is)")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    seen: dict[str, set[bool]] = defaultdict(set)
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                seen[check["alertname"]].add(bool(check.get("exp_alerts")))
    for name in {rule["alert"] for rule in alerting_rules()}:
        assert seen[name] == {True, False}, f"{name}: tested firing and not firing? {seen[name]}"


def test_every_alert_has_a_severity_summary_and_runbook_section() -> None:
    anchors = {github_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/runbooks.md" and anchor == github_anchor(name) and anchor in anchors, name


def used_metric_names() -> set[str]:
    """Metric names the rules read (recording rules' own `ragstream:` names excluded), histogram suffixes off."""
    names: set[str] = set()
    for group in rule_groups():
        for rule in group["rules"]:
            for name in re.findall(r"\bragstream_[a-z0-9_]+", rule["expr"]):
                names.add(next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name))
    return names


def test_rules_read_only_metrics_the_code_exports() -> None:
    sources = "\n".join(p.read_text() for d in SOURCE_DIRS for p in d.rglob("*.py"))
    declared = set(re.findall(r"[\"'](ragstream_[a-z0-9_]+)[\"']", sources))
    assert used_metric_names() - declared == set()


def test_compose_config_scrapes_every_registered_service() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "ragstream"]
    targets = {target: static["labels"]["service"] for static in job["static_configs"] for target in static["targets"]}
    assert targets == {f"{spec.name}:{spec.metrics_port}": spec.name for spec in SERVICES.values()}


def test_kubernetes_configmap_carries_every_rule_file() -> None:
    kustomization = yaml.safe_load((PROMETHEUS / "kustomization.yaml").read_text())
    (rules,) = [m for m in kustomization["configMapGenerator"] if m["name"] == "prometheus-rules"]
    assert sorted(rules["files"]) == [f"rules/{path.name}" for path in RULE_FILES]


def test_operator_rule_matches_the_rule_files() -> None:
    assert OPERATOR_RULES.read_text() == render_operator_rule(), (
        "regenerate with: .venv/bin/python tests/unit/test_prometheus_rules.py"
    )


if __name__ == "__main__":
    OPERATOR_RULES.write_text(render_operator_rule())
    sys.stdout.write(f"wrote {OPERATOR_RULES.relative_to(ROOT)}\n")

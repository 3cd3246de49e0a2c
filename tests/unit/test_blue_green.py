"""infra/k8s/components/blue-green: base plus the component renders a blue-green Argo Rollout for every service,
with active and preview Services over its pods, analysis that reads metrics the code exports in valid PromQL,
time to roll back, and migrations that only ever add (expand/contract, docs/releases.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
COMPONENT = K8S / "components" / "blue-green"
MIGRATIONS = ROOT / "libs" / "common" / "src" / "ragstream_common" / "migrations"
SOURCE_DIRS = [*sorted((ROOT / "services").glob("*/src")), ROOT / "libs" / "common" / "src"]
PROMETHEUS_CONFIGS = [
    ROOT / "infra" / "observability" / "prometheus" / "k8s.yml",
    K8S / "observability" / "prometheus-monitors.yaml",
]
METRIC_SUFFIXES = ("_bucket", "_count", "_sum")
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")


def rendered(tmp_root: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of an overlay holding base and the component, as the environment overlays do."""
    overlay = Path(tmp_root) / "overlay"
    overlay.mkdir(exist_ok=True)
    manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize refuses absolute paths to other kustomizations.
        "resources": [os.path.relpath(K8S / "base", overlay)],
        "components": [os.path.relpath(COMPONENT, overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(manifest))
    assert KUBECTL is not None
    built = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return tuple(d for d in yaml.safe_load_all(built.stdout) if d)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl (kustomize) not installed")
    return {(d["kind"], d["metadata"]["name"]): d for d in rendered(str(tmp_path_factory.mktemp("blue-green")))}


def base_deployment(name: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((K8S / "base" / f"{name}.yaml").read_text()):
        if doc and doc["kind"] == "Deployment":
            return dict(doc)
    raise AssertionError(f"infra/k8s/base/{name}.yaml has no Deployment")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_service_is_a_blue_green_rollout_of_its_deployment(docs: dict[Any, Any], name: str) -> None:
    rollout, deployment = docs["Rollout", name], docs["Deployment", name]
    assert rollout["spec"]["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(rollout["spec"]["selector"]["matchLabels"], pod_labels)
    # The Deployment is only the template now; the Rollout carries base's replica count (none where an HPA scales).
    assert deployment["spec"]["replicas"] == 0
    assert rollout["spec"].get("replicas") == base_deployment(name)["spec"].get("replicas")
    assert rollout["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert "blueGreen" in rollout["spec"]["strategy"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_active_and_preview_services_select_the_pods_on_the_same_ports(docs: dict[Any, Any], name: str) -> None:
    strategy = docs["Rollout", name]["spec"]["strategy"]["blueGreen"]
    template = docs["Deployment", name]["spec"]["template"]
    container_ports = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
    active, preview = docs["Service", strategy["activeService"]], docs["Service", strategy["previewService"]]
    assert strategy["activeService"] == name and strategy["previewService"] == f"{name}-preview"
    for service in (active, preview):
        assert selects(service["spec"]["selector"], template["metadata"]["labels"])
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
        assert service["spec"].get("clusterIP") != "None", "Rollouts switch a ClusterIP Service's selector"
    assert preview["spec"]["ports"] == active["spec"]["ports"]


def analysis_seconds(template: dict[str, Any]) -> int:
    """How long one run of the template takes: its slowest metric's count x interval."""
    units = {"s": 1, "m": 60, "h": 3600}
    return max(
        metric["count"] * int(metric["interval"][:-1]) * units[metric["interval"][-1]]
        for metric in template["spec"]["metrics"]
    )


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_analysis_gates_the_switch_and_the_old_pods_outlive_it(docs: dict[Any, Any], name: str) -> None:
    strategy = docs["Rollout", name]["spec"]["strategy"]["blueGreen"]
    for phase in ("prePromotionAnalysis", "postPromotionAnalysis"):
        (reference,) = strategy[phase]["templates"]
        template = docs["AnalysisTemplate", reference["templateName"]]
        given = {arg["name"] for arg in strategy[phase]["args"]}
        required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
        assert required <= given <= {arg["name"] for arg in template["spec"]["args"]}
        pod_hash = next(arg for arg in strategy[phase]["args"] if arg["name"] == "pod-hash")
        assert pod_hash["valueFrom"] == {"podTemplateHashValue": "Latest"}, "judge the new pods"
        # Rolling back after a failed post-promotion run needs the old ReplicaSet still up.
        assert strategy["scaleDownDelaySeconds"] > analysis_seconds(template)
    assert strategy["autoPromotionEnabled"] is (name != "gateway"), "a person switches the public API"


def test_embed_autoscaler_scales_the_rollout(docs: dict[Any, Any]) -> None:
    target = docs["HorizontalPodAutoscaler", "embed"]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "embed"}


def test_component_builtin_resources_match_the_kubernetes_schema(docs: dict[Any, Any]) -> None:
    services = [d for (kind, name), d in docs.items() if kind == "Service" and name.endswith("-preview")]
    assert len(services) == len(SERVICE_NAMES)
    for service in services:
        kubernetes_validate.validate(service, "1.33", strict=True)


def test_migrations_run_as_an_argo_cd_presync_hook(docs: dict[Any, Any]) -> None:
    job = docs["Job", "migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    steps = [*job["spec"]["template"]["spec"]["initContainers"], *job["spec"]["template"]["spec"]["containers"]]
    assert steps[0]["command"] == ["python", "-m", "ragstream_common.migrate"]


def analysis_queries(docs: dict[Any, Any]) -> dict[str, str]:
    """Every Prometheus query of the component's templates, by template/metric."""
    return {
        f"{name}/{metric['name']}": metric["provider"]["prometheus"]["query"]
        for (kind, name), template in docs.items()
        if kind == "AnalysisTemplate"
        for metric in template["spec"]["metrics"]
    }


def test_analysis_reads_only_metrics_the_code_exports(docs: dict[Any, Any]) -> None:
    sources = "\n".join(p.read_text() for d in SOURCE_DIRS for p in d.rglob("*.py"))
    declared = set(re.findall(r"[\"'](ragstream_[a-z0-9_]+)[\"']", sources))
    used = {
        next((name.removesuffix(s) for s in METRIC_SUFFIXES if name.endswith(s)), name)
        for query in analysis_queries(docs).values()
        for name in re.findall(r"\bragstream_[a-z0-9_]+", query)
    }
    assert len(used) >= 5
    assert used - declared == set()


def test_analysis_picks_pods_by_a_label_prometheus_sets_from_the_pod_name(docs: dict[Any, Any]) -> None:
    for query in analysis_queries(docs).values():
        assert 'instance=~"{{args.rollout}}-{{args.pod-hash}}-.*"' in query
    for config in PROMETHEUS_CONFIGS:
        text = config.read_text()
        assert re.search(r"__meta_kubernetes_pod_name\]\s*\n\s*(target_label|targetLabel): instance", text), config


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_analysis_queries_are_valid_promql(docs: dict[Any, Any], tmp_path: Path) -> None:
    args = {"rollout": "gateway", "pod-hash": "6d4cf56db6", "namespace": "ragstream"}
    rules = [
        {"record": f"analysis:{key.replace('/', ':').replace('-', '_')}", "expr": substitute(query, args)}
        for key, query in analysis_queries(docs).items()
    ]
    path = tmp_path / "analysis.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "analysis", "rules": rules}]}))
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def substitute(text: str, args: dict[str, str]) -> str:
    substituted = re.sub(r"\{\{args\.([a-z-]+)\}\}", lambda m: args[m.group(1)], text)
    assert "{{" not in substituted
    return substituted


# ---- expand/contract: a migration that removes or rewrites what running code uses must say it is a contract ----

CONTRACT_MARKER = re.compile(r"^--\s*migration:\s*contract\b", re.IGNORECASE | re.MULTILINE)
# Statements that break the previous release, which still runs during a blue-green switch and after a rollback.
DESTRUCTIVE = re.compile(
    r"\bDROP\s+(?!NOT\s+NULL\b)(?P<what>[A-Z]+)(?:\s+IF\s+EXISTS)?(?:\s+(?P<name>\w+))?"
    r"|\bRENAME\b|^\s*TRUNCATE\b"
    r"|\bALTER\s+COLUMN\s+\w+\s+(?:SET\s+DATA\s+)?TYPE\b"
    r"|\bALTER\s+COLUMN\s+(?P<col>\w+)\s+SET\s+NOT\s+NULL",
    re.IGNORECASE | re.MULTILINE,
)
# Reviewed before the rule existed: 0005 retires the shared ragstream_app role of 0001 (no code uses it since).
CONTRACTS_BEFORE_THE_RULE = {"0005_service_roles.sql"}


def without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL)


def breaking_statements(sql: str) -> list[str]:
    """What in `sql` breaks the previous release. Allowed: DROP FUNCTION/POLICY/VIEW/TRIGGER x of an object the
    same file creates again (a replacement), SET NOT NULL on a column the same file adds (and fills)."""
    code = without_comments(sql)
    found = []
    for match in DESTRUCTIVE.finditer(code):
        what, name, column = match.group("what"), match.group("name"), match.group("col")
        if what and what.upper() in {"FUNCTION", "POLICY", "VIEW", "TRIGGER"}:
            if re.search(rf"\bCREATE\s+(OR\s+REPLACE\s+)?{what}\s+{name}\b", code, re.IGNORECASE):
                continue
        if column and re.search(rf"\bADD\s+COLUMN\s+(IF\s+NOT\s+EXISTS\s+)?{column}\b", code, re.IGNORECASE):
            continue
        found.append(" ".join(match.group(0).split()))
    return found


@pytest.mark.parametrize("path", sorted(MIGRATIONS.glob("*.sql")), ids=lambda p: p.name)
def test_migrations_only_expand_unless_marked_contract(path: Path) -> None:
    sql = path.read_text()
    if CONTRACT_MARKER.search(sql) or path.name in CONTRACTS_BEFORE_THE_RULE:
        return
    assert breaking_statements(sql) == [], (
        f"{path.name} removes or rewrites schema the previous release uses; ship it as a contract migration "
        "(first line `-- migration: contract`) one release after the code stopped using it (docs/releases.md)"
    )


@pytest.mark.parametrize(
    ("sql", "breaking"),
    [
        ("ALTER TABLE t ADD COLUMN c text;", []),
        ("ALTER TABLE t ALTER COLUMN c DROP NOT NULL;", []),
        ("ALTER TABLE t DROP COLUMN c;", ["DROP COLUMN c"]),
        ("ALTER TABLE t RENAME COLUMN a TO b;", ["RENAME"]),
        ("ALTER TABLE t ALTER COLUMN c TYPE bigint;", ["ALTER COLUMN c TYPE"]),
        ("DROP TABLE IF EXISTS t; -- DROP TABLE x", ["DROP TABLE IF EXISTS t"]),
        ("DROP FUNCTION f(text); CREATE FUNCTION f(digest text) RETURNS int AS 'select 1';", []),
        ("ALTER TABLE t ADD COLUMN c int; ALTER TABLE t ALTER COLUMN c SET NOT NULL;", []),
        ("ALTER TABLE t ALTER COLUMN old SET NOT NULL;", ["ALTER COLUMN old SET NOT NULL"]),
        ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT;", ["DROP DEFAULT"]),
        ("TRUNCATE t;\nCREATE TRIGGER g BEFORE UPDATE OR TRUNCATE ON t EXECUTE FUNCTION f();", ["TRUNCATE"]),
    ],
)
def test_breaking_statements_are_recognised(sql: str, breaking: list[str]) -> None:
    assert breaking_statements(sql) == breaking


def test_contract_marker_is_read_from_a_comment_line() -> None:
    assert CONTRACT_MARKER.search("-- migration: contract (expand shipped in v1.4)\nALTER TABLE t DROP COLUMN c;")
    assert not CONTRACT_MARKER.search("ALTER TABLE t DROP COLUMN c; -- not a migration: contract")

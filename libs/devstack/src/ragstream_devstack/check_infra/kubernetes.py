"""Kubernetes manifests: every kustomize overlay rendered, then each validated by kubeconform against the schemas
of the cluster's Kubernetes version (from the installed kubernetes-validate package) and the CRD schemas vendored in
infra/schemas. A resource whose schema is nowhere is a finding, never a skip.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import hcl2
import yaml

from .results import CheckResult, Finding
from .tools import KUBECONFORM_MODULE, go_tool, required, run

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# kubeconform's naming: deployment-apps-v1.json; {{.Group}} is the full API group of a CRD.
BUILTIN_SCHEMA_TEMPLATE = "{{.ResourceKind}}{{.KindSuffix}}.json"
CRD_SCHEMA_TEMPLATE = "infra/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
# kubernetes-validate's schemas point at one shared definitions file by absolute path ("/api/_definitions.json"),
# which kubeconform cannot follow; each schema is rewritten standalone with only the definitions it reaches.
DEFINITION_REF = re.compile(r"\"(?:/api/_definitions\.json)?#/\$defs/([^\"]+)\"")


@dataclass(frozen=True)
class Rendered:
    """One overlay's `kubectl kustomize` output: where it came from, where it was written, what it holds."""

    overlay: str
    path: Path
    resources: int


def discover_overlays(root: Path) -> list[Path]:
    """Every kustomization under infra/k8s/overlays (any depth) and infra/istio; Components are only patches."""
    candidates = [*sorted((root / "infra" / "k8s" / "overlays").rglob("*")), root / "infra" / "istio"]
    overlays = []
    for directory in candidates:
        files = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()]
        if files and (yaml.safe_load(files[0].read_text()) or {}).get("kind") != "Component":
            overlays.append(directory)
    return overlays


def render_overlay(root: Path, directory: Path, into: Path) -> Rendered | Finding:
    """`kubectl kustomize` of one overlay into `into`/<overlay path with __>.yaml, or the finding of its failure."""
    overlay = str(directory.relative_to(root))
    built = run([required("kubectl"), "kustomize", overlay], cwd=root)
    if built.returncode != 0:
        return Finding("render-failed", overlay, overlay, built.stderr.strip()[-500:])
    path = into / (overlay.replace("/", "__") + ".yaml")
    path.write_text(built.stdout)
    return Rendered(overlay, path, len([doc for doc in yaml.safe_load_all(built.stdout) if doc]))


def render_overlays(root: Path, into: Path) -> tuple[list[Rendered], CheckResult]:
    """Renders every overlay (in parallel); an overlay that does not render is a finding."""
    required("kubectl")
    overlays = discover_overlays(root)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda directory: render_overlay(root, directory, into), overlays))
    rendered = [outcome for outcome in outcomes if isinstance(outcome, Rendered)]
    result = CheckResult("kustomize", findings=[outcome for outcome in outcomes if isinstance(outcome, Finding)])
    total = sum(item.resources for item in rendered)
    result.checked = f"{len(rendered)}/{len(overlays)} overlays rendered, {total} resources: " + ", ".join(
        item.overlay for item in rendered
    )
    result.new_findings = list(result.findings)
    return rendered, result


def kubernetes_version(root: Path) -> str:
    """The EKS version Terraform creates (variable kubernetes_version's default, e.g. "1.33")."""
    with (root / "infra" / "terraform" / "variables.tf").open() as handle:
        variables = hcl2.load(handle)
    for block in variables.get("variable", []):
        for name, body in block.items():
            if name.strip('"') == "kubernetes_version":
                return str(body["default"]).strip('"')
    raise ValueError("infra/terraform/variables.tf declares no kubernetes_version")


def builtin_schema_source(version: str) -> Path:
    """kubernetes-validate's strict schemas for `version` (1.33 -> v1.33.0-local-strict)."""
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = base / f"v{version}.0-local-strict"
    if not source.is_dir():
        available = sorted(p.name for p in base.glob("v*-local-strict"))
        raise FileNotFoundError(f"kubernetes-validate has no schemas for {version} (it has {', '.join(available)})")
    return source


def standalone(schema_text: str, definitions: dict[str, str]) -> dict[str, Any]:
    """The schema with every definition it reaches (transitively) inlined under $defs and refs made local."""
    reached: set[str] = set()
    pending = DEFINITION_REF.findall(schema_text)
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += DEFINITION_REF.findall(definitions[name])

    def local(text: str) -> Any:
        return json.loads(DEFINITION_REF.sub(lambda match: f'"#/$defs/{match.group(1)}"', text))

    schema: dict[str, Any] = local(schema_text)
    # The $id is an https URL: relative to it, "#/$defs/..." would be looked up there, not in this document.
    schema.pop("$id", None)
    schema["$defs"] = {name: local(definitions[name]) for name in sorted(reached)}
    return schema


def standalone_schemas(root: Path, version: str) -> Path:
    """.cache/k8s-schemas/v<version>.0-standalone-strict, built once from kubernetes-validate's files."""
    source = builtin_schema_source(version)
    target = root / ".cache" / "k8s-schemas" / f"v{version}.0-standalone-strict"
    marker = target / ".complete"
    stamp = f"{source} {package_version('kubernetes-validate')}"
    if marker.exists() and marker.read_text() == stamp:
        return target
    target.mkdir(parents=True, exist_ok=True)
    raw = json.loads((source / "_definitions.json").read_text())["$defs"]
    definitions = {name: json.dumps(value) for name, value in raw.items()}
    for path in sorted(source.glob("*.json")):
        if not path.name.startswith("_") and path.name != "all.json":
            (target / path.name).write_text(json.dumps(standalone(path.read_text(), definitions)))
    marker.write_text(stamp)
    return target


def kubeconform_findings(report: dict[str, Any], overlay_of: dict[str, str]) -> list[Finding]:
    """Findings from kubeconform's JSON report: every resource not valid (invalid, error, or skipped)."""
    findings = []
    for item in report.get("resources") or []:
        status = str(item.get("status", "")).removeprefix("status").lower()
        if status in ("valid", "empty"):
            continue
        resource = f"{item.get('kind')}/{item.get('name')} ({item.get('version')})"
        overlay = overlay_of.get(str(item.get("filename")), str(item.get("filename")))
        findings.append(Finding(f"kubeconform-{status}", resource, overlay, str(item.get("msg", ""))[:400]))
    return findings


def check_kubeconform(root: Path, rendered: list[Rendered]) -> CheckResult:
    """kubeconform -strict -summary over every rendered overlay."""
    result = CheckResult("kubeconform")
    if not rendered:
        result.error = "no overlay rendered, so nothing to validate (see kustomize)"
        return result
    version = kubernetes_version(root)
    schemas = standalone_schemas(root, version)
    command = [
        str(go_tool(root, KUBECONFORM_MODULE)),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-schema-location",
        f"{schemas}/{BUILTIN_SCHEMA_TEMPLATE}",
        "-schema-location",
        CRD_SCHEMA_TEMPLATE,
        *(str(item.path) for item in rendered),
    ]
    ran = run(command, cwd=root)
    try:
        report = json.loads(ran.stdout)
    except json.JSONDecodeError:
        result.error = f"kubeconform exited {ran.returncode} without a JSON report: {ran.stderr.strip()[-1000:]}"
        return result
    result.findings = kubeconform_findings(report, {str(item.path): item.overlay for item in rendered})
    summary = report.get("summary", {})
    crd_groups = sorted(p.name for p in (root / "infra" / "schemas").glob("*") if p.is_dir())
    result.checked = (
        f"{sum(item.resources for item in rendered)} resources in {len(rendered)} overlays against Kubernetes "
        f"{version} (strict) + CRDs of {', '.join(crd_groups) or 'none'}: valid {summary.get('valid', 0)}, "
        f"invalid {summary.get('invalid', 0)}, errors {summary.get('errors', 0)}, skipped {summary.get('skipped', 0)}"
    )
    result.new_findings = list(result.findings)
    return result

"""The scanners with a reviewed baseline: checkov over Terraform, the rendered manifests and the Dockerfiles, and
hadolint over the Dockerfiles (whose accepted rules live in .hadolint.yaml, each with its reason).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .kubernetes import Rendered
from .results import BaselineEntry, CheckResult, Finding, apply_baseline
from .tools import CHECKOV, HADOLINT, ToolError, run, uv_tool

# Frameworks and the offline switches (no module or policy downloads); the accepted findings are in the baseline.
CHECKOV_CONFIG = ".checkov.yaml"


def dockerfiles(root: Path) -> list[Path]:
    return sorted(root.glob("services/**/Dockerfile*"))


def checkov_reports(root: Path, scan_dir: Path) -> list[dict[str, Any]]:
    """checkov's JSON report over `scan_dir` for Terraform, Kubernetes and Dockerfiles, one entry per check type."""
    options = ["--config-file", str(root / CHECKOV_CONFIG), "--output", "json"]
    ran = run([*uv_tool(CHECKOV, "checkov"), "-d", str(scan_dir), *options], cwd=root)
    try:
        report: Any = json.loads(ran.stdout)
    except json.JSONDecodeError as error:
        raise ToolError(f"checkov exited {ran.returncode}: {ran.stderr.strip()[-1000:]}") from error
    # One check type gives an object; with nothing to scan it is a bare summary without "results".
    reports = report if isinstance(report, list) else [report]
    return [entry for entry in reports if "results" in entry]


def checkov_findings(reports: list[dict[str, Any]], source_of: dict[str, str]) -> list[Finding]:
    """The failed checks of `reports`; a scanned file maps to its source through `source_of` (else its own path)."""
    findings = []
    for report in reports:
        for failed in report["results"].get("failed_checks", []):
            path = str(failed["file_path"]).lstrip("/")
            source = source_of.get(path, path)
            resource = str(failed["resource"]).lstrip("/")
            findings.append(Finding(failed["check_id"], resource, source, failed.get("check_name", "")))
    return sorted(findings, key=lambda finding: (finding.source, finding.rule, finding.resource))


def scan_tree(root: Path, rendered: list[Rendered], into: Path) -> dict[str, str]:
    """Lays out in `into` what checkov scans, in one run (its start-up costs more than its scan): infra/terraform
    and the Dockerfiles at their repository paths, the rendered overlays under rendered/. Returns the map from a
    rendered file to its overlay."""
    shutil.copytree(root / "infra" / "terraform", into / "infra" / "terraform", ignore=shutil.ignore_patterns(".*"))
    for dockerfile in dockerfiles(root):
        target = into / dockerfile.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dockerfile, target)
    (into / "rendered").mkdir()
    for item in rendered:
        shutil.copy2(item.path, into / "rendered" / item.path.name)
    return {f"rendered/{item.path.name}": item.overlay for item in rendered}


def resource_count(reports: list[dict[str, Any]], check_type: str) -> int:
    return sum(int(r.get("summary", {}).get("resource_count", 0)) for r in reports if r["check_type"] == check_type)


def check_checkov(root: Path, rendered: list[Rendered], baseline: list[BaselineEntry]) -> CheckResult:
    """checkov 3.3.30 on infra/terraform, every rendered overlay and every Dockerfile."""
    result = CheckResult("checkov")
    with tempfile.TemporaryDirectory(prefix="check-infra-checkov-") as scratch:
        source_of = scan_tree(root, rendered, Path(scratch))
        reports = checkov_reports(root, Path(scratch))
    result.findings = checkov_findings(reports, source_of)
    result.checked = (
        f"terraform {resource_count(reports, 'terraform')} resources, "
        f"kubernetes {resource_count(reports, 'kubernetes')} (of {len(rendered)} overlays), "
        f"dockerfile {resource_count(reports, 'dockerfile')}"
    )
    return apply_baseline(result, baseline)


def check_hadolint(root: Path) -> CheckResult:
    """hadolint 2.15.1 with .hadolint.yaml on every Dockerfile; every finding it reports is new."""
    result = CheckResult("hadolint")
    files = [str(path.relative_to(root)) for path in dockerfiles(root)]
    config = ["--config", ".hadolint.yaml"] if (root / ".hadolint.yaml").exists() else []
    ran = run([*uv_tool(HADOLINT, "hadolint"), *config, "--format", "json", *files], cwd=root)
    try:
        report: list[dict[str, Any]] = json.loads(ran.stdout or "[]")
    except json.JSONDecodeError:
        result.error = f"hadolint exited {ran.returncode}: {ran.stderr.strip()[-1000:]}"
        return result
    result.findings = [
        Finding(item["code"], f"line {item['line']}", item["file"], f"{item['level']}: {item['message']}")
        for item in report
    ]
    result.checked = f"{len(files)} Dockerfile(s): {', '.join(files)}"
    result.new_findings = list(result.findings)
    return result

"""The checks without a baseline, where any finding fails: terraform fmt (and validate/test when the providers can
be had), promtool on the Prometheus rules and their unit tests, actionlint on the GitHub workflows.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import hcl2

from .results import CheckResult, Finding
from .tools import ACTIONLINT_MODULE, go_tool, required, run

PROMETHEUS = Path("infra/observability/prometheus")
# What terraform init prints when the registry (modules or providers) is out of reach, as it is offline.
OFFLINE_MARKERS = ("registry.terraform.io", "Failed to query available provider packages", "no such host")
OFFLINE_NOTE = (
    "terraform validate/test not run: hashicorp/aws 6.x unavailable offline; "
    "checked instead: HCL parse + tests/unit/test_infra_terraform*.py"
)


def hcl_parse_findings(root: Path, files: list[Path]) -> list[Finding]:
    findings = []
    for path in files:
        try:
            with path.open() as handle:
                hcl2.load(handle)
        except Exception as error:  # python-hcl2 raises lark's many error types
            findings.append(Finding("hcl-parse", path.name, str(path.relative_to(root)), str(error)[:300]))
    return findings


def validate_and_test(root: Path, terraform: str, result: CheckResult) -> None:
    """terraform init -backend=false, validate and test in a temp copy (init writes .terraform; the lock stays)."""
    with tempfile.TemporaryDirectory(prefix="check-infra-tf-") as scratch:
        copy = Path(scratch) / "terraform"
        shutil.copytree(root / "infra" / "terraform", copy, ignore=shutil.ignore_patterns(".terraform"))
        init = run([terraform, "init", "-backend=false", "-input=false", "-no-color"], cwd=copy, timeout=300)
        if init.returncode != 0:
            output = init.stdout + init.stderr
            if any(marker in output for marker in OFFLINE_MARKERS):
                result.notes.append(OFFLINE_NOTE)
            else:
                result.findings.append(Finding("terraform-init", "infra/terraform", "infra/terraform", output[-800:]))
            return
        for step in (["validate", "-no-color"], ["test", "-no-color"]):
            ran = run([terraform, *step], cwd=copy, timeout=600)
            if ran.returncode != 0:
                message = (ran.stdout + ran.stderr)[-800:]
                result.findings.append(Finding(f"terraform-{step[0]}", "infra/terraform", "infra/terraform", message))
        result.notes.append("terraform init, validate and test ran (providers were available)")


def check_terraform(root: Path, *, fmt_only: bool = False) -> CheckResult:
    """terraform fmt -check -recursive, every file parsed as HCL, then validate/test unless `fmt_only`."""
    result = CheckResult("terraform")
    terraform = required("terraform")
    files = sorted((root / "infra" / "terraform").rglob("*.tf"))
    fmt = run([terraform, "fmt", "-check", "-recursive", "-no-color", "infra/terraform"], cwd=root)
    unformatted = [line.strip() for line in fmt.stdout.splitlines() if line.strip()]
    result.findings += [Finding("terraform-fmt", "not formatted", path, "run terraform fmt") for path in unformatted]
    if fmt.returncode != 0 and not unformatted:
        result.error = f"terraform fmt exited {fmt.returncode}: {fmt.stderr.strip()[-800:]}"
    result.findings += hcl_parse_findings(root, files)
    if not fmt_only:
        validate_and_test(root, terraform, result)
    modules = len([p for p in (root / "infra" / "terraform" / "modules").iterdir() if p.is_dir()])
    result.checked = f"{len(files)} .tf files (root + {modules} modules): fmt -check, HCL parse"
    result.new_findings = list(result.findings)
    return result


def check_promtool(root: Path) -> CheckResult:
    """promtool check config and rules, then test rules (every alert's unit tests)."""
    result = CheckResult("promtool")
    promtool = required("promtool")
    directory = root / PROMETHEUS
    rules = sorted(str(p.relative_to(directory)) for p in (directory / "rules").glob("*.yml"))
    tests = sorted(str(p.relative_to(directory)) for p in (directory / "tests").glob("*.yml"))
    steps = {
        "promtool-config": ["check", "config", "prometheus.yml"],
        "promtool-config-k8s": ["check", "config", "--syntax-only", "k8s.yml"],
        "promtool-rules": ["check", "rules", *rules],
        "promtool-test": ["test", "rules", *tests],
    }
    for rule, arguments in steps.items():
        if not (directory / arguments[-1]).exists():
            continue
        ran = run([promtool, *arguments], cwd=directory)
        if "kubernetes_sd_configs not found" in ran.stdout + ran.stderr:
            result.notes.append("k8s.yml not checked: this promtool is built without Kubernetes discovery (Debian's)")
        elif ran.returncode != 0:
            message = (ran.stdout + ran.stderr).strip()[-1500:]
            result.findings.append(Finding(rule, " ".join(arguments[2:]), str(PROMETHEUS), message))
    result.checked = f"prometheus.yml, k8s.yml, {len(rules)} rule files, {len(tests)} rule test files"
    result.new_findings = list(result.findings)
    return result


def check_actionlint(root: Path) -> CheckResult:
    """actionlint 1.7.7 on .github/workflows (none yet is not a failure, and says so)."""
    result = CheckResult("actionlint")
    workflows = sorted(
        path for pattern in ("*.yml", "*.yaml") for path in (root / ".github" / "workflows").glob(pattern)
    )
    result.checked = f"{len(workflows)} workflow files in .github/workflows"
    if not workflows:
        result.notes.append("no workflows to check")
        return result
    actionlint = go_tool(root, ACTIONLINT_MODULE)
    files = [str(path.relative_to(root)) for path in workflows]
    ran = run([str(actionlint), "-no-color", "-format", "{{json .}}", *files], cwd=root)
    findings = parse_actionlint(ran.stdout)
    if findings is None:
        result.error = f"actionlint exited {ran.returncode}: {(ran.stdout + ran.stderr).strip()[-800:]}"
        return result
    result.findings = findings
    result.new_findings = list(findings)
    return result


def parse_actionlint(output: str) -> list[Finding] | None:
    """actionlint's `{{json .}}` output as findings; None when it is not that JSON (the tool failed)."""
    try:
        errors = json.loads(output or "[]")
    except json.JSONDecodeError:
        return None
    return [
        Finding(item["kind"], f"line {item['line']}:{item['column']}", item["filepath"], item["message"])
        for item in errors or []
    ]

"""Runs the checks (all, or those named with --only), prints the summary, and exits 1 on any new finding or tool
failure. Rendering happens once, first; the checks then run in parallel, each timed on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .kubernetes import Rendered, check_kubeconform, render_overlays
from .results import BaselineEntry, BaselineError, CheckResult, format_summary, load_baseline
from .scanners import check_checkov, check_hadolint
from .strict_checks import check_actionlint, check_promtool, check_terraform
from .tools import find_root

CHECKS = ("kustomize", "kubeconform", "checkov", "hadolint", "terraform", "promtool", "actionlint")
NEEDS_RENDERING = {"kustomize", "kubeconform", "checkov"}
BASELINE = Path("infra/checkov-baseline.json")

Check = Callable[[], CheckResult]


def timed(name: str, check: Check) -> CheckResult:
    """Runs `check`; a tool that is missing or breaks becomes the result's error instead of an exception."""
    started = time.monotonic()
    try:
        result = check()
    # Whatever breaks one check (a missing tool, a report in an unexpected shape) fails it, not the others.
    except Exception as error:
        result = CheckResult(name, error=f"{type(error).__name__}: {error}")
    result.seconds = time.monotonic() - started
    return result


def planned_checks(
    root: Path, selected: list[str], rendered: list[Rendered], baseline: list[BaselineEntry]
) -> dict[str, Check]:
    plan: dict[str, Check] = {
        "kubeconform": lambda: check_kubeconform(root, rendered),
        "checkov": lambda: check_checkov(root, rendered, baseline),
        "hadolint": lambda: check_hadolint(root),
        "terraform": lambda: check_terraform(root),
        "promtool": lambda: check_promtool(root),
        "actionlint": lambda: check_actionlint(root),
    }
    return {name: plan[name] for name in selected if name in plan}


def run_checks(root: Path, selected: list[str]) -> list[CheckResult]:
    """The results of the `selected` checks, in CHECKS order."""
    results: dict[str, CheckResult] = {}
    with tempfile.TemporaryDirectory(prefix="check-infra-") as scratch:
        rendered: list[Rendered] = []
        if NEEDS_RENDERING & set(selected):
            started = time.monotonic()
            try:
                rendered, results["kustomize"] = render_overlays(root, Path(scratch))
            except Exception as error:  # as in timed(): reported, and the run fails
                results["kustomize"] = CheckResult("kustomize", error=f"{type(error).__name__}: {error}")
            results["kustomize"].seconds = time.monotonic() - started
        baseline: list[BaselineEntry] = []
        try:
            baseline = load_baseline(root / BASELINE)
        except (BaselineError, ValueError) as error:
            results["baseline"] = CheckResult("baseline", checked=str(BASELINE), error=str(error))
        plan = planned_checks(root, selected, rendered, baseline)
        with ThreadPoolExecutor(max_workers=len(plan) or 1) as pool:
            futures = {name: pool.submit(timed, name, check) for name, check in plan.items()}
            results.update({name: future.result() for name, future in futures.items()})
    order = [*CHECKS, "baseline"]
    return sorted(results.values(), key=lambda result: order.index(result.name))


def proposed_entries(results: list[CheckResult]) -> list[dict[str, str]]:
    """checkov's new findings in the baseline's form; load_baseline refuses them until someone writes a reason."""
    new = [finding for result in results if result.name == "checkov" for finding in result.new_findings]
    return [{"rule": f.rule, "resource": f.resource, "source": f.source, "reason": ""} for f in new]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="check_infra", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=CHECKS,
        metavar="CHECK",
        help=f"run only this check (repeatable): {', '.join(CHECKS)}",
    )
    parser.add_argument(
        "--propose-baseline",
        action="store_true",
        help="also print checkov's new findings as baseline entries, each with an empty reason to fill in",
    )
    parser.add_argument("--root", type=Path, help="repository root (default: found from the working directory)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    started = time.monotonic()
    root = (arguments.root or find_root(Path.cwd())).resolve()
    selected = list(arguments.only or CHECKS)
    results = run_checks(root, selected)
    print(format_summary(results, time.monotonic() - started), flush=True)
    if arguments.propose_baseline:
        print(json.dumps({"findings": proposed_entries(results)}, indent=2))
    return 1 if any(result.failed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a check found, the reviewed baseline it is compared with, and the summary `make check-infra` prints.

A finding is identified by (rule, resource, source); the baseline lists the ones a person reviewed and accepted, each
with the reason. Anything else is new and fails the run, as does a tool that could not run at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One problem a tool reported: `rule` (e.g. CKV_K8S_43), on `resource`, in `source` (a file or overlay)."""

    rule: str
    resource: str
    source: str
    message: str = ""

    def describe(self) -> str:
        text = f"{self.rule} {self.resource} ({self.source})"
        return f"{text}: {self.message}" if self.message else text


def matches(value: str, pattern: str) -> bool:
    return value == pattern or fnmatchcase(value, pattern)


@dataclass(frozen=True)
class BaselineEntry:
    """An accepted finding. `resource` and `source` match exactly or as shell-style patterns (`*`); an exact match
    comes first because resource names hold brackets (login["gateway"]) that a pattern would read as a set."""

    rule: str
    resource: str
    source: str
    reason: str

    def covers(self, finding: Finding) -> bool:
        return (
            self.rule == finding.rule
            and matches(finding.resource, self.resource)
            and matches(finding.source, self.source)
        )


@dataclass
class CheckResult:
    """The outcome of one check: what it looked at (`checked`, in words), its findings, and which are new."""

    name: str
    checked: str = ""
    findings: list[Finding] = field(default_factory=list)
    new_findings: list[Finding] = field(default_factory=list)
    # Baseline entries that matched nothing this run: the finding is gone, so the entry can go too.
    stale_entries: list[BaselineEntry] = field(default_factory=list)
    # A tool that could not run (missing, crashed, unparseable output): the check proves nothing, so it fails.
    error: str = ""
    # Said plainly in the summary without failing, e.g. what could not run offline and what was checked instead.
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error or self.new_findings)

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        return "FAIL" if self.new_findings else "ok"


class BaselineError(ValueError):
    """The baseline file is malformed (an entry without a reason counts as malformed)."""


def load_baseline(path: Path) -> list[BaselineEntry]:
    """The reviewed entries of `path` ({"findings": [{rule, resource, source, reason}, ...]}); none if absent."""
    if not path.exists():
        return []
    document: Any = json.loads(path.read_text())
    entries: list[BaselineEntry] = []
    for number, raw in enumerate(document.get("findings", [])):
        missing = [key for key in ("rule", "resource", "source", "reason") if not str(raw.get(key, "")).strip()]
        if missing:
            raise BaselineError(f"{path}: entry {number} lacks {', '.join(missing)}")
        entries.append(BaselineEntry(raw["rule"], raw["resource"], raw["source"], raw["reason"]))
    return entries


def compare_with_baseline(
    findings: list[Finding], baseline: list[BaselineEntry]
) -> tuple[list[Finding], list[BaselineEntry]]:
    """(findings no entry covers, entries that covered no finding)."""
    new = [finding for finding in findings if not any(entry.covers(finding) for entry in baseline)]
    stale = [entry for entry in baseline if not any(entry.covers(finding) for finding in findings)]
    return new, stale


def apply_baseline(result: CheckResult, baseline: list[BaselineEntry]) -> CheckResult:
    """Fills in `new_findings` and `stale_entries` of `result` from `baseline` (the entries for its tool)."""
    result.new_findings, result.stale_entries = compare_with_baseline(result.findings, baseline)
    return result


def format_result(result: CheckResult, detail_limit: int = 40) -> list[str]:
    """The lines of one check: a status line, then each new finding, error, note and stale entry, indented."""
    accepted = len(result.findings) - len(result.new_findings)
    counts = f"{len(result.findings)} findings ({accepted} in baseline, {len(result.new_findings)} new)"
    lines = [f"{result.status:<6}{result.name:<12}{result.checked}; {counts}  [{result.seconds:.1f}s]"]
    lines += [f"        new: {finding.describe()}" for finding in result.new_findings[:detail_limit]]
    if len(result.new_findings) > detail_limit:
        lines.append(f"        ... and {len(result.new_findings) - detail_limit} more new findings")
    if result.error:
        lines += [f"        error: {line}" for line in result.error.strip().splitlines()[:detail_limit]]
    lines += [f"        note: {note}" for note in result.notes]
    lines += [
        f"        stale baseline entry (matched nothing; remove it): {entry.rule} {entry.resource} ({entry.source})"
        for entry in result.stale_entries
    ]
    return lines


def format_summary(results: list[CheckResult], seconds: float) -> str:
    """The whole report: one block per check, then the verdict and the total time."""
    lines = [f"check-infra: {len(results)} checks"]
    for result in results:
        lines += format_result(result)
    failed = [result.name for result in results if result.failed]
    verdict = f"FAILED ({', '.join(failed)})" if failed else "passed"
    lines.append(f"check-infra {verdict} in {seconds:.1f}s total")
    return "\n".join(lines)

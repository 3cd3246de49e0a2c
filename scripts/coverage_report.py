"""Line+branch coverage per package from the combined `.coverage` data, checked against the floors in
pyproject.toml ([tool.ragstream.coverage_floors]; a floor only ever rises). `make test` runs it after pytest."""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from collections import defaultdict
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]
# The modules the product checklist calls core: handlers, shared plumbing, search and the pure domain logic.
CORE = ("handlers", "indexing", "querying", "search", "fusion", "events", "routing", "consumer", "documents")


def package_of(path: str) -> str:
    parts = Path(path).parts
    return next((p for p in parts if p.startswith("ragstream_")), "other")


def main() -> int:
    data = coverage.Coverage(data_file=str(ROOT / ".coverage"), config_file=str(ROOT / "pyproject.toml"))
    data.load()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "coverage.json"
        data.json_report(outfile=str(report), ignore_errors=True)
        files = json.loads(report.read_text())["files"]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # covered, coverable (statements + branches)
    for filename, measured in files.items():
        summary = measured["summary"]
        covered = summary["covered_lines"] + summary.get("covered_branches", 0)
        coverable = summary["num_statements"] + summary.get("num_branches", 0)
        for key in (package_of(filename), "total", *(["core"] if Path(filename).stem in CORE else [])):
            totals[key][0] += covered
            totals[key][1] += coverable
    floors = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ragstream"]["coverage_floors"]
    failed = False
    print(f"{'package':<22}{'covered':>10}{'of':>8}{'percent':>9}{'floor':>7}")
    for key in sorted(totals, key=lambda k: (k in ("core", "total"), k)):
        covered, coverable = totals[key]
        percent = 100.0 * covered / coverable if coverable else 100.0
        floor = float(floors.get(key, 0))
        mark = "" if percent >= floor else "  BELOW FLOOR"
        failed |= percent < floor
        print(f"{key:<22}{covered:>10}{coverable:>8}{percent:>8.1f}%{floor:>6.0f}%{mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

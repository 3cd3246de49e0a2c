"""The chaos system (one per run of the suite, healed before every scenario) and the suite's one-line summary.

The system is package-scoped: it stops after the last chaos scenario, so under `make test` (which runs the fast
subset in the integration tier) it is gone before the e2e tier starts its own.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chaos.scenario import REPORTS, wait_flowing
from chaos.system import ChaosSystem

_OUTCOMES: dict[str, bool] = {}


@pytest.fixture(scope="package")
def chaos_infrastructure() -> Iterator[ChaosSystem]:
    """Kafka and Postgres started from the main thread, so they die with the test process if it is killed.

    Not under pytest's tmp_path: that is private to root, and Postgres runs as an unprivileged user when we are
    root, so it could not reach its data directory."""
    root = Path(tempfile.mkdtemp(prefix="ragstream-chaos-"))
    root.chmod(0o755)
    system = ChaosSystem(root)
    try:
        system.start_infrastructure()
        yield system
    finally:
        codes = system.shutdown()
        for data in ("kafka", "postgres"):
            shutil.rmtree(root / data, ignore_errors=True)
        print(f"chaos system stopped: {codes}; logs in {system.log_dir}")


@pytest.fixture(scope="package")
async def chaos_system(chaos_infrastructure: ChaosSystem) -> AsyncIterator[ChaosSystem]:
    await chaos_infrastructure.start_services()
    yield chaos_infrastructure


@pytest.fixture
async def system(chaos_system: ChaosSystem) -> ChaosSystem:
    """The chaos system with every process back up and every consumer group consuming again, whatever the
    scenario before did to it."""
    await chaos_system.heal()
    await wait_flowing(chaos_system)
    return chaos_system


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "chaos" not in report.keywords:
        return
    if report.when == "call" or report.failed:
        _OUTCOMES[report.nodeid] = _OUTCOMES.get(report.nodeid, True) and report.passed


def summary_line() -> str:
    return json.dumps(
        {
            "scenarios": len(_OUTCOMES),
            "passed": sum(_OUTCOMES.values()),
            "lost": sum(len(r.lost) for r in REPORTS),
            "duplicated": sum(len(r.duplicated) for r in REPORTS),
            "dead_lettered_good": sum(len(r.dead_lettered_good) for r in REPORTS),
        }
    )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The last line of the run: one JSON object with the scenario counts and the audits' totals."""
    if _OUTCOMES:
        sys.stdout.write(summary_line() + "\n")
        sys.stdout.flush()

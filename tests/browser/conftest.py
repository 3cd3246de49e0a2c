"""The web console in headless Chromium (Selenium 4) against the whole running system of tests/e2e.

The system fixtures are tests/e2e/conftest.py's, re-exported here (fixtures are visible per directory). When the
e2e tier ran first in the same session its running system is reused (`reuse_running_system`), so one session
never starts two; alone, `pytest -m browser tests/browser` starts its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.console import Console
from e2e.conftest import (  # noqa: F401 (fixtures, found by name)
    box,
    drive,
    embed_metrics_port,
    gateway,
    graph,
    metrics_ports,
    otlp_receiver,
    system,
)
from ragstream_devstack.system import LocalServices
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"
BROWSER_DIR = "tests/browser"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> tuple[str, str] | None:
    """(browser, driver) from CHROMIUM_BIN / CHROMEDRIVER_BIN or PATH (Debian: /usr/bin/chromium, chromedriver)."""
    browser = os.environ.get("CHROMIUM_BIN") or next(filter(None, map(shutil.which, CHROMIUM_CANDIDATES)), None)
    driver = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After tests/conftest.py's tier order: the browser tests last, so that they find the e2e tier's system up."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def _system_definitions(session: pytest.Session) -> list[Any]:
    """Every FixtureDef named `system` the collected items see (FuncFixtureInfo, stable across pytest 7-9)."""
    found: dict[int, Any] = {}
    for item in session.items:
        info = getattr(item, "_fixtureinfo", None)
        for definition in getattr(info, "name2fixturedefs", {}).get("system", ()):
            found[id(definition)] = definition
    return list(found.values())


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Reuse a system another directory's `system` fixture already started (the e2e tier runs first): seed this
    directory's copy of the fixture with it, so it is not started a second time on the same broker and database."""
    visible = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).get("system")
    if not visible or visible[-1].cached_result is not None:
        return
    ours = visible[-1]  # the definition this item would use: this directory's re-export
    running = [d for d in _system_definitions(item.session) if d is not ours and d.cached_result is not None]
    if running and running[0].cached_result[2] is None:
        ours.cached_result = (running[0].cached_result[0], None, None)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots go to $RAGSTREAM_ARTIFACTS/browser, else tests/browser/artifacts (git-ignored)."""
    root = os.environ.get("RAGSTREAM_ARTIFACTS")
    directory = Path(root) / "browser" if root else Path(__file__).parent / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def chromium_driver() -> Iterator[webdriver.Chrome]:
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium and chromedriver found (apt-get install chromium chromium-driver)")
    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations and uncaught errors
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(
    system: LocalServices,  # noqa: F811 (the re-exported fixture)
    chromium_driver: webdriver.Chrome,
    artifacts_dir: Path,
) -> Iterator[Console]:
    """The console on the running gateway, signed out at the start of each test."""
    page = Console(chromium_driver, system.gateway_url, artifacts_dir)
    page.open("index.html")
    chromium_driver.execute_script("sessionStorage.clear()")
    yield page
    page.fail_on_console_errors()

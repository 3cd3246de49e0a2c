"""The web console in headless Chromium (Selenium 4) against the whole running system.

`system` and the other system fixtures come from tests/support/system_plugin.py (registered in tests/conftest.py),
the same definitions the e2e tier uses: when both tiers run in one session they share one running system (pytest
caches the session fixture); alone, `pytest -m browser tests/browser` starts it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.console import Console
from ragstream_devstack.system import LocalServices
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from support.system_plugin import ADMIN_TOKEN as ADMIN_TOKEN  # the running system's, for the admin pages

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
    system: LocalServices,
    chromium_driver: webdriver.Chrome,
    artifacts_dir: Path,
) -> Iterator[Console]:
    """The console on the running gateway, signed out at the start of each test."""
    page = Console(chromium_driver, system.gateway_url, artifacts_dir)
    page.open("index.html")
    chromium_driver.execute_script("sessionStorage.clear()")
    yield page
    page.fail_on_console_errors()

"""Driving the web console like a user: open pages, sign in, wait for what the page shows, check it with
axe-core and keep screenshots. Shared by the browser tests (not a test module itself)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

AXE_SOURCE = Path(__file__).parent / "assets" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: "tag", values: arguments[0]}})
  .then((result) => done(result.violations.map((v) => ({id: v.id, help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}))))
  .catch((error) => done([{id: "axe-error", help: String(error), nodes: []}]));
"""
# What the browser's console may log without the test failing: refused credentials answer 401/403 on purpose.
PROBLEMS_LOGGED = ("Content Security Policy", "Uncaught", "SyntaxError", "TypeError", "ReferenceError")


class Console:
    def __init__(self, driver: webdriver.Chrome, gateway_url: str, artifacts: Path) -> None:
        self.driver = driver
        self.base = f"{gateway_url}/ui/"
        self.artifacts = artifacts
        driver.get_log("browser")  # drop what earlier tests left

    def open(self, page: str) -> None:
        self.driver.get(self.base + page)
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete")

    def wait(self, condition: Callable[[webdriver.Chrome], Any], timeout_s: float = 30) -> Any:
        return WebDriverWait(self.driver, timeout_s, poll_frequency=0.2).until(condition)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str, timeout_s: float = 30) -> WebElement:
        return self.wait(
            lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None), timeout_s
        )

    def text_of(self, css: str) -> str:
        return self.find(css).text

    def sign_in(self, api_key: str = "", admin_token: str = "") -> None:
        self.open("index.html")
        self.find("#api-key").send_keys(api_key)
        self.find("#admin-token-input").send_keys(admin_token)
        self.find("#sign-in button[type=submit]").click()
        self.wait(lambda d: not d.current_url.endswith("index.html"))
        self.wait(lambda d: d.find_elements(By.ID, "sign-out"))

    def status(self) -> str:
        return self.text_of("#status")

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"console-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def accessibility_violations(self) -> list[dict[str, Any]]:
        """axe-core's WCAG 2.1 A and AA violations of the page as it is now."""
        if not self.driver.execute_script("return typeof axe !== 'undefined'"):
            self.driver.execute_script(AXE_SOURCE.read_text())
        violations: list[dict[str, Any]] = self.driver.execute_async_script(RUN_AXE, WCAG_21_AA)
        return violations

    def fail_on_console_errors(self) -> None:
        """CSP refusals and script errors show up only in the browser's console: none may appear."""
        logged = [entry["message"] for entry in self.driver.get_log("browser")]
        problems = [message for message in logged if any(marker in message for marker in PROBLEMS_LOGGED)]
        assert problems == [], problems

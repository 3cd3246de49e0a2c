"""The console's admin pages and its accessibility, in headless Chromium against the running system: a key is
created and rotated (each new secret shown once), every page passes axe-core's WCAG 2.1 A/AA rules with zero
violations, stays within a phone's width, and is kept as a screenshot."""

from __future__ import annotations

import httpx
import pytest
from browser.console import Console
from ragstream_common.registry import SERVICES
from ragstream_devstack.system import LocalServices
from support.system_plugin import ADMIN_TOKEN

pytestmark = pytest.mark.browser
# Each page and what shows it has loaded its data (or, for forms, its first field).
PAGES = {
    "index.html": "#api-key",
    "documents.html": "#document-list table, #document-list p",
    "chat.html": "#question",
    "admin-tenants.html": "#tenant dl",
    "admin-keys.html": "#keys table",
    "admin-audit.html": "#entries table, #entries p",
    "admin-connectors.html": "#connectors table, #connectors p",
    "admin-dlq.html": "#depths table",
    "admin-usage.html": "#charts figure, #charts p",
    "admin-health.html": "#services table",
}
PHONE = (390, 844)


@pytest.fixture
def admin_console(console: Console) -> Console:
    console.sign_in(api_key="dev-key", admin_token=ADMIN_TOKEN)
    return console


def test_a_key_is_created_then_rotated_and_each_secret_shown_once(
    admin_console: Console, system: LocalServices
) -> None:
    console = admin_console
    console.open("admin-keys.html")
    console.visible("#keys table")
    name = "console-rotation"
    console.find("#key-name").send_keys(name)
    console.find("#create-key button[type=submit]").click()
    created = console.visible("#new-key").get_attribute("value") or ""
    assert created and console.driver.switch_to.active_element.get_attribute("id") == "new-key"
    key_id = console.text_of("label[for=new-key]").removeprefix("Key ")
    grace = console.find("#grace-seconds")
    grace.clear()
    grace.send_keys("60")
    console.visible(f"button[data-rotate='{key_id}']").click()
    console.wait(lambda d: f"Rotated {key_id}" in console.status())
    rotated = console.find("#new-key").get_attribute("value") or ""
    assert rotated and rotated != created
    assert created not in console.driver.page_source  # shown once: gone with its panel, never in the listing
    row = next(r for r in console.find_all("#keys tbody tr") if key_id in r.text)
    assert "rotated; works until" in row.text
    console.screenshot("admin-keys-rotated")
    with httpx.Client(base_url=system.gateway_url, timeout=30) as client:  # both work: the old one in its grace
        for key in (created, rotated):
            response = client.get("/v1/documents?limit=1", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.text


def test_health_page_shows_every_service_serving(admin_console: Console) -> None:
    """The gateway's GET /v1/admin/health, one row per worker of the registry."""
    console = admin_console
    console.open("admin-health.html")
    console.visible("#services table")
    rows = {r.find_elements("css selector", "td")[0].text: r.text for r in console.find_all("#services tbody tr")}
    workers = {name for name, spec in SERVICES.items() if spec.http_port is None}
    assert set(rows) == workers and all("SERVING" in row and "NOT_SERVING" not in row for row in rows.values()), rows
    assert "Every service is serving" in console.text_of("#verdict")
    assert "database" in console.text_of("#gateway")


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_has_no_wcag_21_aa_violations_and_fits_a_phone(admin_console: Console, page: str) -> None:
    console = admin_console
    console.driver.set_window_size(1280, 1000)
    console.open(page)
    console.visible(PAGES[page])
    violations = console.accessibility_violations()
    assert violations == [], violations
    console.screenshot(page.removesuffix(".html").replace("index", "signed-in"))
    console.driver.set_window_size(*PHONE)
    try:
        console.open(page)
        console.visible(PAGES[page])
        width = console.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{page} is wider than a phone: {width}"
        assert console.accessibility_violations() == []
        console.screenshot(f"{page.removesuffix('.html')}-phone")
    finally:
        console.driver.set_window_size(1280, 1000)


def test_keyboard_alone_reaches_the_navigation_and_shows_focus(admin_console: Console) -> None:
    console = admin_console
    console.open("documents.html")
    body = console.find("body")
    body.send_keys("\ue004")  # Tab: the skip link comes first
    first = console.driver.switch_to.active_element
    assert first.get_attribute("class") == "skip-link" and first.is_displayed()
    outline = console.driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", first)
    assert outline == "solid"
    first.send_keys("\ue004")
    assert console.driver.switch_to.active_element.get_attribute("href").endswith("documents.html")

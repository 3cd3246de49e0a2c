"""The web console's static serving: /ui serves the pages and assets under the strict CSP, the HTML holds no
inline script or style (the CSP would block it), every referenced asset exists, and the API docs are untouched."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from ragstream_gateway.apidocs import DOCS_CSP
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.console import STATIC_DIR
from ragstream_gateway.security_headers import CONSOLE_CSP
from unit.gateway_deps import gateway_deps

pytestmark = pytest.mark.unit
PAGES = sorted(STATIC_DIR.glob("*.html"))
MODULES = sorted((STATIC_DIR / "js").glob("*.js"))
IMPORT = re.compile(r"""^import .* from "(\./[^"]+)";$""", re.MULTILINE)


class PageParts(HTMLParser):
    """The parts of a page the CSP cares about: scripts, stylesheets, inline styles and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_styles: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in attributes
            if "src" in attributes:
                self.references.append(attributes["src"] or "")
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.references.append(attributes.get("href") or "")
        if tag == "style":
            self.inline_styles.append("<style>")
        self.inline_styles += [name for name in attributes if name == "style"]
        self.inline_scripts += [name for name in attributes if name.startswith("on")]
        self.inline_scripts += [value or "" for value in attributes.values() if (value or "").startswith("javascript:")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip())


def _parts(page: Path) -> PageParts:
    parser = PageParts()
    parser.feed(page.read_text())
    return parser


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(admin_token=None), gateway_deps())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def test_the_console_has_its_pages() -> None:
    names = {page.name for page in PAGES}
    assert {"index.html", "documents.html", "chat.html", "admin-keys.html", "admin-usage.html"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_pages_hold_no_inline_script_or_style(page: Path) -> None:
    parts = _parts(page)
    assert parts.inline_scripts == []
    assert parts.inline_styles == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_asset_a_page_references_exists(page: Path) -> None:
    references = _parts(page).references
    assert any(reference.startswith("js/") for reference in references)
    for reference in references:
        assert (STATIC_DIR / reference).is_file(), reference


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.name)
def test_every_module_import_exists_and_no_module_writes_html(module: Path) -> None:
    source = module.read_text()
    for target in IMPORT.findall(source):
        assert (module.parent / target).is_file(), target
    assert ".innerHTML" not in source and "insertAdjacentHTML" not in source  # server values stay text
    assert "eval(" not in source


async def test_ui_redirects_to_the_index_which_carries_the_strict_csp(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/ui")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/ui/"
    index = await client.get("/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["content-security-policy"] == CONSOLE_CSP
    assert "script-src 'self';" in CONSOLE_CSP and "unsafe-inline" not in CONSOLE_CSP
    assert index.headers["x-frame-options"] == "DENY"
    assert index.text == (STATIC_DIR / "index.html").read_text()


@pytest.mark.parametrize("asset", ["js/api.js", "js/chat.js", "css/console.css", "documents.html"])
async def test_assets_are_served_with_their_types_and_the_csp(client: httpx.AsyncClient, asset: str) -> None:
    response = await client.get(f"/ui/{asset}")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONSOLE_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    expected = {"js": "javascript", "css": "text/css", "html": "text/html"}[asset.rsplit(".", 1)[1]]
    assert expected in response.headers["content-type"]


async def test_unknown_console_paths_are_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/no-such-page.html")
    assert response.status_code == 404
    assert response.headers["content-security-policy"] == CONSOLE_CSP


async def test_api_and_docs_keep_their_own_headers(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == DOCS_CSP
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert not any(path.startswith("/ui") for path in schema.json()["paths"])
    health = await client.get("/healthz")
    assert health.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert health.headers["cache-control"] == "no-store"

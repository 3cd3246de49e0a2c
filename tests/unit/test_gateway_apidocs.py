"""The air-gapped API reference: /docs and /redoc load only vendored same-origin files, with no inline script."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI
from ragstream_gateway.apidocs import (
    ASSETS_DIR,
    ASSETS_PATH,
    DOCS_CSP,
    DOCS_PATHS,
    REDOC_CSP,
    REDOC_VERSION,
    SERVED_ASSETS,
    SWAGGER_UI_VERSION,
    register_api_docs,
)
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from unit.gateway_deps import gateway_deps

pytestmark = pytest.mark.unit
PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _docs_app(**settings: object) -> FastAPI:
    gateway_settings = GatewaySettings(admin_token=None, **settings)  # type: ignore[arg-type]
    app = create_app(gateway_settings, gateway_deps())
    # Until app.py passes docs_url=None/redoc_url=None, FastAPI's CDN pages hold the paths: drop them here.
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", "") not in (*PAGES, "/docs/oauth2-redirect")
    ]
    register_api_docs(app, gateway_settings)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_docs_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as docs_client:
        yield docs_client


class _PageReferences(HTMLParser):
    """Every URL a page makes the browser load, and the text of any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data-openapi-url"):
            if values.get(name):
                self.urls.append(values[name] or "")
        self._in_script = tag == "script"
        if tag == "script":
            assert "src" in values, "a <script> without src is inline"
        assert not any(name.startswith("on") for name in values), f"inline event handler on <{tag}>"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


async def _references(client: httpx.AsyncClient, page: str) -> _PageReferences:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    parser = _PageReferences()
    parser.feed(response.text)
    assert "<style" not in response.text.lower(), "inline <style> would need 'unsafe-inline'"
    assert parser.urls, page
    return parser


@pytest.mark.parametrize("page", PAGES)
async def test_page_loads_only_same_origin_urls_and_no_inline_script(client: httpx.AsyncClient, page: str) -> None:
    references = await _references(client, page)
    assert references.inline_scripts == []
    for url in references.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from another origin"
    assert not re.search(r"https?://", (await client.get(page)).text), "no absolute URL to any host"


@pytest.mark.parametrize("page", PAGES)
async def test_every_referenced_file_is_served_with_its_type(client: httpx.AsyncClient, page: str) -> None:
    for url in (await _references(client, page)).urls:
        response = await client.get(url)
        assert response.status_code == 200, url
        if url == "/openapi.json":
            assert response.json()["info"]["title"] == "Ragstream Gateway"
            continue
        suffix = url[url.rindex(".") :]
        assert response.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], url
        assert response.content == (ASSETS_DIR / url.removeprefix(ASSETS_PATH + "/")).read_bytes()


async def test_only_allowlisted_assets_are_served(client: httpx.AsyncClient) -> None:
    for name in SERVED_ASSETS:
        assert (await client.get(f"{ASSETS_PATH}/{name}")).status_code == 200, name
    for name in ("LICENSE-redoc", "VERSIONS.md", "..%2F__init__.py", "missing.js"):
        assert (await client.get(f"{ASSETS_PATH}/{name}")).status_code == 404, name
    assert (await client.get(f"{ASSETS_PATH}/../__init__.py")).status_code == 404
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404


def test_versions_md_pins_the_served_files_by_hash() -> None:
    versions = (ASSETS_DIR / "VERSIONS.md").read_text()
    assert f"swagger-ui-dist@{SWAGGER_UI_VERSION}" in versions and f"redoc@{REDOC_VERSION}" in versions
    recorded = dict(re.findall(r"^\| `([^`]+)` \| [^|]+ \| `([0-9a-f]{64})` \|", versions, flags=re.MULTILINE))
    vendored = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "redoc.standalone.js"}
    assert vendored <= recorded.keys()
    for name, digest in recorded.items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == digest, name


def _directives(csp: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in csp.split(";"))


@pytest.mark.parametrize(("page", "csp"), [("/docs", DOCS_CSP), ("/redoc", REDOC_CSP)])
async def test_each_page_carries_its_csp(client: httpx.AsyncClient, page: str, csp: str) -> None:
    response = await client.get(page)
    assert response.headers["content-security-policy"] == csp
    assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"


def test_csps_allow_scripts_and_connections_to_self_only() -> None:
    for csp in (DOCS_CSP, REDOC_CSP):
        directives = _directives(csp)
        assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["connect-src"] == "'self'"
        assert "http" not in csp and "*" not in csp
    # Only ReDoc needs inline styles (styled-components) and a blob: worker (its search index).
    assert _directives(DOCS_CSP)["style-src"] == "'self'" and "worker-src" not in _directives(DOCS_CSP)
    assert _directives(REDOC_CSP)["style-src"] == "'self' 'unsafe-inline'"
    assert DOCS_PATHS == PAGES


async def test_nothing_is_served_when_docs_are_off() -> None:
    app = _docs_app(docs_enabled=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as off:
        for path in (*PAGES, f"{ASSETS_PATH}/swagger-ui-bundle.js", "/openapi.json"):
            assert (await off.get(path)).status_code == 404, path

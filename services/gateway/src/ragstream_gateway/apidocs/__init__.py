"""The interactive API reference (/docs: Swagger UI, /redoc: ReDoc), served air-gapped from the gateway itself.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN and start Swagger UI with an inline script, so
offline they render blank and they need a loose CSP. Here both libraries are vendored, pinned and hashed in
`assets/VERSIONS.md`, served under /docs/assets/ from an allowlist with fixed content types (no directory
listing, no path from the request reaches the file system), and both pages are our own small HTML that loads
only same-origin files. Each page sets its own CSP (SecurityHeaders keeps a route's value): DOCS_CSP for
Swagger UI, REDOC_CSP (inline styles and a blob: worker too) for ReDoc. docs/api-docs.md has the details.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

if TYPE_CHECKING:  # config imports the problem module, which imports this one's CSP through security_headers
    from ragstream_gateway.config import GatewaySettings

SWAGGER_UI_VERSION: Final = "5.35.0"  # npm swagger-ui-dist
REDOC_VERSION: Final = "2.5.4"  # npm redoc
DOCS_PATH: Final = "/docs"
REDOC_PATH: Final = "/redoc"
ASSETS_PATH: Final = f"{DOCS_PATH}/assets"
# The paths that get DOCS_CSP instead of the API's `default-src 'none'` (the assets are under /docs).
DOCS_PATHS: Final = (DOCS_PATH, REDOC_PATH)
ASSETS_DIR: Final = Path(__file__).parent / "assets"

# Checked in headless Chromium: Swagger UI runs under this CSP without a violation (its inline styles are set
# through the CSSOM, which CSP allows). img-src data: covers Swagger UI's CSS icons.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# /redoc only: ReDoc styles itself with styled-components, which writes <style> text at run time (it fails to
# start without 'unsafe-inline' styles; scripts stay 'self'), and builds its search index in a Web Worker from
# a blob: URL. Its "API docs by Redocly" logo comes from cdn.redoc.ly: refused here, and ReDoc then hides it.
REDOC_CSP: Final = DOCS_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + "; worker-src blob:"

JAVASCRIPT: Final = "text/javascript; charset=utf-8"
# Everything /docs/assets/ serves, with its content type; the licences stay in the package, unserved.
SERVED_ASSETS: Final = {
    "swagger-ui-bundle.js": JAVASCRIPT,
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-init.js": JAVASCRIPT,
    "redoc.standalone.js": JAVASCRIPT,
    "apidocs.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Vendored files change only with a new pinned version; our two small files may change with a deploy.
ASSET_CACHE_CONTROL: Final = "public, max-age=3600"


def _head(title: str, stylesheets: tuple[str, ...]) -> str:
    links = "".join(f'<link rel="stylesheet" href="{ASSETS_PATH}/{name}">\n' for name in stylesheets)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{links}"
        f'<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">\n</head>\n'
    )


def swagger_ui_page(title: str, openapi_url: str) -> str:
    """/docs: Swagger UI, started by swagger-init.js from the page's data-openapi-url."""
    return (
        _head(f"{title} - Swagger UI", ("apidocs.css", "swagger-ui.css"))
        + f'<body>\n<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>\n'
        f'<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{ASSETS_PATH}/swagger-init.js"></script>\n</body>\n</html>\n'
    )


def redoc_page(title: str, openapi_url: str) -> str:
    """/redoc: ReDoc starts itself from the <redoc spec-url> element, no init script needed."""
    return (
        _head(f"{title} - ReDoc", ("apidocs.css",))
        + "<body>\n<noscript>ReDoc needs JavaScript to show the API reference.</noscript>\n"
        f'<redoc spec-url="{escape(openapi_url)}"></redoc>\n'
        f'<script src="{ASSETS_PATH}/redoc.standalone.js"></script>\n</body>\n</html>\n'
    )


def register_api_docs(app: FastAPI, settings: GatewaySettings) -> None:
    """Serve /docs, /redoc and /docs/assets/* on `app`; nothing when the docs are off (GATEWAY_DOCS_ENABLED).

    The app must be built with docs_url=None and redoc_url=None (else FastAPI's CDN pages win the paths) and
    an openapi_url, which both pages load.
    """
    if not settings.docs_enabled or app.openapi_url is None:
        return
    swagger_html = swagger_ui_page(app.title, app.openapi_url)
    redoc_html = redoc_page(app.title, app.openapi_url)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger_html, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(redoc_html, headers={"Content-Security-Policy": REDOC_CSP})

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        media_type = SERVED_ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404)
        headers = {"Cache-Control": ASSET_CACHE_CONTROL}
        return FileResponse(ASSETS_DIR / name, media_type=media_type, headers=headers)

"""The web console: static HTML pages and ES modules served at /ui, talking to the public HTTP API only.

No build step and no server-side rendering: the browser holds the API key (sessionStorage) and calls /v1/... on
the same origin, so the console is an ordinary API client. Its Content-Security-Policy is set by
`security_headers.SecurityHeaders` for every path under CONSOLE_PATH.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from ragstream_gateway.security_headers import CONSOLE_PATH

STATIC_DIR = Path(__file__).parent / "static"


async def _to_console_index() -> RedirectResponse:
    return RedirectResponse(f"{CONSOLE_PATH}/", status_code=308)


def mount_console(app: FastAPI) -> None:
    """Serve the console at /ui/ (index.html for directories) and redirect the bare /ui to it."""
    app.add_api_route(CONSOLE_PATH, _to_console_index, methods=["GET"], include_in_schema=False)
    app.mount(CONSOLE_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="console")

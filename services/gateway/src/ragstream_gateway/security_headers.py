"""Security headers on every response (OWASP Secure Headers for APIs); a route's own value wins.

API responses (JSON, problem+json, event streams) are never cached (they carry tenants' data), never sniffed as
another type, never framed and never run as a document (`default-src 'none'`). The interactive docs pages (/docs,
/redoc) load only the gateway's vendored Swagger UI / ReDoc and set their own strict CSP (apidocs.DOCS_CSP /
REDOC_CSP). The web console under /ui is
same-origin HTML and ES modules with no inline script or style, so its policy allows only 'self' (and data: images).
HSTS is the TLS terminator's (the ingress gateway): this process speaks plain HTTP behind it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragstream_gateway.apidocs import DOCS_CSP

COMMON_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
API_HEADERS: Mapping[str, str] = {
    **COMMON_HEADERS,
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
DOCS_HEADERS: Mapping[str, str] = {**COMMON_HEADERS, "Content-Security-Policy": DOCS_CSP}
CONSOLE_PATH = "/ui"
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Revalidated on every load (ETag), so a new release's assets are picked up; the pages hold no tenant data.
CONSOLE_HEADERS: Mapping[str, str] = {
    **COMMON_HEADERS,
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONSOLE_CSP,
}


def _is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(f"{CONSOLE_PATH}/")


class SecurityHeaders:
    """Adds API_HEADERS, DOCS_HEADERS under `docs_paths` (the HTML pages, not /openapi.json), or CONSOLE_HEADERS
    under CONSOLE_PATH."""

    def __init__(self, app: ASGIApp, docs_paths: Collection[str] = ()) -> None:
        self.app = app
        self.docs_paths = tuple(path for path in docs_paths if path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if _is_console(path):
            wanted = CONSOLE_HEADERS
        elif path.startswith(self.docs_paths):
            wanted = DOCS_HEADERS
        else:
            wanted = API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

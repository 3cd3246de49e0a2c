"""Security headers on every response (OWASP Secure Headers for APIs); a route's own value wins.

API responses (JSON, problem+json, event streams) are never cached (they carry tenants' data), never sniffed as
another type, never framed and never run as a document (`default-src 'none'`). The interactive docs pages load
Swagger UI / ReDoc from their CDN, so they only forbid framing (clickjacking). HSTS is the TLS terminator's (the
ingress gateway): this process speaks plain HTTP behind it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
DOCS_HEADERS: Mapping[str, str] = {**COMMON_HEADERS, "Content-Security-Policy": "frame-ancestors 'none'"}


class SecurityHeaders:
    """Adds API_HEADERS, or DOCS_HEADERS under `docs_paths` (the HTML pages, not /openapi.json)."""

    def __init__(self, app: ASGIApp, docs_paths: Collection[str] = ()) -> None:
        self.app = app
        self.docs_paths = tuple(path for path in docs_paths if path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        wanted = DOCS_HEADERS if path.startswith(self.docs_paths) else API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

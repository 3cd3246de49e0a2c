"""The gateway's HTTP API as the CLI uses it: one httpx client, credentials chosen per call, problems raised.

Every error the gateway answers is RFC 9457 problem+json; `ApiError` carries it so that `render.problem_line`
can print it as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ragstream_cli.config import ConfigError, Settings

Auth = Literal["key", "admin", "none"]
# Long enough for a slow query; uploads and listings answer well within it.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


@dataclass
class ApiError(Exception):
    """A refusal or failure from the gateway (or no gateway at all: status 0)."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    extensions: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.detail}"


def problem_from(response: httpx.Response) -> ApiError:
    """The problem a non-2xx response describes; plain bodies become an about:blank problem."""
    body: Any = None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    if isinstance(body, dict):
        known = {"type", "title", "status", "detail"}
        detail = body.get("detail")
        if not isinstance(detail, str):  # FastAPI's own 422s carry a list of errors as the detail
            detail = json.dumps(detail) if detail is not None else response.reason_phrase
        return ApiError(
            status=int(body.get("status") or response.status_code),
            title=str(body.get("title") or response.reason_phrase),
            detail=detail,
            type=str(body.get("type") or "about:blank"),
            extensions={k: v for k, v in body.items() if k not in known},
        )
    text = response.text.strip()[:200] if response.content else response.reason_phrase
    return ApiError(response.status_code, response.reason_phrase, text or response.reason_phrase)


class Api:
    """A gateway at `settings.url`, with the API key or the admin token as each call needs."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._http = httpx.Client(base_url=settings.url, timeout=DEFAULT_TIMEOUT, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def headers(self, auth: Auth) -> dict[str, str]:
        if auth == "none":
            return {}
        if auth == "admin":
            if not self.settings.admin_token:
                raise ConfigError("this command needs an admin token: --admin-token, RAGSTREAM_ADMIN_TOKEN, a profile")
            return {"Authorization": f"Bearer {self.settings.admin_token}"}
        if not self.settings.api_key:
            raise ConfigError("no API key: --api-key, RAGSTREAM_API_KEY or `ragstream config set api_key`")
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    def send(
        self,
        method: str,
        path: str,
        *,
        auth: Auth = "key",
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The response when it is 2xx, else the problem raised."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, headers=self.headers(auth), json=json_body, params=query, files=files, data=data
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.settings.url, exc) from None
        if response.is_success:
            return response
        raise problem_from(response)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, path: str, json_body: Any) -> Iterator[httpx.Response]:
        """A POST answered as Server-Sent Events; a refusal raises before any event."""
        headers = {**self.headers("key"), "Accept": "text/event-stream"}
        try:
            with self._http.stream("POST", path, headers=headers, json=json_body) as response:
                if not response.is_success:
                    response.read()
                    raise problem_from(response)
                yield response
        except httpx.HTTPError as exc:
            raise unreachable(self.settings.url, exc) from None


def unreachable(url: str, exc: httpx.HTTPError) -> ApiError:
    detail = f"cannot reach {url}: {exc or type(exc).__name__}"
    return ApiError(0, "Unreachable", detail, "urn:ragstream:cli:unreachable")

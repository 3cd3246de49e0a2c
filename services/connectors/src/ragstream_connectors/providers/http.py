"""HTTP to document management systems: bearer tokens, throttling, retries and streamed downloads, written once.

Every provider's API throttles with 429 (and 503) and says how long to wait in `Retry-After` (seconds or an
HTTP date; Graph: https://learn.microsoft.com/graph/throttling, Box: https://developer.box.com/guides/api-calls/
permissions-and-errors/rate-limits/, Drive: https://developers.google.com/drive/api/guides/limits). `ProviderHttp`
honours it, otherwise backs off exponentially with full jitter, and gives up after `max_attempts` with a
transient `ProviderError`, so the consumer retries the whole notification later instead of losing it. A
provider with throttling signals of its own (Drive's 403 `rateLimitExceeded`) passes `is_throttled`.
Downloads are streamed to a temporary file in fixed-size pieces while hashing; memory stays flat for any size.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from ragstream_connectors.metrics import THROTTLED
from ragstream_connectors.providers.base import CursorExpired, Downloaded, ProviderError

_RETRYABLE = frozenset({429, 500, 502, 503, 504})
DOWNLOAD_PIECE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0

    def backoff_s(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)] (AWS architecture blog, "Exponential Backoff
        And Jitter"), so many throttled workers do not retry in step."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


def retry_after_s(response: httpx.Response, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """`Retry-After` as seconds (RFC 9110 10.2.3: delay-seconds or an HTTP-date); None when absent or garbled."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now()).total_seconds())
    except (TypeError, ValueError):
        return None


ThrottleSignal = Callable[[httpx.Response], bool]


def _never(_: httpx.Response) -> bool:
    return False


class OAuthToken:
    """A bearer token from an OAuth 2.0 token endpoint (client credentials or refresh token grant, RFC 6749
    4.4 / 6), cached until a minute before it expires."""

    def __init__(self, token_url: str, form: Mapping[str, str]) -> None:
        self._token_url = token_url
        self._form = dict(form)
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def bearer(self, client: httpx.AsyncClient, *, refresh: bool = False) -> str:
        async with self._lock:
            if refresh or not self._token or time.monotonic() > self._expires_at - 60:
                response = await client.post(self._token_url, data=self._form)
                if response.status_code >= 400:
                    transient = response.status_code >= 500 or response.status_code == 429
                    raise ProviderError(
                        f"token endpoint refused: {response.status_code} {_error_text(response)}",
                        transient=transient,
                        status=response.status_code,
                    )
                body = response.json()
                self._token = str(body["access_token"])
                self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
            return self._token


class ProviderHttp:
    """An httpx client for one connector: authenticated, throttling-aware requests and streamed downloads."""

    def __init__(
        self,
        provider: str,
        token: OAuthToken | None,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        is_throttled: ThrottleSignal = _never,
    ) -> None:
        self.provider = provider
        self._token = token
        # Responses besides 429/503 that mean "slow down" (their body is read before this is asked).
        self._is_throttled = is_throttled
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        # Redirects are followed by hand in `download` (a content redirect leaves the API host: no bearer there).
        self.client = httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _headers(self, extra: Mapping[str, str] | None, *, refresh: bool = False) -> dict[str, str]:
        headers = dict(extra or {})
        if self._token is not None:
            headers["Authorization"] = f"Bearer {await self._token.bearer(self.client, refresh=refresh)}"
        return headers

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One API call with retries; 410 raises CursorExpired, other 4xx a permanent ProviderError."""
        refreshed = refresh_now = False
        for attempt in range(self._policy.max_attempts):
            try:
                request_headers = await self._headers(headers, refresh=refresh_now)
                refresh_now = False
                response = await self.client.request(method, url, headers=request_headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 == self._policy.max_attempts:
                    raise ProviderError(f"{method} {url}: {exc!r}", transient=True) from exc
                await self._sleep(self._policy.backoff_s(attempt))
                continue
            if response.status_code == 401 and self._token is not None and not refreshed:
                refreshed = refresh_now = True  # an expired or revoked token: fetch a new one, once
                continue
            if self._retryable(response):
                if attempt + 1 == self._policy.max_attempts:
                    break
                delay = retry_after_s(response)
                await self._sleep(delay if delay is not None else self._policy.backoff_s(attempt))
                continue
            if response.status_code == 410:
                raise CursorExpired(f"{method} {url}: 410 Gone")
            if response.status_code >= 400:
                raise _client_error(f"{method} {url}", response)
            return response
        raise ProviderError(
            f"{method} {url}: still {response.status_code} after {self._policy.max_attempts} attempts",
            transient=True,
            status=response.status_code,
            body=_error_text(response),
        )

    def _retryable(self, response: httpx.Response) -> bool:
        """Throttled (counted) or a transient server error; the body must have been read."""
        throttled = response.status_code in (429, 503) or (
            response.status_code < 500 and response.status_code != 429 and self._is_throttled(response)
        )
        if throttled:
            THROTTLED.labels(self.provider).inc()
        return throttled or response.status_code in _RETRYABLE

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await self.request(method, url, **kwargs)).json()

    async def download(
        self, url: str, directory: Path, *, headers: Mapping[str, str] | None = None, max_redirects: int = 5
    ) -> Downloaded:
        """Stream `url` into a new file under `directory`, following redirects (the bearer only to the first
        host) and retrying throttled or failed attempts from the start."""
        refreshed = refresh_now = False
        for attempt in range(self._policy.max_attempts):
            target, authenticated, delay = url, True, None
            for _ in range(max_redirects + 1):
                request_headers = (
                    await self._headers(headers, refresh=refresh_now) if authenticated else dict(headers or {})
                )
                refresh_now = False
                async with self.client.stream("GET", target, headers=request_headers) as response:
                    if response.is_redirect:
                        location = response.headers["location"]
                        next_url = response.url.join(location)
                        same_origin = (next_url.scheme, next_url.host, next_url.port) == (
                            response.url.scheme,
                            response.url.host,
                            response.url.port,
                        )
                        authenticated = authenticated and same_origin
                        target = str(next_url)
                        continue
                    if response.status_code == 202:  # not ready yet (Box: Retry-After); never an empty file
                        delay = retry_after_s(response)
                        break
                    if response.status_code < 400:
                        return await _stream_to_file(response, directory)
                    await response.aread()  # error bodies are small; the throttle signal may need it
                    if response.status_code == 401 and authenticated and self._token is not None and not refreshed:
                        refreshed = refresh_now = True
                        delay = 0.0
                        break
                    if self._retryable(response):
                        delay = retry_after_s(response)
                        break
                    raise _client_error(f"GET {target}", response)
            else:
                raise ProviderError(f"GET {url}: more than {max_redirects} redirects", transient=False)
            if attempt + 1 < self._policy.max_attempts:
                await self._sleep(delay if delay is not None else self._policy.backoff_s(attempt))
        raise ProviderError(f"GET {url}: throttled or failing after retries", transient=True)


async def _stream_to_file(response: httpx.Response, directory: Path) -> Downloaded:
    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix="download-", delete=False)
    path = Path(handle.name)
    try:
        with handle:
            async for piece in response.aiter_bytes(DOWNLOAD_PIECE_BYTES):
                digest.update(piece)
                size += len(piece)
                await asyncio.to_thread(handle.write, piece)
    except BaseException:
        await asyncio.to_thread(path.unlink, True)
        raise
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    return Downloaded(path, size, digest.hexdigest(), content_type)


def _client_error(call: str, response: httpx.Response) -> ProviderError:
    """A 4xx that retrying cannot fix (bad credentials, no access, not found)."""
    text = _error_text(response)
    return ProviderError(
        f"{call}: {response.status_code} {text[:300]}", transient=False, status=response.status_code, body=text
    )


def _error_text(response: httpx.Response) -> str:
    try:
        return response.text[:2000]
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""

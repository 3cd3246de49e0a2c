"""HTTP to document management systems: bearer tokens, throttling, retries and streamed downloads, written once.

Every provider's API throttles with 429 (and 503) and says how long to wait in `Retry-After` (seconds or an
HTTP date; Graph: https://learn.microsoft.com/graph/throttling, Box: https://developer.box.com/guides/api-calls/
permissions-and-errors/rate-limits/, Drive: https://developers.google.com/drive/api/guides/limits). `ProviderHttp`
honours it, otherwise backs off exponentially with full jitter, and gives up after `max_attempts` with a
transient `ProviderError`, so the consumer retries the whole notification later instead of losing it. A
provider with throttling signals of its own (Drive's 403 `rateLimitExceeded`) passes `is_throttled`.
Downloads are streamed to a temporary file in fixed-size pieces while hashing; memory stays flat for any size.
Errors name a URL without its query (delta and page tokens) and a redirect target by its host only: Graph's
`tempauth` and Box's pre-signed links carry their credential in the query or the path, and an error ends up in
logs and in the connector's `last_error`, which the API returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
                    raise ProviderError(f"{method} {redacted(url)}: {_transport_text(exc)}", transient=True) from exc
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
                raise CursorExpired(f"{method} {redacted(url)}: 410 Gone")
            if response.status_code >= 400:
                raise _client_error(f"{method} {redacted(url)}", response)
            return response
        raise ProviderError(
            f"{method} {redacted(url)}: still {response.status_code} after {self._policy.max_attempts} attempts",
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
        host) and retrying throttled or failed attempts from the start (a refused pre-signed link may have
        expired: the next attempt gets a new one)."""
        refreshed = refresh = False
        failure = ProviderError(f"GET {redacted(url)}: throttled or failing after retries", transient=True)
        for attempt in range(self._policy.max_attempts):
            try:
                outcome = await self._download_once(
                    url, directory, headers, max_redirects, refresh=refresh, may_refresh=not refreshed
                )
            except httpx.TransportError as exc:  # the API host or the download host, before or mid-stream
                outcome = _Again(failure=ProviderError(f"GET {redacted(url)}: {_transport_text(exc)}", transient=True))
            if isinstance(outcome, Downloaded):
                return outcome
            refresh, failure = outcome.refresh, outcome.failure or failure
            refreshed = refreshed or refresh
            if attempt + 1 < self._policy.max_attempts:
                await self._sleep(outcome.delay_s if outcome.delay_s is not None else self._policy.backoff_s(attempt))
        raise failure

    async def _download_once(
        self,
        url: str,
        directory: Path,
        headers: Mapping[str, str] | None,
        max_redirects: int,
        *,
        refresh: bool,
        may_refresh: bool,
    ) -> Downloaded | _Again:
        """One attempt through the redirects: the file, or when (and how) to try again."""
        target, authenticated = httpx.URL(url), True
        signed = await self._headers(headers, refresh=refresh)
        for _ in range(max_redirects + 1):
            async with self.client.stream(
                "GET", target, headers=signed if authenticated else dict(headers or {})
            ) as response:
                if response.is_redirect:
                    next_url = response.url.join(response.headers["location"])
                    authenticated = authenticated and _same_origin(next_url, response.url)
                    target = next_url
                    continue
                if response.status_code == 202:  # not ready yet (Box: Retry-After); never an empty file
                    return _Again(retry_after_s(response))
                if response.status_code < 400:
                    return await _stream_to_file(response, directory)
                await response.aread()  # error bodies are small; the throttle signal may need it
                if response.status_code == 401 and authenticated and self._token is not None and may_refresh:
                    return _Again(0.0, refresh=True)
                if self._retryable(response):
                    return _Again(retry_after_s(response))
                if target == httpx.URL(url):
                    raise _client_error(f"GET {redacted(url)}", response)
                # A pre-signed link: name its host only, and leave out the body (a storage host may echo the
                # signed request in it). Refused again after every retry, the item is unreadable.
                refused = f"GET {redacted(url)}: {response.status_code} from the download host {target.host}"
                return _Again(failure=ProviderError(refused, transient=False, status=response.status_code))
        raise ProviderError(f"GET {redacted(url)}: more than {max_redirects} redirects", transient=False)


@dataclass(frozen=True)
class _Again:
    """A download attempt to repeat: after `delay_s` (None: back off), with a new token when `refresh`;
    `failure` is what to raise when no attempt is left."""

    delay_s: float | None = None
    refresh: bool = False
    failure: ProviderError | None = None


def _same_origin(one: httpx.URL, other: httpx.URL) -> bool:
    return (one.scheme, one.host, one.port) == (other.scheme, other.host, other.port)


def redacted(url: str | httpx.URL) -> str:
    """`url` without user info, query or fragment: what an error or a log line may name (tokens, signatures and
    passwords live in those parts)."""
    try:
        parts = urlsplit(str(url))
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unparseable URL>"
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}:{port}" if port else netloc, parts.path, "", ""))


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def _scrubbed(text: str) -> str:
    """`text` with every URL in it redacted."""
    return _URL.sub(lambda match: redacted(match.group(0)), text)


def _transport_text(exc: httpx.TransportError) -> str:
    return _scrubbed(f"{type(exc).__name__}: {exc}")


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
    """The start of an error body, URLs in it redacted (an API may echo the request)."""
    try:
        return _scrubbed(response.text[:2000])
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""

"""ProviderHttp against scripted provider responses: Retry-After honoured, jittered back-off otherwise, 410 as an
expired cursor, a token refreshed once on 401, and content redirects followed without the bearer token."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from ragstream_connectors.providers.base import CursorExpired, ProviderError
from ragstream_connectors.providers.http import OAuthToken, ProviderHttp, RetryPolicy, redacted, retry_after_s

pytestmark = pytest.mark.unit
TEMPAUTH_LINK = "https://contoso.sharepoint.example/_layouts/15/download.aspx?UniqueId=u1&tempauth=eyJ0secret"


class Script:
    """A provider that answers from a list of responses and records what it was sent."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": f"t{len(self.requests)}", "expires_in": 3600})
        return self.responses.pop(0)


def client(
    script: Script,
    sleeps: list[float],
    *,
    token: bool = False,
    attempts: int = 4,
    is_throttled: Callable[[httpx.Response], bool] = lambda _: False,
) -> ProviderHttp:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return ProviderHttp(
        "graph",
        OAuthToken("https://login.example/token", {"grant_type": "client_credentials"}) if token else None,
        policy=RetryPolicy(max_attempts=attempts, base_delay_s=0.5, max_delay_s=8),
        transport=httpx.MockTransport(script),
        sleep=sleep,
        is_throttled=is_throttled,
    )


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    dated = httpx.Response(503, headers={"Retry-After": "Sun, 29 Nov 2026 12:00:30 GMT"})
    assert retry_after_s(dated, now=lambda: now) == 30.0
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Response(429)) is None


def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=10)
    samples = [policy.backoff_s(3) for _ in range(200)]
    assert all(0 <= s <= 8 for s in samples)
    assert len(set(samples)) > 100  # jitter, not a fixed delay
    assert all(policy.backoff_s(10) <= 10 for _ in range(50))


async def test_throttling_waits_what_retry_after_says_then_succeeds() -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(503, headers={"Retry-After": "1"}),
        httpx.Response(200, json={"value": []}),
    )
    sleeps: list[float] = []
    http = client(script, sleeps)
    assert await http.json("GET", "https://graph.example/v1.0/drives/d/root/delta") == {"value": []}
    assert sleeps == [3.0, 1.0]


async def test_throttling_without_retry_after_backs_off_and_gives_up_as_transient() -> None:
    script = Script(*[httpx.Response(429) for _ in range(4)])
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as failure:
        await client(script, sleeps).request("GET", "https://api.example/2.0/events")
    assert failure.value.transient and failure.value.status == 429
    assert len(sleeps) == 3 and all(0 <= s <= 8 for s in sleeps)


async def test_gone_is_an_expired_cursor_and_other_client_errors_are_permanent() -> None:
    sleeps: list[float] = []
    with pytest.raises(CursorExpired):
        await client(Script(httpx.Response(410)), sleeps).request("GET", "https://graph.example/delta?token=x")
    with pytest.raises(ProviderError) as failure:
        await client(Script(httpx.Response(403, text="forbidden")), sleeps).request("GET", "https://x.example/")
    assert not failure.value.transient and failure.value.status == 403
    assert sleeps == []


async def test_a_rejected_token_is_refreshed_once() -> None:
    script = Script(httpx.Response(401), httpx.Response(200, json={"ok": True}))
    http = client(script, [], token=True)
    assert await http.json("GET", "https://graph.example/v1.0/me") == {"ok": True}
    api_calls = [r for r in script.requests if r.url.path != "/token"]
    assert [r.headers["authorization"] for r in api_calls] == ["Bearer t1", "Bearer t3"]


async def test_download_streams_to_a_file_and_drops_the_bearer_on_another_host(tmp_path: Path) -> None:
    body = b"x" * (3 * 1024 * 1024 + 17)
    script = Script(
        httpx.Response(302, headers={"Location": "https://files.example/blob?sig=abc"}),
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(302, headers={"Location": "https://files.example/blob?sig=abc"}),
        httpx.Response(200, content=body, headers={"Content-Type": "application/pdf"}),
    )
    sleeps: list[float] = []
    downloaded = await client(script, sleeps, token=True).download(
        "https://graph.example/v1.0/drives/d/items/i/content", tmp_path
    )
    assert downloaded.size_bytes == len(body)
    assert downloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert downloaded.content_type == "application/pdf"
    assert downloaded.path.read_bytes() == body
    assert sleeps == [2.0]
    api = [r for r in script.requests if r.url.host == "graph.example"]
    files = [r for r in script.requests if r.url.host == "files.example"]
    assert all("authorization" in r.headers for r in api)
    assert files and all("authorization" not in r.headers for r in files)


async def test_a_link_refused_once_is_asked_for_again(tmp_path: Path) -> None:
    script = Script(
        httpx.Response(302, headers={"Location": TEMPAUTH_LINK}),
        httpx.Response(403),
        httpx.Response(302, headers={"Location": TEMPAUTH_LINK.replace("eyJ0", "fresh")}),
        httpx.Response(200, content=b"content"),
    )
    downloaded = await client(script, []).download("https://graph.example/content", tmp_path)
    assert downloaded.size_bytes == len(b"content")


async def test_a_failed_download_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ProviderError):
        await client(Script(httpx.Response(404)), []).download("https://graph.example/content", tmp_path)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test directory listing)


async def test_a_provider_specific_throttle_signal_is_retried_like_429() -> None:
    def rate_limited(response: httpx.Response) -> bool:
        return response.status_code == 403 and b"rateLimitExceeded" in response.content

    script = Script(
        httpx.Response(403, json={"error": {"errors": [{"reason": "rateLimitExceeded"}]}}),
        httpx.Response(200, json={"ok": True}),
        httpx.Response(403, json={"error": {"errors": [{"reason": "insufficientPermissions"}]}}),
    )
    sleeps: list[float] = []
    http = client(script, sleeps, is_throttled=rate_limited)
    assert await http.json("GET", "https://drive.example/v3/changes") == {"ok": True}
    assert len(sleeps) == 1
    with pytest.raises(ProviderError) as failure:
        await http.request("GET", "https://drive.example/v3/files/x")
    assert not failure.value.transient and "insufficientPermissions" in failure.value.body


async def test_a_download_refreshes_a_rejected_token_once(tmp_path: Path) -> None:
    script = Script(httpx.Response(401), httpx.Response(200, content=b"hello"))
    downloaded = await client(script, [], token=True).download("https://graph.example/content", tmp_path)
    assert downloaded.size_bytes == 5
    api_calls = [r for r in script.requests if r.url.path != "/token"]
    assert [r.headers["authorization"] for r in api_calls] == ["Bearer t1", "Bearer t3"]


async def test_content_that_is_not_ready_yet_is_waited_for(tmp_path: Path) -> None:
    """Box answers a download with 202 + Retry-After while the file is being prepared."""
    script = Script(httpx.Response(202, headers={"Retry-After": "4"}), httpx.Response(200, content=b"ready"))
    sleeps: list[float] = []
    downloaded = await client(script, sleeps).download("https://api.box.example/2.0/files/1/content", tmp_path)
    assert downloaded.size_bytes == 5 and sleeps == [4.0]


async def test_a_refused_pre_signed_link_is_named_by_its_host_only(tmp_path: Path) -> None:
    """The download host's 403 (an expired tempauth, a Box link used twice): every attempt asks the API for a new
    link; refused each time, the error has no query, no path and no body, since the storage host may echo the
    signed request and the error becomes the connector's `last_error`."""
    refusal = [
        httpx.Response(302, headers={"Location": TEMPAUTH_LINK}),
        httpx.Response(403, text=f"<Error>AuthenticationFailed for {TEMPAUTH_LINK}</Error>"),
    ]
    script = Script(*refusal * 4)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as failure:
        await client(script, sleeps, token=True).download(
            "https://graph.example/v1.0/drives/d/items/i/content?select=id", tmp_path
        )
    assert len(sleeps) == 3 and not script.responses
    error = failure.value
    assert not error.transient and error.status == 403 and error.body == ""
    assert str(error) == (
        "GET https://graph.example/v1.0/drives/d/items/i/content: 403 from the download host contoso.sharepoint.example"
    )


async def test_api_errors_name_urls_without_their_query() -> None:
    echoing = httpx.Response(400, text=f"bad request {TEMPAUTH_LINK} (see docs)")
    with pytest.raises(ProviderError) as failure:
        await client(Script(echoing), []).request("GET", "https://user:pw@drive.example/v3/changes?pageToken=42")
    message = f"{failure.value} {failure.value.body}"
    assert "https://drive.example/v3/changes: 400" in message
    assert "https://contoso.sharepoint.example/_layouts/15/download.aspx (see docs)" in failure.value.body
    assert not [word for word in ("tempauth", "pageToken", "pw@", "eyJ0secret") if word in message]


async def test_a_download_host_that_cannot_be_reached_fails_as_transient_without_the_link(tmp_path: Path) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.example":
            return httpx.Response(302, headers={"Location": TEMPAUTH_LINK})
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    sleeps: list[float] = []
    http = ProviderHttp(
        "graph",
        None,
        policy=RetryPolicy(max_attempts=3),
        transport=httpx.MockTransport(unreachable),
        sleep=_record(sleeps),
    )
    with pytest.raises(ProviderError) as failure:
        await http.download("https://graph.example/v1.0/drives/d/items/i/content", tmp_path)
    assert failure.value.transient and len(sleeps) == 2
    assert "tempauth" not in str(failure.value) and "ConnectError" in str(failure.value)


def _record(sleeps: list[float]) -> Callable[[float], Any]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return sleep


def test_redacted_keeps_scheme_host_port_and_path() -> None:
    assert redacted("https://u:p@Host.example:8443/a/b?x=1#frag") == "https://host.example:8443/a/b"
    assert redacted("http://[::1]:80/p?q") == "http://[::1]:80/p"
    assert redacted("https://host.example:99999/") == "<unparseable URL>"

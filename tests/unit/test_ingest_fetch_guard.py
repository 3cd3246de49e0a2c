import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from ragstream_ingest.fetch import (
    BadStatusError,
    BlockedAddressError,
    FetchPolicy,
    FetchTimeoutError,
    HttpFetcher,
    InvalidUrlError,
    ResponseTooLargeError,
    TooManyRedirectsError,
    fetch_url,
    is_public_address,
)

pytestmark = pytest.mark.unit

PUBLIC_IP = "93.184.216.34"
DNS = {"docs.example.com": [PUBLIC_IP], "internal.example.com": ["10.1.2.3"]}
DNS["mixed.example.com"] = [PUBLIC_IP, "127.0.0.1"]


async def fake_dns(host: str, port: int) -> list[str]:
    return DNS[host]


def fetcher(handler: object, **policy: object) -> HttpFetcher:
    return HttpFetcher(
        FetchPolicy(**policy),  # type: ignore[arg-type]
        resolver=fake_dns,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the guard let {request.url} through")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "::",
        "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:169.254.169.254", "2002:7f00:1::", "64:ff9b::a9fe:a9fe",
    ],
)  # fmt: skip
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://internal.example.com/doc.pdf",
        "http://mixed.example.com/doc.pdf",
    ],
)
async def test_private_destinations_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(BlockedAddressError) as caught:
        await fetcher(no_network).fetch(url)
    assert caught.value.error_class == "blocked_address"


async def test_loopback_literal_is_refused_by_default() -> None:
    with pytest.raises(BlockedAddressError):
        await fetch_url("http://127.0.0.1:9/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://docs.example.com/x", "gopher://a/", "http:///nohost"])
async def test_only_http_urls_with_a_host_are_allowed(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        await fetcher(no_network).fetch(url)


async def test_connection_is_pinned_to_the_checked_address() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            content=b"%PDF-1.4",
            headers={"content-type": "application/pdf"},
        )

    result = await fetcher(handler).fetch("https://docs.example.com/files/report%20q3.pdf")
    assert seen[0].url.host == PUBLIC_IP
    assert seen[0].headers["host"] == "docs.example.com"
    assert seen[0].extensions["sni_hostname"] == "docs.example.com"
    assert (result.data, result.content_type) == (b"%PDF-1.4", "application/pdf")
    assert result.filename == "report q3.pdf"
    assert result.url == "https://docs.example.com/files/report%20q3.pdf"


async def test_every_redirect_hop_is_checked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/"})

    with pytest.raises(BlockedAddressError):
        await fetcher(handler).fetch("http://docs.example.com/start")


async def test_redirects_are_followed_to_a_file_name() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(301, headers={"location": "/final/notes.md"})
        disposition = 'attachment; filename="Release Notes.md"'
        return httpx.Response(200, content=b"# Notes", headers={"content-disposition": disposition})

    result = await fetcher(handler).fetch("http://docs.example.com/start")
    assert result.url == "http://docs.example.com/final/notes.md"
    assert (result.data, result.filename) == (b"# Notes", "Release Notes.md")


async def test_redirect_loops_stop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "/again"})

    with pytest.raises(TooManyRedirectsError):
        await fetcher(handler, max_redirects=3).fetch("http://docs.example.com/")


async def test_redirect_to_another_scheme_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "file:///etc/shadow"})

    with pytest.raises(InvalidUrlError):
        await fetcher(handler).fetch("http://docs.example.com/")


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (503, True)])
async def test_error_statuses_raise(status: int, retryable: bool) -> None:
    with pytest.raises(BadStatusError) as caught:
        await fetcher(lambda request: httpx.Response(status)).fetch("http://docs.example.com/")
    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)


async def test_declared_oversize_body_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 2048)

    with pytest.raises(ResponseTooLargeError):
        await fetcher(handler, max_bytes=1024).fetch("http://docs.example.com/")


async def test_streamed_oversize_body_is_cut_off() -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            sent.append(1)
            yield b"y" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with pytest.raises(ResponseTooLargeError):
        await fetcher(handler, max_bytes=4096).fetch("http://docs.example.com/")
    assert len(sent) <= 6


async def test_slow_responses_time_out() -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"start"
        await asyncio.sleep(5)
        yield b"never"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=slow())

    with pytest.raises(FetchTimeoutError) as caught:
        await fetcher(handler, timeout_s=0.2).fetch("http://docs.example.com/")
    assert caught.value.retryable

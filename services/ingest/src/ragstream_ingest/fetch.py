"""Fetching documents from http(s) URLs with an SSRF guard.

Every hop (the first request and each redirect) is checked: scheme http/https only, the host is
resolved and every address must be public, and the connection is pinned to a checked address
(TLS still verifies the certificate against the host name via SNI) so DNS rebinding between the
check and the connect cannot redirect the request. Bodies are streamed and cut off at max_bytes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 50 * 1024 * 1024

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 5
    # Only for tests and local development: lets fetches reach loopback and private networks.
    allow_private_networks: bool = False
    user_agent: str = "ragstream-ingest/0.1"


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    data: bytes
    content_type: str | None
    filename: str | None
    url: str  # after redirects


class FetchError(Exception):
    """A URL that could not be fetched; error_class goes into DocumentFailed."""

    error_class = "fetch_failed"
    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidUrlError(FetchError):
    error_class = "invalid_url"


class BlockedAddressError(FetchError):
    error_class = "blocked_address"


class ResponseTooLargeError(FetchError):
    error_class = "too_large"


class FetchTimeoutError(FetchError):
    error_class = "timeout"
    retryable = True


class FetchConnectionError(FetchError):
    error_class = "connection_failed"
    retryable = True


class TooManyRedirectsError(FetchError):
    error_class = "too_many_redirects"


class BadStatusError(FetchError):
    error_class = "bad_status"

    def __init__(self, reason: str, status_code: int) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.retryable = status_code >= 500 or status_code in (408, 429)


def is_public_address(address: IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified, ULA and for
    IPv6 forms that embed such an IPv4 address (mapped, 6to4, Teredo, NAT64)."""
    if not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return False
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(is_public_address(inner) for inner in embedded if inner is not None)
    return True


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the host resolves to, in the system's preferred order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchConnectionError(f"cannot resolve {host!r}: {exc}") from exc
    addresses = [str(info[4][0]).split("%", 1)[0] for info in infos]
    return list(dict.fromkeys(addresses))


class HttpFetcher:
    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self._resolver = resolver
        self._transport = transport

    async def fetch(self, url: str) -> FetchedDocument:
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._fetch(url)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FetchTimeoutError(f"no complete response within {self.policy.timeout_s}s") from exc

    async def _fetch(self, url: str) -> FetchedDocument:
        # A client per fetch: pooled connections are keyed by IP and must not be reused for
        # another host name whose certificate was never checked on them.
        async with httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,  # a proxy would make the address checks meaningless
            timeout=self.policy.timeout_s,
        ) as client:
            current = _parse_url(url)
            for _ in range(self.policy.max_redirects + 1):
                response = await self._send(client, current)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        current = _parse_url(str(current.join(location)))
                        continue
                    if not response.is_success:
                        raise BadStatusError(f"{current} answered HTTP {response.status_code}", response.status_code)
                    content = await self._read_capped(response)
                    return FetchedDocument(
                        data=content,
                        content_type=response.headers.get("content-type"),
                        filename=_filename(response, current),
                        url=str(current),
                    )
                finally:
                    await response.aclose()
            raise TooManyRedirectsError(f"more than {self.policy.max_redirects} redirects")

    async def _send(self, client: httpx.AsyncClient, url: httpx.URL) -> httpx.Response:
        headers = {"User-Agent": self.policy.user_agent}
        if self.policy.allow_private_networks:
            return await _send_one(client, client.build_request("GET", url, headers=headers))
        host = url.raw_host.decode("ascii")
        addresses = await self._checked_addresses(host, url.port or _default_port(url))
        headers["Host"] = url.netloc.decode("ascii")
        last_error: FetchError | None = None
        for address in addresses:  # the next checked address when one refuses the connection
            request = client.build_request(
                "GET",
                url.copy_with(host=address),
                headers=headers,
                extensions={"sni_hostname": host} if url.scheme == "https" else {},
            )
            try:
                return await _send_one(client, request)
            except FetchConnectionError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self._resolver(host, port)
        if not addresses:
            raise FetchConnectionError(f"{host!r} resolves to no address")
        for address in addresses:
            if not is_public_address(ipaddress.ip_address(address)):
                raise BlockedAddressError(f"{host!r} resolves to non-public address {address}")
        return addresses

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(f"Content-Length {declared} exceeds {limit} bytes")
        body = bytearray()
        try:
            async for piece in response.aiter_bytes():  # decoded: the cap also stops gzip bombs
                body += piece
                if len(body) > limit:
                    raise ResponseTooLargeError(f"body exceeds {limit} bytes")
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        return bytes(body)


async def fetch_url(
    url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private_networks: bool = False,
) -> FetchedDocument:
    """One guarded fetch with the given limits; see HttpFetcher."""
    policy = FetchPolicy(timeout_s=timeout_s, max_bytes=max_bytes, allow_private_networks=allow_private_networks)
    return await HttpFetcher(policy).fetch(url)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidUrlError(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise InvalidUrlError(f"scheme {parsed.scheme!r} is not allowed; only http and https")
    if not parsed.host:
        raise InvalidUrlError(f"URL {url!r} has no host")
    return parsed


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


async def _send_one(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    try:
        return await client.send(request, stream=True)
    except httpx.TransportError as exc:
        raise _transport_error(exc) from exc


def _transport_error(exc: httpx.TransportError) -> FetchError:
    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeoutError(f"timed out: {exc}")
    return FetchConnectionError(f"{type(exc).__name__}: {exc}")


def _filename(response: httpx.Response, url: httpx.URL) -> str | None:
    disposition = response.headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            return name
    last_segment = unquote(url.path.rsplit("/", 1)[-1])
    return last_segment if "." in last_segment else None

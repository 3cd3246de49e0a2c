"""The client's address behind a known number of trusted proxies (GATEWAY_TRUSTED_PROXY_HOPS).

Each proxy appends the address it received the request from to `X-Forwarded-For`; the socket peer is the last
proxy (or the client itself). So the chain `X-Forwarded-For entries + [peer]`, read from the right, holds
addresses written by proxies we trust for exactly `trusted_hops` entries, and the entry `trusted_hops` from the
right is the address the outermost trusted proxy saw: the client. Everything further left was sent by the client
and may be forged ("spoofed prefixes"), so it is never read.

Behind the AWS load balancer and the Istio ingress gateway, trusted_hops is 2: the ALB appends the client, the
ingress appends the ALB, and the sidecar is the peer (Istio's `numTrustedProxies` must say the same). A chain
shorter than that did not come through every proxy (a call from inside the cluster): the peer is the only
address not taken from the request, so it is the answer.

uvicorn's own proxy handling (`--forwarded-allow-ips`) is off: it rewrites the peer to the rightmost untrusted
entry, which only works if every proxy's address is listed, and then this count would start from the wrong end.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

FORWARDED_FOR = b"x-forwarded-for"
# A chain longer than this is not a real proxy path; it is only read from the right anyway.
MAX_CHAIN_ENTRIES = 64


def normalize_address(entry: str) -> str:
    """An address as `ipaddress` writes it (IPv4-mapped IPv6 as IPv4, ports and brackets dropped); "" when the
    entry is not an address (`unknown`, an obfuscated RFC 7239 name, garbage)."""
    value = entry.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def forwarded_chain(header_values: Iterable[str]) -> list[str]:
    """The `X-Forwarded-For` entries in order; several header lines join as one list (RFC 9110 5.3)."""
    entries = [entry.strip() for value in header_values for entry in value.split(",")]
    return entries[-MAX_CHAIN_ENTRIES:]


def client_address(peer: str, forwarded_for: Sequence[str], trusted_hops: int) -> str:
    """The address `trusted_hops` entries from the right of `forwarded_for + [peer]`; the peer when the chain is
    shorter (the request did not come through every trusted proxy). "" when that entry is not an address."""
    chain = [*forwarded_for, peer]
    if trusted_hops <= 0 or trusted_hops >= len(chain):
        return _peer_address(peer)
    return normalize_address(chain[-1 - trusted_hops])


def _peer_address(peer: str) -> str:
    # The socket's own peer is never forged; keep a non-IP one (a unix socket, a test client's name) as it is.
    return normalize_address(peer) or peer


def connection_address(connection: HTTPConnection, trusted_hops: int) -> str:
    """The client address of a request (or websocket) as the allowlists, limits and audit log see it."""
    peer = connection.client.host if connection.client else ""
    if trusted_hops <= 0:
        return _peer_address(peer)
    values = [value.decode("latin-1") for name, value in connection.scope["headers"] if name == FORWARDED_FOR]
    return client_address(peer, forwarded_chain(values), trusted_hops)

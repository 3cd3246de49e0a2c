"""The client address behind trusted proxies: counted hops from the right of X-Forwarded-For + the peer."""

from __future__ import annotations

import pytest
from ragstream_gateway.client_address import (
    MAX_CHAIN_ENTRIES,
    client_address,
    connection_address,
    forwarded_chain,
    normalize_address,
)
from starlette.requests import Request

pytestmark = pytest.mark.unit

CLIENT = "203.0.113.7"  # the real client
ALB = "10.0.12.34"  # the AWS load balancer (appends the client)
SIDECAR = "127.0.0.6"  # Istio's inbound sidecar: the socket peer


def _request(peer: str, *forwarded_for: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded_for]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 50000)}
    return Request(scope)


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "expected"),
    [
        # No proxies: the peer is the client, whatever the header says.
        ("", 0, SIDECAR),
        ("198.51.100.66", 0, SIDECAR),
        # ALB + Istio ingress: the ALB appended the client, the ingress appended the ALB.
        (f"{CLIENT}, {ALB}", 2, CLIENT),
        # Spoofed prefixes: whatever the client sent sits left of what the ALB appended, and is never read.
        (f"198.51.100.66, {CLIENT}, {ALB}", 2, CLIENT),
        (f"10.0.0.1, 127.0.0.1, 192.168.1.1, {CLIENT}, {ALB}", 2, CLIENT),
        (f"not-an-ip, {CLIENT}, {ALB}", 2, CLIENT),
        # One proxy (an NLB with proxy protocol into the ingress): the ingress appended the client.
        (f"198.51.100.66, {CLIENT}", 1, CLIENT),
        # A chain shorter than the hops did not pass every proxy (a call from inside the cluster): the peer.
        (CLIENT, 2, SIDECAR),
        ("", 2, SIDECAR),
        # Ports and brackets as some proxies write them; IPv4-mapped IPv6 as IPv4.
        (f"{CLIENT}:51234, {ALB}", 2, CLIENT),
        ("[2001:db8::7]:443, 10.0.12.34", 2, "2001:db8::7"),
        ("::ffff:203.0.113.7, 10.0.12.34", 2, CLIENT),
        # The entry a trusted proxy wrote is garbage: no address (an allowlist never admits it).
        ("unknown, 10.0.12.34", 2, ""),
    ],
)
def test_the_client_is_the_entry_that_many_hops_from_the_right(forwarded_for: str, hops: int, expected: str) -> None:
    chain = forwarded_chain([forwarded_for] if forwarded_for else [])
    assert client_address(SIDECAR, chain, hops) == expected


def test_several_header_lines_form_one_chain_in_order() -> None:
    request = _request(SIDECAR, "198.51.100.66", f"{CLIENT}, {ALB}")
    assert connection_address(request, 2) == CLIENT
    assert connection_address(request, 1) == ALB
    assert connection_address(request, 0) == SIDECAR


def test_a_client_cannot_move_the_answer_by_sending_more_entries() -> None:
    spoofed = ", ".join(f"198.51.100.{n}" for n in range(200))
    request = _request(SIDECAR, spoofed, f"{CLIENT}, {ALB}")
    assert connection_address(request, 2) == CLIENT
    assert len(forwarded_chain([spoofed])) == MAX_CHAIN_ENTRIES  # read from the right, bounded


def test_a_peer_that_is_not_an_address_is_kept_as_it_is() -> None:
    assert connection_address(_request("testclient"), 0) == "testclient"
    assert connection_address(_request("::ffff:10.1.2.3"), 0) == "10.1.2.3"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (" 203.0.113.7 ", CLIENT),
        ("203.0.113.7:8080", CLIENT),
        ("2001:DB8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7", ""),
        ("_hidden", ""),
        ("", ""),
    ],
)
def test_entries_normalize_to_addresses(entry: str, expected: str) -> None:
    assert normalize_address(entry) == expected

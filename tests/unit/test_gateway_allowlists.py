"""Allowlists as written: /0 and too-wide ranges refused unless forced, bad entries named, bounded."""

from __future__ import annotations

import ipaddress

import pytest
from ragstream_gateway.allowlists import (
    MAX_ALLOWLIST_ENTRIES,
    AllowlistRefused,
    AllowlistSettings,
    checked_allowlist,
    parse_allowlist,
)
from ragstream_gateway.problems import Problem

pytestmark = pytest.mark.unit


def test_networks_and_single_addresses_are_parsed_in_order_without_duplicates() -> None:
    parsed = parse_allowlist(["10.0.0.0/8", "192.0.2.7", "2001:db8::/48", "10.0.0.0/8"], force=False)
    assert [str(n) for n in parsed] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/48"]
    assert parse_allowlist([], force=False) == []


@pytest.mark.parametrize("everything", ["0.0.0.0/0", "::/0"])
def test_every_address_is_refused_unless_forced(everything: str) -> None:
    with pytest.raises(AllowlistRefused, match="admits every address"):
        parse_allowlist(["10.0.0.0/8", everything], force=False)
    assert parse_allowlist([everything], force=True) == [ipaddress.ip_network(everything)]


@pytest.mark.parametrize(("wide", "narrow"), [("4.0.0.0/6", "10.0.0.0/8"), ("2001:d00::/24", "2001:db8::/32")])
def test_ranges_wider_than_the_minimum_prefix_are_refused_unless_forced(wide: str, narrow: str) -> None:
    assert parse_allowlist([narrow], force=False)
    with pytest.raises(AllowlistRefused, match="wider than"):
        parse_allowlist([wide], force=False)
    assert parse_allowlist([wide], force=True)


def test_the_minimum_prefix_is_configurable() -> None:
    strict = AllowlistSettings(min_prefix_v4=24, min_prefix_v6=64)
    with pytest.raises(AllowlistRefused, match="wider than /24"):
        parse_allowlist(["10.0.0.0/16"], force=False, settings=strict)
    assert parse_allowlist(["10.0.0.0/24", "2001:db8::/64"], force=False, settings=strict)


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ALLOWLIST_MIN_PREFIX_V4", "16")
    assert AllowlistSettings().min_prefix_v4 == 16


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "not-a-network", "10.0.0.0/33", ""])
def test_entries_that_are_not_networks_are_named(bad: str) -> None:
    with pytest.raises(AllowlistRefused, match="is not an IP network"):
        parse_allowlist([bad], force=True)


def test_an_allowlist_is_bounded() -> None:
    many = [f"10.{n // 256}.{n % 256}.0/24" for n in range(MAX_ALLOWLIST_ENTRIES + 1)]
    assert len(parse_allowlist(many[:-1], force=False)) == MAX_ALLOWLIST_ENTRIES
    with pytest.raises(AllowlistRefused, match=f"at most {MAX_ALLOWLIST_ENTRIES}"):
        parse_allowlist(many, force=False)


def test_a_refusal_in_a_request_is_a_422_problem() -> None:
    with pytest.raises(Problem) as refused:
        checked_allowlist(["0.0.0.0/0"], force=False)
    assert refused.value.status == 422 and refused.value.type == "urn:ragstream:problem:allowlist-refused"
    assert "0.0.0.0/0" in refused.value.detail

"""Tenant IP allowlists as they are written (create and update): parsed, bounded, and never wide by accident.

An allowlist that admits everyone is an empty one; `0.0.0.0/0` or `::/0` in a list only hides that, and a very
wide range (a /4) is almost always a typo. Both are refused unless the caller forces them. The check happens when
a list is written; `security.address_allowed` judges requests against what was stored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_gateway.problems import Problem
from ragstream_gateway.security import IPNetwork

MAX_ALLOWLIST_ENTRIES = 256


class AllowlistSettings(BaseSettings):
    """GATEWAY_ALLOWLIST_MIN_PREFIX_V4 / _V6: the widest range an allowlist takes without `force`."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_ALLOWLIST_", extra="ignore")

    min_prefix_v4: Annotated[int, Field(ge=1, le=32)] = 8
    min_prefix_v6: Annotated[int, Field(ge=1, le=128)] = 32


class AllowlistRefused(ValueError):
    """The allowlist is not acceptable as written; the message says which entry and why."""


def parse_allowlist(
    values: Iterable[str | IPNetwork], *, force: bool, settings: AllowlistSettings | None = None
) -> list[IPNetwork]:
    """CIDRs (or single addresses) as networks, duplicates dropped, in order.

    Refused (AllowlistRefused): an entry that is not a network or has host bits set, more than
    MAX_ALLOWLIST_ENTRIES entries, and, unless `force`, /0 or any range wider than the minimum prefix.
    """
    policy = settings or AllowlistSettings()
    networks: list[IPNetwork] = []
    for value in values:
        network = _network(value)
        if not force:
            _check_width(network, policy)
        if network not in networks:
            networks.append(network)
        if len(networks) > MAX_ALLOWLIST_ENTRIES:
            raise AllowlistRefused(f"an allowlist holds at most {MAX_ALLOWLIST_ENTRIES} ranges")
    return networks


def _network(value: str | IPNetwork) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    try:
        return ipaddress.ip_network(str(value).strip())
    except ValueError as exc:  # the message names the entry and the fault ("has host bits set", ...)
        raise AllowlistRefused(f"{str(value)[:64]!r} is not an IP network: {exc}") from None


def _check_width(network: IPNetwork, policy: AllowlistSettings) -> None:
    if network.prefixlen == 0:
        raise AllowlistRefused(
            f"{network} admits every address; leave the allowlist empty for that, or set force to store it"
        )
    minimum = policy.min_prefix_v4 if network.version == 4 else policy.min_prefix_v6
    if network.prefixlen < minimum:
        raise AllowlistRefused(
            f"{network} is wider than /{minimum}, the widest IPv{network.version} range accepted without force"
        )


def checked_allowlist(
    values: Iterable[str | IPNetwork], *, force: bool, settings: AllowlistSettings | None = None
) -> list[IPNetwork]:
    """`parse_allowlist` for a request: a refusal is a 422 problem (slug `allowlist-refused`) naming the entry."""
    try:
        return parse_allowlist(values, force=force, settings=settings)
    except AllowlistRefused as exc:
        raise Problem(422, str(exc), slug="allowlist-refused", extensions={"field": "ip_allowlist"}) from None

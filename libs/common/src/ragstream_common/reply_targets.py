"""Which `reply_to` addresses a worker may dial: the gateway's reply endpoints, configured, nothing else.

`reply_to` comes from an event, so it is input: a forged one would make a worker dial any host (SSRF over
gRPC) and hand it the query's sources or answer. REPLY_ALLOWED_TARGETS lists what is allowed, comma-separated:
  10.0.0.0/8, fd00::/8    an IP network: any address in it, any port
  127.0.0.1               one IP address, any port
  gateway-reply:50051     one host and port ([::1]:50051 for IPv6)
  gateway-reply           one host name, any port
  *.gateway-reply.ns.svc  any name under that domain, any port
Empty (the default) allows nothing. Only plain `host:port` targets are dialled: gRPC's scheme forms (dns:,
unix:, ipv4: lists) never are. Names are compared as written, not resolved.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


@dataclass(frozen=True)
class Target:
    host: str  # lower-case name, or an IP address without brackets
    port: int

    @property
    def ip(self) -> IPAddress | None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address


def parse_target(address: str) -> Target | None:
    """`host:port` (IPv6 in brackets) as a Target; None for anything else."""
    host, colon, port_text = address.strip().rpartition(":")
    if not colon or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    host = _host(host)
    return Target(host, int(port_text)) if host else None


def _host(text: str) -> str:
    """A valid host in canonical form, or ""."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            return ""
    text = text.lower()
    if len(text) > 253 or not _HOSTNAME.match(text):
        return ""
    return text


@dataclass(frozen=True)
class _Rule:
    network: IPNetwork | None = None
    host: str = ""
    port: int | None = None
    suffix: str = ""

    def admits(self, target: Target) -> bool:
        if self.network is not None:
            ip = target.ip
            return ip is not None and ip.version == self.network.version and ip in self.network
        if self.suffix:
            return target.host.endswith(self.suffix) and target.ip is None
        return target.host == self.host and (self.port is None or target.port == self.port)


def _rule(entry: str) -> _Rule:
    text = entry.strip()
    try:
        return _Rule(network=ipaddress.ip_network(text.strip("[]"), strict=False))
    except ValueError:
        pass
    if text.startswith("*."):
        domain = _host(text[2:])
        if domain:
            return _Rule(suffix="." + domain)
    elif target := parse_target(text):
        return _Rule(host=target.host, port=target.port)
    elif host := _host(text):
        return _Rule(host=host)
    raise ValueError(f"not a host, host:port, IP network or *.domain: {entry!r}")


class ReplyTargets:
    """The allowlist; `allows(address)` is False for any address it does not match or cannot parse."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._rules = tuple(_rule(entry) for entry in entries if entry.strip())

    def allows(self, address: str) -> bool:
        target = parse_target(address)
        return target is not None and any(rule.admits(target) for rule in self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)


class ReplyTargetSettings(BaseSettings):
    """REPLY_ALLOWED_TARGETS (shared by the workers that reply: retrieve and generate)."""

    model_config = SettingsConfigDict(env_prefix="REPLY_", extra="ignore")

    allowed_targets: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_targets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("allowed_targets")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        ReplyTargets(value)  # raises on a bad entry, so a typo stops the service at start
        return value

    def targets(self) -> ReplyTargets:
        return ReplyTargets(self.allowed_targets)

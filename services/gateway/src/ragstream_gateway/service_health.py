"""Every worker's health as the gateway sees it (GET /v1/admin/health): one grpc.health.v1 Check per service,
all at once, each bounded by a short deadline, so one hung worker costs the report its deadline and no more.

The probe is a port (`HealthProbe`); adapters/health_grpc.py dials gRPC. A worker that cannot be reached, refuses
the call or misses the deadline is UNREACHABLE; otherwise its status is what its health service says (SERVING,
NOT_SERVING while a dependency is down or it drains, ...). Addresses come from GATEWAY_SERVICE_HEALTH_ADDRESSES,
by default the registry's ports on 127.0.0.1 (`make run`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from ragstream_common.registry import SERVICES

SERVING = "SERVING"
UNREACHABLE = "UNREACHABLE"
# A deadline the probe itself did not enforce (a hung dial) still ends the check this much later.
GRACE_S = 0.25


def registry_addresses() -> dict[str, str]:
    """Every worker (every registered service but the gateway) at its registered gRPC port on loopback."""
    return {name: f"127.0.0.1:{spec.grpc_port}" for name, spec in SERVICES.items() if spec.http_port is None}


class ServiceHealthSettings(BaseSettings):
    """GATEWAY_SERVICE_HEALTH_ADDRESSES (`name=host:port,...` or a JSON object), _TIMEOUT_S and _PLAINTEXT."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_SERVICE_HEALTH_", extra="ignore")

    # Where each worker's gRPC health service answers: its Service in Kubernetes and compose (`ingest:50051`).
    addresses: Annotated[dict[str, str], NoDecode] = Field(default_factory=registry_addresses, max_length=64)
    # Each check's deadline: a worker slower than this to say SERVING is reported UNREACHABLE.
    timeout_s: float = Field(default=1.0, gt=0, le=10)
    # Workers dialled in plaintext although GRPC_TLS_CA_FILE is set (compose TLS: ingest, connectors, metering
    # serve only health, without TLS).
    plaintext: Annotated[frozenset[str], NoDecode] = Field(default_factory=frozenset)

    @field_validator("addresses", mode="before")
    @classmethod
    def _parse_addresses(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("{"):
            return json.loads(value)
        pairs = (item.strip().partition("=") for item in value.split(",") if item.strip())
        return {name.strip(): address.strip() for name, _, address in pairs}

    @field_validator("addresses")
    @classmethod
    def _named_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not name or ":" not in address:
                raise ValueError(f"expected name=host:port, got {name!r}={address!r}")
        return value

    @field_validator("plaintext", mode="before")
    @classmethod
    def _split_plaintext(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value


class ServiceUnreachable(Exception):
    """The probe got no health status: refused, unresolvable, TLS failed, deadline passed (the message says)."""


class HealthProbe(Protocol):
    async def status(self, name: str, address: str, timeout_s: float) -> str:
        """The grpc.health.v1 status name of the server at `address`; ServiceUnreachable when there is none."""
        ...


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    address: str
    status: str
    latency_ms: float
    detail: str | None = None

    @property
    def serving(self) -> bool:
        return self.status == SERVING


DETAILS = {
    "NOT_SERVING": "up, but not serving: a dependency (Kafka, the database) is down, or it is draining",
    "SERVICE_UNKNOWN": "its health service does not know the service asked for",
    "UNKNOWN": "its health service has no status yet (still starting)",
}


async def check(probe: HealthProbe, name: str, address: str, timeout_s: float) -> ServiceHealth:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(probe.status(name, address, timeout_s), timeout_s + GRACE_S)
        detail = DETAILS.get(status)
    except TimeoutError:
        status, detail = UNREACHABLE, f"no answer within {timeout_s:g} s"
    except ServiceUnreachable as exc:
        status, detail = UNREACHABLE, str(exc) or type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return ServiceHealth(name, address, status, latency_ms, detail)


async def survey(probe: HealthProbe, addresses: Mapping[str, str], timeout_s: float) -> list[ServiceHealth]:
    """Every service's health, checked concurrently, in name order."""
    names = sorted(addresses)
    return list(await asyncio.gather(*(check(probe, name, addresses[name], timeout_s) for name in names)))


@dataclass(frozen=True)
class ServiceHealthSurvey:
    """What the admin route calls: the probe over the configured addresses."""

    probe: HealthProbe
    settings: ServiceHealthSettings

    async def run(self) -> list[ServiceHealth]:
        return await survey(self.probe, self.settings.addresses, self.settings.timeout_s)

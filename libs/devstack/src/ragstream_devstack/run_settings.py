"""What `make run` reads from the environment: where data lives, the ports, the restart back-off, dev access.

RAGSTREAM_GRPC_PORTS / RAGSTREAM_METRICS_PORTS take JSON objects keyed by service name and override only the
named services' ports (`{"retrieve": 50100}`; metrics port 0 turns that listener off), so a second system, or a
test, can run beside the default one.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from ragstream_common.registry import GATEWAY_HTTP_PORT

from ragstream_devstack.supervisor import Backoff
from ragstream_devstack.system import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, SERVICE_NAMES, SystemPorts


class RunSettings(BaseSettings):
    """RAGSTREAM_DATA_DIR, RAGSTREAM_KAFKA_PORT, RAGSTREAM_RESTART_INITIAL_S, ... (see the field names)."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Path("var")
    kafka_port: int = 9092
    kafka_controller_port: int | None = None  # default: a free port (the static voter set allows a new one)
    postgres_port: int = 5432
    grpc_ports: dict[str, int] = Field(default_factory=dict)
    metrics_ports: dict[str, int] = Field(default_factory=dict)
    gateway_port: int = Field(
        default=GATEWAY_HTTP_PORT, validation_alias=AliasChoices("GATEWAY_PORT", "RAGSTREAM_GATEWAY_PORT")
    )
    # Restart back-off of every supervised process (Kubernetes: 10 s doubling to 300 s, reset after 10 min).
    restart_initial_s: float = Field(default=1.0, gt=0)
    restart_max_s: float = Field(default=30.0, gt=0)
    restart_reset_after_s: float = Field(default=60.0, gt=0)
    # Infrastructure that already runs elsewhere: then no local Kafka / Postgres is started.
    external_kafka: str | None = Field(default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    external_database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # A tenant and API key for trying the system locally, and the bootstrap admin token (43 random characters;
    # the gateway refuses one under 32).
    dev_tenant: str = Field(default="default", validation_alias="GATEWAY_DEV_TENANT")
    dev_api_key: str = Field(default="dev-key", validation_alias="GATEWAY_DEV_API_KEY")
    admin_token: str = Field(
        default_factory=lambda: secrets.token_urlsafe(32), min_length=32, validation_alias="GATEWAY_ADMIN_TOKEN"
    )

    @field_validator("grpc_ports", "metrics_ports")
    @classmethod
    def _known_services(cls, ports: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(ports) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {list(SERVICE_NAMES)}")
        return ports

    def system_ports(self) -> SystemPorts:
        metrics = {
            **DEFAULT_METRICS_PORTS,
            **{k: v for k, v in self.metrics_ports.items() if k in DEFAULT_METRICS_PORTS},
        }
        return SystemPorts({**DEFAULT_GRPC_PORTS, **self.grpc_ports}, metrics, self.gateway_port)

    def backoff(self) -> Backoff:
        return Backoff(self.restart_initial_s, self.restart_max_s, self.restart_reset_after_s)

    def access(self) -> dict[str, str]:
        """The gateway's dev tenant, key and admin token, as the environment variables it reads."""
        return {
            "GATEWAY_DEV_TENANT": self.dev_tenant,
            "GATEWAY_DEV_API_KEY": self.dev_api_key,
            "GATEWAY_ADMIN_TOKEN": self.admin_token,
        }

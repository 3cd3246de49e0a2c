"""Settings shared by every service: pydantic-settings with one env prefix per service.

Infrastructure addresses (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, OTEL_*) are shared by all services and carry
no prefix; everything service-specific reads `<SERVICE>_<FIELD>`.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def bind_host() -> str:
    """The default address servers bind: $RAGSTREAM_BIND_HOST (0.0.0.0 in the container image) or loopback."""
    return os.environ.get("RAGSTREAM_BIND_HOST", "127.0.0.1")


class ServiceSettings(BaseSettings):
    """Base for every service's settings; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore", validate_default=True)

    service_name: str = "ragstream"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL")
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    # RAGSTREAM_BIND_HOST is the default address of every server (the container image sets 0.0.0.0);
    # `<SERVICE>_GRPC_HOST` still wins.
    grpc_host: str = Field(default_factory=bind_host)
    grpc_port: int = Field(default=0, ge=0, le=65535)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # How long SIGTERM waits for in-flight work before giving up.
    shutdown_grace_s: float = Field(default=20.0, gt=0)
    # uvloop (libuv) cuts the event loop's share of every Kafka, gRPC and HTTP round trip; "asyncio" is the
    # standard library's loop, for debugging.
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", validation_alias=AliasChoices("RAGSTREAM_EVENT_LOOP")
    )


S = TypeVar("S", bound=BaseSettings)



def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    """The environment variable that feeds `field` of `settings_cls`."""
    info = settings_cls.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0]).upper()
    prefix = settings_cls.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def load_settings(settings_cls: type[S]) -> S:
    """Build settings from the environment; on bad config exit with the variables named."""
    try:
        return settings_cls()
    except ValidationError as exc:
        lines = [f"invalid configuration for {settings_cls.__name__}:"]
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"  {env_name(settings_cls, field)}: {error['msg']} (got {error.get('input')!r})")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None

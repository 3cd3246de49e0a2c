"""Settings shared by every service: pydantic-settings with one env prefix per service.

Infrastructure addresses (KAFKA_*, DATABASE_URL, OTEL_*) are shared by all services and carry no prefix;
everything service-specific reads `<SERVICE>_<FIELD>`.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.kafka_settings import KafkaSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class BindSettings(BaseSettings):
    """RAGSTREAM_BIND_HOST: the default address every server binds (0.0.0.0 in the container image)."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore")

    bind_host: str = "127.0.0.1"


def bind_host() -> str:
    """The default address servers bind: $RAGSTREAM_BIND_HOST or loopback."""
    return BindSettings().bind_host


class ServiceSettings(BaseSettings):
    """Base for every service's settings; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore", validate_default=True)

    service_name: str = "ragstream"
    # KAFKA_BOOTSTRAP_SERVERS and the KAFKA_* security variables, unprefixed (see kafka_settings).
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))
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


def failed_settings_class(settings_cls: type[BaseSettings], title: str) -> type[BaseSettings]:
    """The class a ValidationError titled `title` is about: `settings_cls` or a settings block nested in it.

    A nested block (e.g. `blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)`) reads its own
    variables in its default factory, so its errors carry its own title and field locations.
    """
    for info in settings_cls.model_fields.values():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings) and nested.__name__ == title:
            return nested
    return settings_cls


def _shown_input(settings_cls: type[BaseSettings], field: str, error: ErrorDetails) -> str:
    """The offending value for the error message, unless the field holds a secret (a password, an API key)."""
    info = settings_cls.model_fields.get(field)
    if info is not None and "Secret" in str(info.annotation):
        return "'**********'"
    return repr(error.get("input"))


def load_settings(settings_cls: type[S]) -> S:
    """Build settings from the environment; on bad config exit with the variables named."""
    try:
        return settings_cls()
    except ValidationError as exc:
        failed = failed_settings_class(settings_cls, exc.title)
        lines = [f"invalid configuration for {failed.__name__}:"]
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"  {env_name(failed, field)}: {error['msg']} (got {_shown_input(failed, field, error)})")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None

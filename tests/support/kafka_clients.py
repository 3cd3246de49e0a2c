"""Kafka clients in tests authenticate like the services: SASL/SCRAM settings from a `KafkaSettings`."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka_settings import KafkaSettings


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """bootstrap_servers plus the security options, for AIOKafkaProducer/Consumer/AdminClient/Client."""
    return {"bootstrap_servers": settings.bootstrap_servers, **client_options(settings)}


def signed_in_as(settings: KafkaSettings, user: str, password: str | SecretStr) -> KafkaSettings:
    """The same broker and protocol, as another SCRAM user."""
    secret = password if isinstance(password, SecretStr) else SecretStr(password)
    return settings.model_copy(update={"sasl_username": user, "sasl_password": secret})


def service_settings(admin: KafkaSettings, env: dict[str, str]) -> KafkaSettings:
    """KafkaSettings from a service's KAFKA_* environment (kafka_identity_env)."""
    password = env.get("KAFKA_SASL_PASSWORD")
    return admin.model_copy(
        update={
            "bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "security_protocol": env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            "sasl_mechanism": env.get("KAFKA_SASL_MECHANISM"),
            "sasl_username": env.get("KAFKA_SASL_USERNAME"),
            "sasl_password": SecretStr(password) if password else None,
        }
    )


def settings_env(settings: KafkaSettings) -> dict[str, str]:
    """The KAFKA_* variables that make `KafkaSettings()` in a child process equal `settings`."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": settings.security_protocol}
    if settings.sasl_mechanism is not None:
        env["KAFKA_SASL_MECHANISM"] = settings.sasl_mechanism
    if settings.sasl_username is not None:
        env["KAFKA_SASL_USERNAME"] = settings.sasl_username
    if settings.sasl_password is not None:
        env["KAFKA_SASL_PASSWORD"] = settings.sasl_password.get_secret_value()
    return env

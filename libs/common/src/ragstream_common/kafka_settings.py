"""How every Kafka client of Ragstream reaches the brokers: one unprefixed set of KAFKA_* variables.

Locally SASL_PLAINTEXT with SCRAM-SHA-512, each service as its own user (`make run` and the tests set these
variables: ragstream_devstack.kafka_identities); TLS + SASL on MSK, where the Kubernetes overlay sets
KAFKA_SECURITY_PROTOCOL=SASL_SSL and KAFKA_SASL_MECHANISM=OAUTHBEARER (IAM tokens signed by the pod's role for
AWS_REGION). The defaults (PLAINTEXT, no credentials) reach no Ragstream broker: they are a base to override.
Services nest it as a field, `kafka: KafkaSettings = Field(default_factory=KafkaSettings)`; the one-shot topic
bootstrap does too.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
_NEEDS_CREDENTIALS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class KafkaSettings(BaseSettings):
    """KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME,
    KAFKA_SASL_PASSWORD, AWS_REGION (for MSK IAM tokens) and KAFKA_COMMIT_INTERVAL_MS."""

    # Empty variables count as unset: an overlay may blank a mechanism it does not use.
    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", extra="ignore", validate_default=True, env_ignore_empty=True, populate_by_name=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    # Declared after the protocol, and the credentials after the mechanism: each check reads the fields before
    # it, and a field (not model) validator makes the error name the variable to fix.
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    aws_region: str = Field(default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "aws_region"))
    # How often a service's consumers commit what they handled at most (ConsumerOptions.commit_interval_ms): a
    # commit per one-record batch cost the broker more CPU per question than the records did. A crash
    # redelivers at most this long's records; handlers rewrite them idempotently.
    commit_interval_ms: int = Field(default=200, ge=0, le=60_000)

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("sasl_mechanism")
    @classmethod
    def _sasl_needs_mechanism(cls, mechanism: str | None, info: ValidationInfo) -> str | None:
        if str(info.data.get("security_protocol", "")).startswith("SASL") and mechanism is None:
            raise ValueError("a SASL_* security protocol needs KAFKA_SASL_MECHANISM (OAUTHBEARER, SCRAM-SHA-512, ...)")
        # The signer is the optional `msk` extra: say so at start rather than at the first connection attempt.
        if mechanism == "OAUTHBEARER" and importlib.util.find_spec("aws_msk_iam_sasl_signer") is None:
            raise ValueError(
                "OAUTHBEARER (MSK IAM) needs the `msk` extra of the service (image: --build-arg EXTRAS=msk)"
            )
        return mechanism

    @field_validator("sasl_username", "sasl_password")
    @classmethod
    def _credentials_for_mechanism(cls, value: str | SecretStr | None, info: ValidationInfo) -> str | SecretStr | None:
        mechanism = info.data.get("sasl_mechanism")
        protocol = str(info.data.get("security_protocol", ""))
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        if protocol.startswith("SASL") and mechanism in _NEEDS_CREDENTIALS and not secret:
            raise ValueError(f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        return value

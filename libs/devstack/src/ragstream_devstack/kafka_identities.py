"""Kafka principals of the local services (SCRAM-SHA-512 users with per-service ACLs). Placeholder: plaintext."""

from __future__ import annotations

from ragstream_devstack.credentials import LocalCredentials


def kafka_identity_env(service: str, *, credentials: LocalCredentials, kafka: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka}


def provision_kafka_identities(*, credentials: LocalCredentials, kafka: str) -> None:
    return None

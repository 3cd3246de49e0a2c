"""Shared fixtures: real Kafka and Postgres (see ragstream_devstack.fixtures), migrated and bootstrapped."""

from __future__ import annotations

import os

import pytest
from ragstream_devstack.credentials import LocalCredentials

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["ragstream_devstack.fixtures"]


TIER_ORDER = {"unit": 0, "integration": 1, "e2e": 2}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tiers in order. The e2e tier starts the whole system once and keeps it up to the end of the
    session; its workers share the session's broker and database, so no narrower test may run after it."""

    def tier(item: pytest.Item) -> int:
        return min((TIER_ORDER[m.name] for m in item.iter_markers() if m.name in TIER_ORDER), default=1)

    items.sort(key=tier)


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    """The session database with every migration applied."""
    from ragstream_common.migrate import apply_migrations

    apply_migrations(database_url)
    return database_url


@pytest.fixture(scope="session")
async def kafka_topics(kafka_bootstrap: str) -> str:
    """The session broker with every declared topic created."""
    from ragstream_common.kafka.bootstrap import ensure_topics
    from ragstream_common.kafka_settings import KafkaSettings

    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    return kafka_bootstrap


@pytest.fixture(scope="session")
def service_identities(
    kafka_topics: str, migrated_database: str, local_credentials: LocalCredentials
) -> LocalCredentials:
    """The session's credentials once every service's Kafka principal and Postgres role exist (identities.py)."""
    from ragstream_devstack.identities import provision_identities

    provision_identities(credentials=local_credentials, kafka=kafka_topics, database_url=migrated_database)
    return local_credentials

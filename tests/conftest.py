"""Shared fixtures: real Kafka and Postgres (see ragstream_devstack.fixtures), migrated and bootstrapped."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["ragstream_devstack.fixtures"]


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

    await ensure_topics(kafka_bootstrap)
    return kafka_bootstrap

"""pytest plugin: real Kafka, Postgres and Redis for a test session.

Load with `pytest_plugins = ["ragstream_devstack.fixtures"]` in tests/conftest.py.
Each server is started on first use and stopped when the session ends; see
ragstream_devstack.providers for where they come from (env, Docker, local launchers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.providers import provide_kafka, provide_postgres
from ragstream_devstack.redis import provide_redis


@pytest.fixture(scope="session")
def local_credentials(tmp_path_factory: pytest.TempPathFactory) -> LocalCredentials:
    """The session's secrets: the broker's admin and every service identity's (see credentials.py)."""
    return LocalCredentials(tmp_path_factory.mktemp("credentials"))


@pytest.fixture(scope="session")
def kafka_admin(local_credentials: LocalCredentials) -> Iterator[KafkaSettings]:
    """The super user's connection settings (SASL/SCRAM-SHA-512 as `ragstream-admin`) for a single-node Kafka
    with auto topic creation off that denies what no ACL allows."""
    with provide_kafka(local_credentials) as settings:
        yield settings


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_admin: KafkaSettings) -> str:
    """Bootstrap servers ("host:port") of that Kafka; a client also needs credentials (`kafka_admin`)."""
    return kafka_admin.bootstrap_servers


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """postgresql:// URL; servers we start have the `vector` extension created."""
    with provide_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(local_credentials: LocalCredentials) -> Iterator[str]:
    """redis://:<password>@host:port/0 of a password-protected Redis (REDIS_URL, else a LocalRedis): the
    gateway's shared rate limits and quota counters (GATEWAY_RATE_LIMIT_STORAGE)."""
    with provide_redis(local_credentials.secret("redis")) as url:
        yield url

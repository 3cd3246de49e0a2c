"""Shared fixtures: real Kafka and Postgres (see ragstream_devstack.fixtures), migrated and bootstrapped."""

from __future__ import annotations

import os

import pytest
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# In-process gateways (httpx's ASGITransport) return only once the audit trail's row is written, so its commit
# window would add 50 ms to each of the suite's thousands of requests (6 minutes on the security tier alone);
# a served caller never waits for it. The window itself: test_gateway_audit_chain.py and test_gateway_audit.py.
os.environ.setdefault("GATEWAY_AUDIT_TRAIL_COMMIT_WINDOW_MS", "0")

# The session's infrastructure (Kafka, Postgres, Redis), then the whole system on it for tests/e2e and
# tests/browser (support/system_plugin.py): one definition of each fixture, so one system per session.
pytest_plugins = ["ragstream_devstack.fixtures", "support.system_plugin"]


# The security suite uses the session infrastructure in-process, so it runs with the integration tier.
TIER_ORDER = {"unit": 0, "integration": 1, "security": 1, "e2e": 2}


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
async def kafka_topics(kafka_admin: KafkaSettings) -> str:
    """The session broker (its bootstrap servers) with every declared topic created, as its super user."""
    from ragstream_common.kafka.bootstrap import ensure_topics

    await ensure_topics(kafka_admin)
    return kafka_admin.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_principals(kafka_topics: str, local_credentials: LocalCredentials) -> dict[str, KafkaSettings]:
    """Each service's KafkaSettings as its own principal (`ragstream-<service>`, SASL/SCRAM) once every principal
    and its ACLs exist (kafka_identities.py), plus "provisioner" (`ragstream-provisioner`)."""
    from ragstream_devstack.kafka_identities import kafka_identity_env, provision_kafka_identities
    from ragstream_devstack.system import SERVICE_NAMES
    from support.kafka_clients import service_settings, signed_in_as

    provision_kafka_identities(credentials=local_credentials, kafka=kafka_topics)
    envs = {name: kafka_identity_env(name, credentials=local_credentials, kafka=kafka_topics) for name in SERVICE_NAMES}
    principals = {name: service_settings(KafkaSettings(), env) for name, env in envs.items()}
    gateway = envs["gateway"]
    username, password = gateway["GATEWAY_KAFKA_PROVISIONER_USERNAME"], gateway["GATEWAY_KAFKA_PROVISIONER_PASSWORD"]
    principals["provisioner"] = signed_in_as(principals["gateway"], username, password)
    return principals


@pytest.fixture(scope="session")
def service_identities(
    kafka_topics: str, migrated_database: str, local_credentials: LocalCredentials
) -> LocalCredentials:
    """The session's credentials once every service's Kafka principal and Postgres role exist (identities.py)."""
    from ragstream_devstack.identities import provision_identities

    provision_identities(credentials=local_credentials, kafka=kafka_topics, database_url=migrated_database)
    return local_credentials


@pytest.fixture(scope="session")
def service_database_urls(migrated_database: str, local_credentials: LocalCredentials) -> dict[str, str]:
    """Each Postgres login's URL once the roles can log in (pg_identities.py), by identity: gateway,
    gateway-admin, ingest, embed, retrieve. Tests where row-level security is the point connect with these."""
    from ragstream_devstack.pg_identities import LOGIN_ROLES, login_url, provision_postgres_identities

    provision_postgres_identities(credentials=local_credentials, database_url=migrated_database)
    return {name: login_url(migrated_database, name, credentials=local_credentials) for name in LOGIN_ROLES}

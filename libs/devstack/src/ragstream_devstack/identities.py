"""Each service's identities on a local system: its Kafka principal, Postgres login, token signing key and, for
the gateway and the connectors worker, the master key of connector secrets (envelope_keys.py).

`service_env` (system.py) adds `service_identity_env` to every service's environment; `prepare_platform`
(run.py) calls `provision_identities` once the broker and database are up, before any service starts.
"""

from __future__ import annotations

from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.envelope_keys import envelope_identity_env
from ragstream_devstack.kafka_identities import kafka_identity_env, provision_kafka_identities
from ragstream_devstack.pg_identities import postgres_identity_env, provision_postgres_identities
from ragstream_devstack.token_keys import token_identity_env


def service_identity_env(
    service: str, *, credentials: LocalCredentials, kafka: str, database_url: str
) -> dict[str, str]:
    """KAFKA_*, DATABASE_URL, the token settings and SECRETS_MASTER_KEY* of `service`, as its own identity."""
    return {
        **kafka_identity_env(service, credentials=credentials, kafka=kafka),
        **postgres_identity_env(service, credentials=credentials, database_url=database_url),
        **token_identity_env(service, credentials=credentials),
        **envelope_identity_env(service, credentials=credentials),
    }


def provision_identities(*, credentials: LocalCredentials, kafka: str, database_url: str) -> None:
    """Create or update every service's Kafka principal (with its ACLs) and Postgres login role."""
    provision_kafka_identities(credentials=credentials, kafka=kafka)
    provision_postgres_identities(credentials=credentials, database_url=database_url)

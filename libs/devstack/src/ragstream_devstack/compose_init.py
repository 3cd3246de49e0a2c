"""The one-shots of docker-compose.yml, as the store's administrator, before any service starts.

  python -m ragstream_devstack.compose_init kafka     topics, then every service principal (SCRAM-SHA-512) and
                                                      the provisioner with exactly their ACLs (kafka/acls.py)
  python -m ragstream_devstack.compose_init postgres  migrations, then LOGIN and a password for every service
                                                      role (what `python -m ragstream_common.db_logins` does)

The same steps as `make run` (run.prepare_platform, kafka_identities, pg_identities), reading the secrets from
`--credentials` (default /run/secrets, where compose mounts them: one file per secret, named as in
LocalCredentials). Compose runs this module from the gateway image with libs/devstack mounted read-only, so it
imports nothing the gateway image lacks (tests/unit/test_infra_compose_trust.py checks it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from aiokafka.errors import KafkaConnectionError
from psycopg.conninfo import make_conninfo
from ragstream_common.kafka.acls import ADMIN_USER
from ragstream_common.kafka.bootstrap import ensure_topics
from ragstream_common.migrate import apply_migrations

from ragstream_devstack.compose_secrets import KAFKA_ADDRESS, POSTGRES_ADMIN_SECRET
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka_identities import admin_kafka_settings, provision_kafka_identities
from ragstream_devstack.pg_identities import provision_postgres_identities

T = TypeVar("T")
ATTEMPTS = 30


def init_kafka(credentials: LocalCredentials, bootstrap: str, replication_factor: int = 1) -> None:
    """Topics, then the principals and their ACLs, signed in as the broker's super user."""
    admin = admin_kafka_settings(credentials, bootstrap)
    if admin.sasl_username != ADMIN_USER:
        raise SystemExit(f"expected to sign in as {ADMIN_USER}: unset KAFKA_BOOTSTRAP_SERVERS for this one-shot")
    created = _retry(
        lambda: asyncio.run(ensure_topics(admin, replication_factor=replication_factor)), KafkaConnectionError
    )
    provision_kafka_identities(credentials=credentials, kafka=bootstrap)
    print(f"kafka: {len(created)} topics created; service principals and ACLs reconciled", file=sys.stderr)


def init_postgres(credentials: LocalCredentials, database_url: str) -> None:
    """Migrations, then each service role's LOGIN and password, signed in as the superuser."""
    password = credentials.stored(POSTGRES_ADMIN_SECRET)
    if password is None:
        raise SystemExit(f"no {POSTGRES_ADMIN_SECRET} secret in {credentials.directory}")
    admin_url = make_conninfo(database_url, password=password)
    applied = _retry(lambda: apply_migrations(admin_url), psycopg.OperationalError)
    provision_postgres_identities(credentials=credentials, database_url=admin_url)
    print(f"postgres: migrations applied {applied or 'none pending'}; service logins set", file=sys.stderr)


def _retry(step: Callable[[], T], transient: type[Exception] | tuple[type[Exception], ...]) -> T:
    # Healthy is not always ready: Postgres' image restarts once after initdb, a broker may still be electing.
    for attempt in range(ATTEMPTS):
        try:
            return step()
        except transient as exc:
            if attempt == ATTEMPTS - 1:
                raise
            print(f"not ready yet ({exc!r}); retrying", file=sys.stderr)
            time.sleep(1)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack.compose_init", description=__doc__)
    parser.add_argument("store", choices=["kafka", "postgres"])
    parser.add_argument("--credentials", type=Path, default=Path("/run/secrets"), help="default: /run/secrets")
    parser.add_argument("--bootstrap", default=KAFKA_ADDRESS, help=f"kafka: the broker (default {KAFKA_ADDRESS})")
    parser.add_argument("--replication-factor", type=int, default=1, help="kafka: of the topics (default 1)")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", ""), help="postgres: without the password"
    )
    args = parser.parse_args(argv)
    credentials = LocalCredentials(args.credentials)
    if args.store == "kafka":
        init_kafka(credentials, args.bootstrap, args.replication_factor)
    elif not args.database_url:
        parser.error("postgres needs --database-url or DATABASE_URL")
    else:
        init_postgres(credentials, args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

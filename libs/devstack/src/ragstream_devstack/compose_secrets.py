"""Secrets of `docker compose`: the same identities as `make run`, written where docker-compose.yml mounts them.

`python -m ragstream_devstack.compose_secrets` (before the first `docker compose up`) fills var/compose/
(git-ignored; never commit it):

  credentials/   one secret per file (LocalCredentials, as var/credentials for `make run`): the broker's super
                 user `kafka-admin`, each principal's `kafka-<service>`, the Postgres superuser `postgres-admin`,
                 each login's `postgres-<identity>`, the token signing keys, Redis's `redis`, the master key of
                 connector secrets `secrets-master-key` (envelope_keys.py: never delete it, it cannot be
                 regenerated). The one-shots mount the Kafka and Postgres ones.
  env/<svc>.env  what only that service may know, sourced by its entrypoint: its Kafka and Postgres passwords
                 (inside DATABASE_URL), its token signing key, the JWKS to trust; the gateway's also the URL of
                 its rate limits and quotas (GATEWAY_RATE_LIMIT_STORAGE, the Redis password inside); the
                 gateway's and the connectors worker's also SECRETS_MASTER_KEY and SECRETS_MASTER_KEY_ID.
  redis/         auth.conf: Redis's `requirepass`, a config file its server reads, so the password is on no
                 command line.
  kafka/         server.properties (SASL/SCRAM, StandardAuthorizer, rendered by kafka_config exactly as
                 containers.py renders it), the super user's SCRAM argument and its client properties.
  tls/           a CA and one certificate per gRPC server, for docker-compose.tls.yml (compose_tls.py).

Existing secrets are kept, so running it again only adds what is missing and re-renders the files from them:
rotate a secret by deleting its file under credentials/ (or with `python -m ragstream_devstack.token_keys
--credentials var/compose/credentials ...`), running this again and recreating the containers
(docs/deployment.md). Files are 0644 inside 0700 directories: compose bind-mounts them into containers whose
users (10001, Kafka's 1000, Postgres' and Redis's 999) differ from yours.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ragstream_common.db_logins import LOGIN_ROLES
from ragstream_common.kafka.acls import ADMIN_USER, PROVISIONER_USER, service_user
from ragstream_common.registry import SERVICE_NAMES

from ragstream_devstack.compose_tls import write_tls
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.identities import service_identity_env
from ragstream_devstack.kafka_config import (
    CLIENT_PROTOCOL,
    SASL_MECHANISM,
    ExtraListener,
    render_properties,
    scram_credential_argument,
    single_node_settings,
)
from ragstream_devstack.kafka_identities import ADMIN_SECRET, admin_password

DEFAULT_DIRECTORY = Path("var/compose")
KAFKA_ADDRESS = "kafka:9092"
# The administrator's database URL without its password (the one-shot adds `postgres-admin`'s).
ADMIN_DATABASE_URL = "postgresql://ragstream@postgres:5432/ragstream"
POSTGRES_ADMIN_SECRET = "postgres-admin"
# Workers dial only the gateway's ReplyService (reply_targets.py: one host and port).
REPLY_ALLOWED_TARGETS = "gateway:50050"
# Tools and tenants' clients on the host machine reach the broker here (SASL/SCRAM like the services).
HOST_LISTENER = ExtraListener(9094, "localhost:9094")
KAFKA_LOG_DIR = Path("/var/lib/kafka/data")
# Redis holds the gateway's shared rate limits and quota counters; only the gateway knows its password.
REDIS_SECRET = "redis"
REDIS_ADDRESS = "redis:6379"
# The gRPC servers docker-compose.tls.yml turns TLS on for (their settings read GRPC_TLS_*; ingest's do not).
TLS_SERVERS = ("embed", "retrieve", "generate", "gateway")
# Identity variables docker-compose.yml sets in plain sight; everything else of a service's identity
# (passwords, signing keys, the JWKS that rotates with them) is in its env file.
PUBLIC_VARIABLES = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "GATEWAY_KAFKA_PROVISIONER_USERNAME",
        "TOKEN_ISSUER",
        "REPLY_ALLOWED_TARGETS",
    }
)


def kafka_secrets() -> list[str]:
    """The Kafka one-shot's secrets: the super user's and every principal it provisions."""
    users = [service_user(name) for name in SERVICE_NAMES] + [PROVISIONER_USER]
    return [ADMIN_SECRET] + [f"kafka-{user.removeprefix('ragstream-')}" for user in users]


def postgres_secrets() -> list[str]:
    """The migration one-shot's secrets: the superuser's and every login role's."""
    return [POSTGRES_ADMIN_SECRET] + [f"postgres-{identity}" for identity in LOGIN_ROLES]


def redis_url(credentials: LocalCredentials) -> str:
    """The gateway's GATEWAY_RATE_LIMIT_STORAGE: compose's Redis, signed in with its password."""
    return f"redis://:{credentials.secret(REDIS_SECRET)}@{REDIS_ADDRESS}/0"


def service_identity(service: str, credentials: LocalCredentials) -> dict[str, str]:
    """Every identity variable of `service` in compose: devstack's (identities.py) with compose's addresses, and
    the gateway's limits store."""
    env = service_identity_env(service, credentials=credentials, kafka=KAFKA_ADDRESS, database_url=ADMIN_DATABASE_URL)
    if env.get("KAFKA_SASL_USERNAME") != service_user(service):
        raise RuntimeError("unset KAFKA_BOOTSTRAP_SERVERS: compose's services sign in with their own SCRAM users")
    if service == "gateway":
        env["GATEWAY_RATE_LIMIT_STORAGE"] = redis_url(credentials)
    return {**env, "REPLY_ALLOWED_TARGETS": REPLY_ALLOWED_TARGETS}


def secret_env(service: str, credentials: LocalCredentials) -> dict[str, str]:
    """What goes into var/compose/env/<service>.env: the identity minus what compose sets in plain sight."""
    return {k: v for k, v in service_identity(service, credentials).items() if k not in PUBLIC_VARIABLES}


def render_env_file(env: Mapping[str, str]) -> str:
    """`KEY='value'` lines for `set -a; . file` (values may span lines: PEM keys)."""
    lines = []
    for key, value in env.items():
        if "'" in value:
            raise ValueError(f"{key} contains a single quote, which the env file cannot carry")
        lines.append(f"{key}='{value}'\n")
    return "".join(lines)


def redis_files(credentials: LocalCredentials) -> dict[str, str]:
    """Redis's config file with its password (generated URL-safe, so it needs no quoting)."""
    return {"auth.conf": f"requirepass {credentials.secret(REDIS_SECRET)}\n"}


def broker_files(credentials: LocalCredentials) -> dict[str, str]:
    """The broker's files: server.properties, the super user's `--add-scram` argument and client properties."""
    password = admin_password(credentials)
    settings = single_node_settings(
        listen_host="0.0.0.0",
        advertised_host=KAFKA_ADDRESS.partition(":")[0],
        broker_port=int(KAFKA_ADDRESS.partition(":")[2]),
        controller_port=9093,
        controller_host="localhost",
        admin_password=password,
        log_dir=KAFKA_LOG_DIR,
        extra_listeners={"HOST": HOST_LISTENER},
    )
    client = {
        "security.protocol": CLIENT_PROTOCOL,
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{password}";',
    }
    return {
        "server.properties": render_properties(settings),
        "admin-scram": scram_credential_argument(password),
        "admin-client.properties": render_properties(client),
    }


def write_compose_secrets(directory: Path) -> None:
    """Make the missing secrets under `directory` and (re)render every file derived from them."""
    credentials = LocalCredentials(directory / "credentials")
    for name in [*kafka_secrets(), *postgres_secrets()]:
        credentials.secret(name)
    _write_files(directory / "kafka", broker_files(credentials))
    _write_files(directory / "redis", redis_files(credentials))
    env_files = {f"{name}.env": render_env_file(secret_env(name, credentials)) for name in SERVICE_NAMES}
    _write_files(directory / "env", env_files)
    write_tls(directory / "tls", hosts=TLS_SERVERS)
    _share_with_containers(directory)


def _write_files(directory: Path, files: Mapping[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in files.items():
        path = directory / name
        partial = path.with_name(f"{name}.partial")
        partial.write_text(text)
        partial.replace(path)


def _share_with_containers(directory: Path) -> None:
    # The 0700 directories keep other users of this machine out; the files themselves must be readable by
    # the containers' users, which bind mounts present with this machine's owner and mode.
    for path in [directory, *directory.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o644)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack.compose_secrets", description=__doc__)
    parser.add_argument("--directory", type=Path, default=DEFAULT_DIRECTORY, help="default: var/compose")
    args = parser.parse_args(argv)
    write_compose_secrets(args.directory)
    print(f"compose secrets ready in {args.directory} (keep it out of version control)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

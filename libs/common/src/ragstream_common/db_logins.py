"""Give the services' Postgres roles (migration 0005, roles.sql) LOGIN and a password: the one-shot step after
migrations.

`python -m ragstream_common.db_logins` signs in as the administrator (DATABASE_URL) and, for every
`RAGSTREAM_PG_PASSWORD_<IDENTITY>` that is set (GATEWAY, GATEWAY_ADMIN, INGEST, EMBED, RETRIEVE, CONNECTORS,
METERING), runs `ALTER ROLE ... LOGIN PASSWORD` with a SCRAM verifier computed here, so the password itself never
reaches the server (nor its statement log). Compose and a Kubernetes job run it with each service's secret; the devstack
(pg_identities.py) calls `grant_login` with its local secrets. On RDS with IAM authentication, skip it and
`GRANT rds_iam` to the roles instead.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
from psycopg import sql
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.config import DEFAULT_DATABASE_URL, load_settings

# identity -> login role; generate has none (no database access at all).
LOGIN_ROLES = {
    "gateway": "ragstream_gateway",
    "gateway-admin": "ragstream_gateway_admin",
    "ingest": "ragstream_ingest",
    "embed": "ragstream_embed",
    "retrieve": "ragstream_retrieve",
    # Created by roles.sql, granted by migration 0009.
    "connectors": "ragstream_connectors",
    # Created by roles.sql, granted by migration 0012 (usage_minutes).
    "metering": "ragstream_metering",
}


class LoginSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_PG_PASSWORD_", extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))
    gateway: SecretStr | None = None
    gateway_admin: SecretStr | None = None
    ingest: SecretStr | None = None
    embed: SecretStr | None = None
    retrieve: SecretStr | None = None
    connectors: SecretStr | None = None
    metering: SecretStr | None = None

    def passwords(self) -> dict[str, SecretStr]:
        """identity -> password, for the identities whose password is set."""
        found = {identity: getattr(self, identity.replace("-", "_")) for identity in LOGIN_ROLES}
        return {identity: password for identity, password in found.items() if password is not None}


def grant_login(connection: psycopg.Connection[Any], role: str, password: str) -> None:
    """LOGIN with `password` for `role`, which the migrations must have created."""
    if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise RuntimeError(f"role {role} does not exist: apply the migrations first")
    verifier = connection.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    statement = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode()))
    connection.execute(statement)


def grant_logins(database_url: str, passwords: dict[str, SecretStr]) -> list[str]:
    """Apply `passwords` (identity -> password); return the roles that can now log in."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        for identity, password in passwords.items():
            grant_login(connection, LOGIN_ROLES[identity], password.get_secret_value())
    return [LOGIN_ROLES[identity] for identity in passwords]


def main() -> None:
    settings = load_settings(LoginSettings)
    roles = grant_logins(settings.database_url, settings.passwords())
    print(f"database logins: {', '.join(roles) or 'none (no RAGSTREAM_PG_PASSWORD_* set)'}", file=sys.stderr)


if __name__ == "__main__":
    main()

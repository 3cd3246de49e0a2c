"""Postgres login roles of the local services (least privilege, migration 0005; connectors,
metering: roles.sql, 0009, 0012).

Migrations create the roles NOLOGIN with their grants; here each one gets LOGIN and a password from the local
credentials (`postgres-<identity>`), and each service its own DATABASE_URL: the administrator's host, port and
database under its own login. The gateway has two: DATABASE_URL and GATEWAY_ADMIN_DATABASE_URL (admin API).
Generate has no database access at all: its DATABASE_URL is set empty, so it never inherits the
administrator's from the environment.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from psycopg.conninfo import make_conninfo
from pydantic import SecretStr
from ragstream_common.db_logins import LOGIN_ROLES, grant_logins

from ragstream_devstack.credentials import LocalCredentials

__all__ = ["LOGIN_ROLES", "SERVICE_LOGINS", "login_url", "postgres_identity_env", "provision_postgres_identities"]

# service -> {environment variable: identity}
SERVICE_LOGINS = {
    "gateway": {"DATABASE_URL": "gateway", "GATEWAY_ADMIN_DATABASE_URL": "gateway-admin"},
    "ingest": {"DATABASE_URL": "ingest"},
    "embed": {"DATABASE_URL": "embed"},
    "retrieve": {"DATABASE_URL": "retrieve"},
    "connectors": {"DATABASE_URL": "connectors"},
    "metering": {"DATABASE_URL": "metering"},
}


def postgres_identity_env(service: str, *, credentials: LocalCredentials, database_url: str) -> dict[str, str]:
    logins = SERVICE_LOGINS.get(service)
    if logins is None:
        return {"DATABASE_URL": ""}
    return {
        variable: login_url(database_url, identity, credentials=credentials) for variable, identity in logins.items()
    }


def provision_postgres_identities(*, credentials: LocalCredentials, database_url: str) -> None:
    """Give every login role LOGIN and its password (idempotent; run after the migrations)."""
    grant_logins(database_url, {name: SecretStr(_password(credentials, name)) for name in LOGIN_ROLES})


def login_url(database_url: str, identity: str, *, credentials: LocalCredentials) -> str:
    """`database_url` (the administrator's) with `identity`'s login role and password."""
    role, password = LOGIN_ROLES[identity], _password(credentials, identity)
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql"):  # a key=value connection string
        return make_conninfo(database_url, user=role, password=password)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"))


def _password(credentials: LocalCredentials, identity: str) -> str:
    return credentials.secret(f"postgres-{identity}")

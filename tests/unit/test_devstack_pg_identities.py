"""Devstack Postgres identities: each service's DATABASE_URL and the pg_hba lines for the service roles."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.pg_identities import LOGIN_ROLES, SERVICE_LOGINS, login_url, postgres_identity_env
from ragstream_devstack.postgres import require_service_passwords

pytestmark = pytest.mark.unit
ADMIN_URL = "postgresql://postgres@127.0.0.1:5433/ragstream?connect_timeout=5"


def test_each_service_gets_its_own_login_on_the_same_database(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    env = {s: postgres_identity_env(s, credentials=credentials, database_url=ADMIN_URL) for s in SERVICE_LOGINS}
    assert set(env["gateway"]) == {"DATABASE_URL", "GATEWAY_ADMIN_DATABASE_URL"}
    secret = credentials.stored("postgres-retrieve")
    assert env["retrieve"] == {
        "DATABASE_URL": f"postgresql://ragstream_retrieve:{secret}@127.0.0.1:5433/ragstream?connect_timeout=5"
    }
    gateway_admin = env["gateway"]["GATEWAY_ADMIN_DATABASE_URL"]
    assert gateway_admin.startswith("postgresql://ragstream_gateway_admin:")
    assert len({url for urls in env.values() for url in urls.values()}) == len(LOGIN_ROLES)
    # Generate has no database access, and never inherits the administrator's URL from the environment.
    assert postgres_identity_env("generate", credentials=credentials, database_url=ADMIN_URL) == {"DATABASE_URL": ""}


def test_passwords_are_quoted_and_key_value_strings_work(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    credentials.store("postgres-embed", "p@ss:w/rd")
    url = login_url("postgresql://admin:secret@db.internal/rag", "embed", credentials=credentials)
    assert url == "postgresql://ragstream_embed:p%40ss%3Aw%2Frd@db.internal/rag"
    dsn = login_url("host=db.internal dbname=rag user=admin", "embed", credentials=credentials)
    assert conninfo_to_dict(dsn) == {
        "host": "db.internal",
        "dbname": "rag",
        "user": "ragstream_embed",
        "password": "p@ss:w/rd",
    }


def test_service_roles_must_prove_their_password_first(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    hba.write_text("# initdb\nhost    all   all   127.0.0.1/32   trust\n")
    require_service_passwords(hba)
    require_service_passwords(hba)  # once only
    lines = [line.split() for line in hba.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == [
        ["local", "all", "/^ragstream_", "scram-sha-256"],
        ["host", "all", "/^ragstream_", "all", "scram-sha-256"],
        ["host", "all", "all", "127.0.0.1/32", "trust"],
    ]

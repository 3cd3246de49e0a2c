"""Migration 0005 on a database that already had 0001-0004 and data, and later migrations run as the owner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from ragstream_common.migrate import FIRST_OWNED_VERSION, OWNER_ROLE, Migration, apply_migrations, discover

pytestmark = pytest.mark.integration
# After every shipped migration (0006 onwards are real ones now), as a later migration would be.
_PROBE = Migration(
    9999,
    "probe",
    "CREATE TABLE probe (tenant_id text NOT NULL, note text); SELECT ragstream_isolate_tenant('probe');"
    " SELECT set_config('app.tenant_id', 't', true); INSERT INTO probe VALUES ('t', 'written by ' || current_user);",
)


@pytest.fixture
def scratch_database(migrated_database: str) -> Iterator[str]:
    """A new, empty database on the session's server (roles are cluster-wide, so they exist already)."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_database, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(migrated_database)._replace(path=f"/{name}"))
    with psycopg.connect(migrated_database, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_an_existing_database_upgrades_and_later_migrations_run_as_the_owner(scratch_database: str) -> None:
    shipped = discover()
    assert [m.version for m in shipped if m.version < FIRST_OWNED_VERSION] == [1, 2, 3, 4, 5]
    assert apply_migrations(scratch_database, shipped[:4]) == [1, 2, 3, 4]
    with psycopg.connect(scratch_database) as connection:  # what `make run` users already have
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES ('old', 'Old')")
        connection.execute("INSERT INTO api_keys (key_id, tenant_id, key_sha256) VALUES ('k', 'old', 'h')")
    assert apply_migrations(scratch_database, [*shipped, _PROBE]) == [m.version for m in shipped[4:]] + [9999]
    with psycopg.connect(scratch_database) as connection:
        owners = connection.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'S')"
        ).fetchall()
        probe = connection.execute(
            "SELECT relforcerowsecurity, (SELECT note FROM probe) FROM pg_class WHERE relname = 'probe'"
        ).fetchone()
        lookup = connection.execute("SELECT tenant_id FROM ragstream_find_api_key('h')").fetchall()
        app_role = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ragstream_app'").fetchall()
    assert owners == [(OWNER_ROLE,)]
    assert probe == (True, f"written by {OWNER_ROLE}")
    assert lookup == [("old",)]
    assert app_role == []  # the shared role services used to SET ROLE into is gone


def test_db_logins_sets_the_passwords_it_is_given(
    migrated_database: str, service_database_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m ragstream_common.db_logins` (compose, Kubernetes): the roles named in the environment only."""
    from ragstream_common import db_logins

    password = urlsplit(service_database_urls["embed"]).password
    assert password
    monkeypatch.setenv("DATABASE_URL", migrated_database)
    monkeypatch.setenv("RAGSTREAM_PG_PASSWORD_EMBED", password)  # the one it already has: other tests keep working
    settings = db_logins.LoginSettings()
    assert list(settings.passwords()) == ["embed"]
    db_logins.main()
    with psycopg.connect(service_database_urls["embed"]) as connection:
        assert connection.execute("SELECT current_user").fetchone() == ("ragstream_embed",)

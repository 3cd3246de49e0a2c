"""Versioned schema migrations, applied by a one-shot step before services start.

`python -m ragstream_common.migrate` applies every `migrations/NNNN_name.sql` not applied yet, each in its own
transaction, under an advisory lock so concurrent runners wait for each other. Applied files must not change:
their checksum is recorded and verified. Services never create tables themselves.

The runner logs in as the administrator (DATABASE_URL: a superuser locally, the RDS master user), but from
migration 0006 on each migration runs as the owner role (`SET LOCAL ROLE ragstream_owner`), so what it creates
belongs to that role. 0001-0005 run as the administrator: 0005 creates the roles and hands every existing
object to the owner. The owner obeys forced row-level security too: a migration that rewrites rows of every
tenant turns FORCE off and on again inside its own transaction. Roles added after 0005 are created by
`migrations/roles.sql`, which the administrator applies (idempotently) before any pending migration.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.config import DEFAULT_DATABASE_URL, load_settings

_LOCK_ID = 0x5241_4753  # "RAGS"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
OWNER_ROLE = "ragstream_owner"
# The first migration that runs as OWNER_ROLE (0005 creates it).
FIRST_OWNED_VERSION = 6
# Cluster-wide roles added after 0005: applied as the administrator on every run, once 0005 has been.
ROLES_FILE = "roles.sql"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrateSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))


def discover() -> list[Migration]:
    found = []
    for entry in resources.files("ragstream_common.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def apply_migrations(database_url: str, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply pending migrations (`discover()`'s unless given); return the versions applied by this call."""
    applied_now: list[int] = []
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = connection.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            done = {version: checksum for version, checksum in rows}
            candidates = discover() if migrations is None else migrations
            if any(m.version >= FIRST_OWNED_VERSION and m.version not in done for m in candidates):
                connection.execute(resources.files("ragstream_common.migrations").joinpath(ROLES_FILE).read_text())
            for migration in candidates:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        name = f"{migration.version}_{migration.name}"
                        raise RuntimeError(f"migration {name} changed after it was applied")
                    continue
                with connection.transaction():
                    if migration.version >= FIRST_OWNED_VERSION:
                        connection.execute(f"SET LOCAL ROLE {OWNER_ROLE}")
                    connection.execute(migration.sql)
                    connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now


def main() -> None:
    settings = load_settings(MigrateSettings)
    applied = apply_migrations(settings.database_url)
    print(f"migrations applied: {applied or 'none pending'}", file=sys.stderr)


if __name__ == "__main__":
    main()

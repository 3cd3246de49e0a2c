"""A full disk under one Postgres table: the table moved to a tablespace on a small tmpfs, filled by the test.

Needs root (mount); `SmallTablespace.create` raises PermissionError or OSError where mounting is refused, so the
scenario can skip. `fill` writes a filler file until the tmpfs is full (ENOSPC for Postgres's next page of that
table), `free` deletes it, `remove` moves the table back to the default tablespace and unmounts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

FILL_CHUNK = b"\0" * (1024 * 1024)


@dataclass
class SmallTablespace:
    database_url: str
    table: str
    mount: Path
    name: str = "chaos_small_disk"

    @property
    def filler(self) -> Path:
        return self.mount / "filler"

    def create(self, size_mb: int = 64) -> None:
        """Mount the tmpfs, create the tablespace on it (owned by the server's user) and move the table there."""
        self.mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(self.mount)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        location = self.mount / "tablespace"
        location.mkdir()
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as connection:
            row = connection.execute("SHOW data_directory").fetchone()
            owner = Path(str(row[0] if row else "")).stat()
            os.chown(self.mount, owner.st_uid, owner.st_gid)
            os.chown(location, owner.st_uid, owner.st_gid)
            connection.execute(
                sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                    sql.Identifier(self.name), sql.Literal(str(location))
                )
            )
            self._move_table(connection, self.name)

    def fill(self) -> int:
        """Write zeros until the tmpfs refuses more; returns the bytes written."""
        written = 0
        with self.filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
            while True:
                written += file.write(FILL_CHUNK)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remove(self) -> None:
        """Back to the default tablespace (the filler is freed first) and unmounted; safe to call when half made."""
        self.free()
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as connection:
            self._move_table(connection, "pg_default")
            connection.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(self.name)))
        subprocess.run(["umount", str(self.mount)], check=False, capture_output=True, timeout=30)

    def _move_table(self, connection: psycopg.Connection[tuple[object, ...]], tablespace: str) -> None:
        connection.execute("SET lock_timeout = '30s'")
        connection.execute(
            sql.SQL("ALTER TABLE {} SET TABLESPACE {}").format(sql.Identifier(self.table), sql.Identifier(tablespace))
        )

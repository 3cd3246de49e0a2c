"""Secrets of a local Ragstream: one directory, one file per secret, generated on first use and kept.

`make run` keeps them in var/credentials (so a restarted broker, database or service finds the same ones);
tests and benchmarks use a temporary directory. Each identity module (kafka_identities, pg_identities,
token_keys) names its own secrets here; nothing else writes this directory.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalCredentials:
    directory: Path

    def secret(self, name: str, *, nbytes: int = 24) -> str:
        """The secret called `name`, made (URL-safe random) and stored 0600 the first time it is asked for."""
        path = self._path(name)
        if not path.is_file():
            self.store(name, secrets.token_urlsafe(nbytes))
        return path.read_text().strip()

    def stored(self, name: str) -> str | None:
        path = self._path(name)
        return path.read_text().strip() if path.is_file() else None

    def store(self, name: str, value: str) -> None:
        """Write atomically with owner-only permissions (a half-written secret would lock a service out)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(name)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        partial.replace(path)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad secret name {name!r}")
        return self.directory / name

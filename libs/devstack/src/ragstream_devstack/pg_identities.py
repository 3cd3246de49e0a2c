"""Postgres login roles of the local services (least privilege). Placeholder: the admin URL."""

from __future__ import annotations

from ragstream_devstack.credentials import LocalCredentials


def postgres_identity_env(service: str, *, credentials: LocalCredentials, database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url}


def provision_postgres_identities(*, credentials: LocalCredentials, database_url: str) -> None:
    return None

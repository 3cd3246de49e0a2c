"""Token signing keys of the local services (service-to-service JWTs). Placeholder: none."""

from __future__ import annotations

from ragstream_devstack.credentials import LocalCredentials


def token_identity_env(service: str, *, credentials: LocalCredentials) -> dict[str, str]:
    return {}

"""The master key of connector secrets on a local system (envelope encryption, ragstream_common.secret_envelope).

Connectors' secrets (client secrets, refresh tokens, webhook keys) are sealed under a data key per tenant, and
each data key is stored only wrapped by a master key: KMS on AWS, locally this key from the settings
(SECRETS_MASTER_KEY, base64 of 32 random bytes, under the id SECRETS_MASTER_KEY_ID). The gateway seals (the
connector API) and unseals (webhook verification); the connectors worker unseals. No other service gets it.

Unlike the other local secrets it cannot simply be regenerated: a new key cannot unwrap the data keys the old
one wrapped, so deleting `secrets-master-key` from the credentials loses every connector's secrets.
"""

from __future__ import annotations

import base64
import secrets

from ragstream_devstack.credentials import LocalCredentials

# The services that hold the master key: the gateway seals and unseals, the connectors worker unseals.
ENVELOPE_SERVICES = ("gateway", "connectors")
MASTER_KEY_SECRET = "secrets-master-key"
MASTER_KEY_ID_SECRET = "secrets-master-key-id"
MASTER_KEY_BYTES = 32


def master_key(credentials: LocalCredentials) -> str:
    """Base64 of 32 random bytes (an AES-256 key), made and stored the first time it is asked for."""
    stored = credentials.stored(MASTER_KEY_SECRET)
    if stored is None:
        stored = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()
        credentials.store(MASTER_KEY_SECRET, stored)
    return stored


def master_key_id(credentials: LocalCredentials) -> str:
    """The name the wrapped data keys record (`local:<id>`), made with the key."""
    stored = credentials.stored(MASTER_KEY_ID_SECRET)
    if stored is None:
        stored = f"local-{secrets.token_hex(4)}"
        credentials.store(MASTER_KEY_ID_SECRET, stored)
    return stored


def envelope_identity_env(service: str, *, credentials: LocalCredentials) -> dict[str, str]:
    """SECRETS_MASTER_KEY and SECRETS_MASTER_KEY_ID for the services that seal or unseal; nothing for others."""
    if service not in ENVELOPE_SERVICES:
        return {}
    return {"SECRETS_MASTER_KEY": master_key(credentials), "SECRETS_MASTER_KEY_ID": master_key_id(credentials)}

"""Where the master key of the connector-secret envelope comes from: SECRETS_* variables (secret_envelope.py).

Services that seal or open connector secrets (the gateway, the connectors worker) nest it as
`secrets: SecretsSettings = Field(default_factory=SecretsSettings)`; both must hold the same master key.
A malformed key fails when the settings load; a missing one fails when the sealer is built, so services that
never touch secrets need none.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.config import DEFAULT_DATABASE_URL

MASTER_KEY_BYTES = 32
NEW_KEY_HINT = "generate one with `python -m ragstream_common.secret_envelope new-master-key`"


class SecretsSettings(BaseSettings):
    """SECRETS_PROVIDER, SECRETS_MASTER_KEY(_ID), SECRETS_KMS_KEY_ID, SECRETS_KMS_REGION, SECRETS_KMS_ENDPOINT_URL,
    and SECRETS_PREVIOUS_* while a master key is being rotated (docs/connectors.md).

    KMS credentials come from the usual AWS environment (an IAM role, AWS_ACCESS_KEY_ID, ...).
    """

    model_config = SettingsConfigDict(env_prefix="SECRETS_", extra="ignore")

    provider: Literal["local", "kms"] = "local"
    # base64 of 32 random bytes; wraps every tenant's data key when provider=local.
    master_key: SecretStr | None = None
    # Recorded with each wrapped data key ("local:<id>"), so a rotation knows which key wrapped what.
    master_key_id: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # A key id, ARN or alias of a symmetric KMS key when provider=kms.
    kms_key_id: str | None = None
    kms_region: str | None = None
    # An AWS-compatible endpoint (a VPC endpoint, a local test server); None means AWS itself.
    kms_endpoint_url: str | None = None
    # The key being rotated away from: still opens data keys it wrapped until `rewrap` has moved them.
    previous_master_key: SecretStr | None = None
    previous_master_key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    previous_kms_key_id: str | None = None
    # How long an unwrapped data key stays in memory (fewer KMS calls, a bounded window after a rotation).
    data_key_cache_s: float = Field(default=300.0, ge=0)

    @field_validator("master_key", "previous_master_key")
    @classmethod
    def _is_32_bytes_of_base64(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            decode_master_key(key)
        return key


def decode_master_key(key: SecretStr) -> bytes:
    """The 32 key bytes behind a base64 setting; ValueError (never echoing the value) when it is not one."""
    try:
        raw = base64.b64decode(key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the master key must be base64 of {MASTER_KEY_BYTES} bytes; {NEW_KEY_HINT}") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise ValueError(f"the master key must be {MASTER_KEY_BYTES} bytes, got {len(raw)}; {NEW_KEY_HINT}")
    return raw


class RewrapSettings(BaseSettings):
    """The rotation command (`secret_envelope rewrap`): the administrator's DATABASE_URL and SECRETS_*."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)

"""HTTP bodies of the key lifecycle and tenant update APIs: key listings, rotation, admin keys, PATCH of a tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

from ragstream_gateway.models import Timestamp
from ragstream_gateway.ports import ApiKeyRecord
from ragstream_gateway.quota_models import QuotasIn
from ragstream_gateway.ratelimit import validate_limit

MAX_GRACE_S = 7 * 24 * 3600
# A tenant's maximum key lifetime: from a minute to ten years.
MIN_KEY_LIFETIME_S = 60
MAX_KEY_LIFETIME_S = 10 * 365 * 24 * 3600
KeyName = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]


class ApiKeyView(BaseModel):
    """A key as listings show it: never the secret, never its hash."""

    key_id: str
    tenant_id: str
    name: str
    key_prefix: str = Field(description="The key's first characters, to tell keys apart; never enough to use it")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = Field(description="For a rotated key: the end of its grace period")
    last_used_at: datetime | None = Field(description="Accurate to about a minute")
    revoked_at: datetime | None
    replaced_by: str | None = Field(description="The key that replaced this one (rotation)")
    rotated_at: datetime | None


class ApiKeyPage(BaseModel):
    items: list[ApiKeyView]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null at the end")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        ge=0, le=MAX_GRACE_S, description="How long the old key keeps working (0 ends it at once; at most 7 days)"
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="The new key's expiry; default: the old key's lifetime from now (none if it had none), capped"
        " by the tenant's max_key_lifetime_s",
    )


class ApiKeyRotated(ApiKeyView):
    api_key: str = Field(description="The new secret; shown only in this response")
    replaces: ApiKeyView = Field(description="The old key, with expires_at at the end of its grace period")


class AdminKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName = ""
    expires_at: Timestamp | None = None


class AdminKeyCreated(ApiKeyView):
    api_key: str = Field(description="The secret; shown only in this response")


class TenantPatch(BaseModel):
    """Only the fields present change. `rate_limit: null` returns to the default limit, `max_key_lifetime_s: null`
    removes the maximum; `ip_allowlist: []` admits every address."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")] | None = None
    rate_limit: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="limits notation, e.g. '100/minute;10/second'"
    )
    ip_allowlist: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, max_length=256, description="CIDRs; the whole list is replaced"
    )
    force_allowlist: StrictBool = Field(default=False, description="Store ranges of any width, /0 included")
    disabled: StrictBool | None = Field(
        default=None, description="A disabled tenant's keys, tokens and Kafka intake are refused"
    )
    max_key_lifetime_s: int | None = Field(default=None, ge=MIN_KEY_LIFETIME_S, le=MAX_KEY_LIFETIME_S)
    quotas: QuotasIn | None = Field(default=None, description="The tenant's own quotas, replaced as a whole")

    @field_validator("rate_limit")
    @classmethod
    def _valid_limit(cls, value: str | None) -> str | None:
        return validate_limit(value) if value else None

    @model_validator(mode="after")
    def _null_only_where_meaningful(self) -> TenantPatch:
        for name in ("name", "ip_allowlist", "disabled", "quotas"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


def key_view(record: ApiKeyRecord) -> dict[str, Any]:
    """The fields of an `ApiKeyView` (also the base of the bodies that add a secret)."""
    return {
        "key_id": record.key_id,
        "tenant_id": record.tenant_id,
        "name": record.name,
        "key_prefix": record.key_prefix,
        "scopes": list(record.scopes),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
        "replaced_by": record.replaced_by,
        "rotated_at": record.rotated_at,
    }

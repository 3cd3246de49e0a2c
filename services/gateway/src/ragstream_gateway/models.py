"""HTTP request and response bodies of the documents, admin and health APIs.

Every string and collection a client sends is bounded here, in the types, so the bounds are in the OpenAPI
document and a violation is a 422 problem before any handler runs. Strings that reach Postgres exclude NUL,
which its text and jsonb types cannot hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    StrictBool,
    StringConstraints,
    field_validator,
)
from ragstream_common.formats import TEXT_HTML, TEXT_MARKDOWN, TEXT_PLAIN

from ragstream_gateway.allowlists import MAX_ALLOWLIST_ENTRIES
from ragstream_gateway.ports import DocumentStatus
from ragstream_gateway.ratelimit import validate_limit

DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
TENANT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
NO_NUL_PATTERN = r"^[^\x00]*$"
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 4096


def _timestamp_text_only(value: object) -> object:
    """JSON has no timestamp type: a number would be read as Unix seconds (`0` = 1970), so only RFC 3339 text."""
    if value is not None and not isinstance(value, (str, datetime)):
        raise ValueError("a timestamp must be an RFC 3339 string, e.g. 2027-01-31T00:00:00Z")
    return value


def _network_text_only(value: object) -> object:
    """An allowlist entry is CIDR text: pydantic would also read `false` or `0` as the address 0.0.0.0."""
    if not isinstance(value, str):
        raise ValueError("a network must be a string such as 203.0.113.0/24")
    return value


Network = Annotated[IPvAnyNetwork, BeforeValidator(_network_text_only)]
# Timestamps clients send (key expiry): RFC 3339 strings only.
Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text_only)]
DocumentId = Annotated[str, StringConstraints(pattern=DOCUMENT_ID_PATTERN)]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
Title = Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL_PATTERN)]
Name = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL_PATTERN)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS, pattern=NO_NUL_PATTERN)]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS, pattern=NO_NUL_PATTERN)]
# Documents' metadata, and the metadata a query filters on (equal values, so the same bounds).
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=MAX_METADATA_ENTRIES,
        description=f"String keys (1-{MAX_METADATA_KEY_CHARS} chars) and values (up to {MAX_METADATA_VALUE_CHARS})",
    ),
]
RateLimit = Annotated[str, StringConstraints(max_length=256)]
Scope = Literal["documents:write", "documents:read", "query", "connectors:admin"]


class DocumentFields(BaseModel):
    """What a client may say about a document besides its content (also the multipart form fields)."""

    model_config = ConfigDict(extra="forbid")

    id: DocumentId | None = Field(default=None, description="Client-chosen id; a new uuid4 hex when absent")
    title: Title = ""
    metadata: Metadata = Field(default_factory=dict)


class DocumentTextIn(DocumentFields):
    """JSON upload of a text document."""

    text: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = Field(
        default="text/plain", description=f"One of {TEXT_PLAIN}, {TEXT_MARKDOWN}, {TEXT_HTML}"
    )


class DocumentAccepted(BaseModel):
    document_id: str
    version: int
    status: DocumentStatus
    unchanged: bool = Field(
        default=False, description="True when the content, title and metadata equal the current version (200)"
    )


class DocumentError(BaseModel):
    stage: str
    message: str


class DocumentView(BaseModel):
    document_id: str
    version: int
    status: DocumentStatus
    title: str
    metadata: dict[str, str]
    content_type: str
    content_sha256: str
    size_bytes: int
    chunk_count: int
    error: DocumentError | None = None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None = None
    deleted_at: datetime | None = None


class DocumentPage(BaseModel):
    items: list[DocumentView]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null at the end")


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: TenantId
    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL_PATTERN)]
    rate_limit: RateLimit | None = Field(default=None, description="limits notation, e.g. '100/minute;10/second'")
    ip_allowlist: list[Network] = Field(
        default_factory=list,
        max_length=MAX_ALLOWLIST_ENTRIES,
        description="CIDRs; empty admits any address. /0 and ranges wider than the configured minimum prefix "
        "(GATEWAY_ALLOWLIST_MIN_PREFIX_V4/_V6, /8 and /32 by default) are refused unless force_allowlist is true",
    )
    force_allowlist: StrictBool = Field(default=False, description="Store ranges of any width, /0 included")

    @field_validator("rate_limit")
    @classmethod
    def _valid_limit(cls, value: str | None) -> str | None:
        return validate_limit(value) if value else None

    @field_validator("tenant_id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("_"):
            raise ValueError("tenant ids starting with '_' are reserved for the platform")
        return value


class TenantView(BaseModel):
    tenant_id: str
    name: str
    rate_limit: str | None
    ip_allowlist: list[str]
    created_at: datetime
    disabled: bool = Field(default=False, description="Its keys, tokens and Kafka intake are refused")
    max_key_lifetime_s: int | None = Field(default=None, description="New and rotated keys expire within this")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    scopes: list[Scope] = Field(default_factory=lambda: list(get_args(Scope)), min_length=1, max_length=16)
    expires_at: Timestamp | None = None


class ApiKeyCreated(BaseModel):
    key_id: str
    tenant_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    api_key: str = Field(description="The secret; shown only in this response")


class AuditEntryView(BaseModel):
    audit_id: int
    actor: str
    action: str
    resource: str
    client_ip: str
    details: dict[str, object]
    at: datetime
    outcome: str = Field(default="", description="success, denied (401/403), refused (other 4xx) or error (5xx)")
    trace_id: str = Field(default="", description="OpenTelemetry trace id of the request")
    seq: int = Field(default=0, description="Position in the tenant's hash chain (1, 2, 3...)")


class AuditPage(BaseModel):
    items: list[AuditEntryView]
    next_before: int | None = Field(default=None, description="Pass as `before` for older entries")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]

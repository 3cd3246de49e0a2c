"""HTTP request and response bodies of the documents, admin and health APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, StringConstraints, field_validator
from ragstream_common.formats import TEXT_HTML, TEXT_MARKDOWN, TEXT_PLAIN

from ragstream_gateway.ports import DocumentStatus
from ragstream_gateway.ratelimit import validate_limit

DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
TENANT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_METADATA_ENTRIES = 64

DocumentId = Annotated[str, StringConstraints(pattern=DOCUMENT_ID_PATTERN)]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
Title = Annotated[str, StringConstraints(max_length=1024)]
Scope = Literal["documents:write", "documents:read", "query"]


class DocumentFields(BaseModel):
    """What a client may say about a document besides its content (also the multipart form fields)."""

    model_config = ConfigDict(extra="forbid")

    id: DocumentId | None = Field(default=None, description="Client-chosen id; a new uuid4 hex when absent")
    title: Title = ""
    metadata: dict[str, str] = Field(default_factory=dict, description="String keys and values")

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_ENTRIES:
            raise ValueError(f"at most {MAX_METADATA_ENTRIES} metadata entries")
        for key, item in value.items():
            if not 1 <= len(key) <= 128:
                raise ValueError("metadata keys must be 1 to 128 characters")
            if len(item) > 4096:
                raise ValueError(f"metadata value of {key!r} is longer than 4096 characters")
        return value


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
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    rate_limit: str | None = Field(default=None, description="limits notation, e.g. '100/minute;10/second'")
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, description="CIDRs; empty admits any address")

    @field_validator("rate_limit")
    @classmethod
    def _valid_limit(cls, value: str | None) -> str | None:
        return validate_limit(value) if value else None


class TenantView(BaseModel):
    tenant_id: str
    name: str
    rate_limit: str | None
    ip_allowlist: list[str]
    created_at: datetime


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(max_length=256)] = ""
    scopes: list[Scope] = Field(default_factory=lambda: list(get_args(Scope)), min_length=1)
    expires_at: datetime | None = None


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


class AuditPage(BaseModel):
    items: list[AuditEntryView]
    next_before: int | None = Field(default=None, description="Pass as `before` for older entries")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]

"""What the gateway's handlers need from the outside world, and the records they exchange."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

# Re-exported (the `as` form): the blob store is one of the gateway's ports, shared with ingest.
from ragstream_common.blobs import Blob as Blob
from ragstream_common.blobs import BlobStore as BlobStore

from ragstream_gateway.security import IPNetwork

# Lifecycle of a document version: received -> processing -> indexed | failed; deleted is final.
DocumentStatus = Literal["received", "processing", "indexed", "failed", "deleted"]


@dataclass(frozen=True)
class DocumentRecord:
    """One row of the document registry: the current version of a document and its status."""

    tenant_id: str
    document_id: str
    version: int
    status: DocumentStatus
    title: str
    metadata: dict[str, str]
    content_type: str
    content_sha256: str
    size_bytes: int
    source_uri: str
    chunk_count: int
    error_stage: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None
    deleted_at: datetime | None
    # The highest version whose event the gateway saw acknowledged (0: none, or registered from Kafka).
    published_version: int = 0


@dataclass(frozen=True)
class DocumentVersion:
    """The content-describing fields of a version being registered."""

    tenant_id: str
    document_id: str
    title: str
    metadata: Mapping[str, str]
    content_type: str
    content_sha256: str
    size_bytes: int
    source_uri: str


@dataclass(frozen=True)
class Registration:
    version: int
    status: DocumentStatus
    # The version this one replaces while it is still live (not deleted); None for new documents.
    previous_version: int | None = None
    # True when the submission equals the current version: nothing was registered or published.
    unchanged: bool = False


@dataclass(frozen=True)
class StatusChange:
    tenant_id: str
    document_id: str
    version: int
    status: DocumentStatus
    chunk_count: int | None = None
    error_stage: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class DocumentListing:
    items: list[DocumentRecord]
    next_cursor: str | None


class DocumentRegistry(Protocol):
    async def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None: ...

    async def list(
        self, tenant_id: str, *, limit: int, cursor: str | None, status: DocumentStatus | None
    ) -> DocumentListing:
        """Newest first; raises ValueError for a cursor it did not issue."""
        ...

    async def register(self, version: DocumentVersion) -> Registration:
        """Store the next version (1 for new documents) unless it equals the current one."""
        ...

    async def mark_publish_failed(self, tenant_id: str, document_id: str, version: int, error: str) -> None: ...

    async def mark_published(self, tenant_id: str, document_id: str, version: int) -> None:
        """Record that Kafka acknowledged this version's event."""
        ...

    async def mark_deleted(self, tenant_id: str, document_id: str, version: int) -> None: ...

    async def register_external(self, version: DocumentVersion, number: int) -> bool:
        """Record a version published to Kafka by someone else; False when the registry already knows it."""
        ...

    async def apply_status(self, change: StatusChange) -> bool:
        """Apply a pipeline status unless it is older than what the registry holds; True when applied."""
        ...


@dataclass(frozen=True)
class AuditEntry:
    tenant_id: str
    actor: str
    action: str
    resource: str = ""
    client_ip: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    audit_id: int
    actor: str
    action: str
    resource: str
    client_ip: str
    details: dict[str, Any]
    at: datetime


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]: ...


@dataclass(frozen=True)
class KeyGrant:
    """What an API key admits: its tenant, scopes, and the tenant's limits."""

    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    revoked: bool
    expires_at: datetime | None
    rate_limit: str | None
    ip_allowlist: tuple[IPNetwork, ...]

    @property
    def expired(self) -> bool:
        # Computed at each use, so a grant held in a cache still expires on time.
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    name: str
    rate_limit: str | None
    ip_allowlist: tuple[IPNetwork, ...]
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None


class TenantDirectory(Protocol):
    async def find_key(self, key_sha256: str) -> KeyGrant | None: ...

    async def create_tenant(
        self, tenant_id: str, name: str, rate_limit: str | None, ip_allowlist: Sequence[IPNetwork]
    ) -> TenantRecord | None:
        """None when the tenant already exists."""
        ...

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    async def create_key(
        self, tenant_id: str, key: str, name: str, scopes: Sequence[str], expires_at: datetime | None
    ) -> ApiKeyRecord: ...

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool: ...

    async def revoke_all_keys(self, tenant_id: str) -> int:
        """Revoke every active key of the tenant; how many were active."""
        ...


class ReadinessProbe(Protocol):
    async def checks(self) -> dict[str, bool]: ...

"""What the gateway's handlers need from the outside world, and the records they exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

# Re-exported (the `as` form): the blob store is one of the gateway's ports, shared with ingest.
from ragstream_common.blobs import Blob as Blob
from ragstream_common.blobs import BlobStore as BlobStore
from ragstream_common.tracing import trace_id_hex

from ragstream_gateway.audit_chain import AuditChainSource
from ragstream_gateway.security import IPNetwork

T = TypeVar("T")

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
    # success | denied (401, 403) | refused (other 4xx) | error (5xx): what became of the call.
    outcome: str = "success"
    # The OpenTelemetry trace the entry was made in ("" without one), to find the request's spans and logs.
    trace_id: str = field(default_factory=trace_id_hex)

    def __post_init__(self) -> None:
        # Postgres text and jsonb cannot hold NUL: a hostile path or field must not make its own audit row fail.
        for name in ("tenant_id", "actor", "action", "resource", "client_ip", "outcome", "trace_id"):
            object.__setattr__(self, name, _without_nul(getattr(self, name)))
        object.__setattr__(self, "details", _without_nul(dict(self.details)))


@dataclass(frozen=True)
class AuditRecord:
    audit_id: int
    actor: str
    action: str
    resource: str
    client_ip: str
    details: dict[str, Any]
    at: datetime
    outcome: str = ""
    trace_id: str = ""
    # The entry's place in its tenant's hash chain (audit_chain.py).
    seq: int = 0


# An audit entry made from what a write produced (the new key's id...), appended in the write's transaction.
AuditFor = Callable[[T], AuditEntry]


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> list[AuditRecord]: ...


class AuditStore(AuditChainSource, Protocol):
    """The audit log's hash chain (verification) and a tenant's audit options."""

    async def question_text(self, tenant_id: str) -> bool:
        """Whether the tenant opted in to question text in its audit log (else only its hash is kept)."""
        ...

    async def set_question_text(self, tenant_id: str, enabled: bool, entry: AuditEntry) -> bool:
        """Change the opt-in and append `entry` in one transaction; False when there is no such tenant."""
        ...


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
    tenant_disabled: bool = False
    # The key that replaced this one (rotation); it keeps working until `expires_at`, the end of its grace.
    replaced_by: str | None = None

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
    disabled: bool = False
    # New and rotated keys expire at most this long after they are issued; None: no maximum.
    max_key_lifetime_s: int | None = None
    # DELETE /v1/admin/tenants/{id} happened: offboarded for good, only the retention job changes it further.
    deleted: bool = False


@dataclass(frozen=True)
class TenantListing:
    """One page of tenants, by tenant_id; `next_cursor` None on the last page."""

    items: list[TenantRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class TenantUpdate:
    """What a PATCH changes: a None field stays as it is; `reset` names nullable fields set back to null
    (rate_limit: the default limit again; max_key_lifetime_s: no maximum)."""

    name: str | None = None
    rate_limit: str | None = None
    ip_allowlist: tuple[IPNetwork, ...] | None = None
    disabled: bool | None = None
    max_key_lifetime_s: int | None = None
    reset: frozenset[Literal["rate_limit", "max_key_lifetime_s"]] = frozenset()
    # DELETE /v1/admin/tenants/{id} only (never a PATCH): marks the tenant for the retention job (purge.py).
    deleted: bool = False


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    key_prefix: str = ""
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None
    rotated_at: datetime | None = None


@dataclass(frozen=True)
class ApiKeyListing:
    items: list[ApiKeyRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class RotatedKey:
    """A rotation: the new key, and the old one, which now expires at the end of its grace period."""

    new: ApiKeyRecord
    old: ApiKeyRecord


class KeyAlreadyRotated(Exception):
    """The key was rotated before; rotate its successor instead."""


class KeyUsage(Protocol):
    """Records that a key was used (the store's last_used_at), cheaply: not a write per request."""

    def note(self, key_id: str) -> None: ...


class TenantDirectory(Protocol):
    async def find_key(self, key_sha256: str) -> KeyGrant | None: ...

    # `audit`: the change's audit entry (made from what was written), appended in the change's own transaction,
    # so neither commits without the other.
    async def create_tenant(
        self,
        tenant_id: str,
        name: str,
        rate_limit: str | None,
        ip_allowlist: Sequence[IPNetwork],
        *,
        audit: AuditFor[TenantRecord] | None = None,
    ) -> TenantRecord | None:
        """None when the tenant already exists."""
        ...

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    async def list_tenants(self, *, limit: int, cursor: str | None, include_deleted: bool) -> TenantListing:
        """Every tenant but the reserved `_platform`, by tenant_id; deleted (offboarded) ones only when
        `include_deleted`. Raises ValueError for a cursor it did not issue."""
        ...

    async def create_key(
        self,
        tenant_id: str,
        key: str,
        name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
        *,
        audit: AuditFor[ApiKeyRecord] | None = None,
    ) -> ApiKeyRecord: ...

    async def revoke_key(self, tenant_id: str, key_id: str, *, audit: AuditEntry | None = None) -> bool:
        """False (and nothing audited) when there is no such active key."""
        ...

    async def revoke_all_keys(self, tenant_id: str, *, audit: AuditFor[int] | None = None) -> int:
        """Revoke every active key of the tenant; how many were active."""
        ...

    async def update_tenant(
        self, tenant_id: str, update: TenantUpdate, *, audit: AuditFor[TenantRecord] | None = None
    ) -> TenantRecord | None:
        """None (and nothing audited) when there is no such tenant."""
        ...

    async def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> ApiKeyListing:
        """Newest first, secrets never included; raises ValueError for a cursor it did not issue."""
        ...

    async def rotate_key(
        self,
        tenant_id: str,
        key_id: str,
        key: str,
        grace_s: int,
        expires_at: datetime | None,
        *,
        audit: AuditFor[RotatedKey] | None = None,
    ) -> RotatedKey | None:
        """Issue `key` in place of the active key `key_id`, which keeps working for `grace_s` seconds; None when
        no such active key exists, KeyAlreadyRotated when it has a successor already. The new key expires at
        `expires_at`, else after the old key's lifetime, capped by the tenant's maximum."""
        ...

    async def tenant_disabled(self, tenant_id: str) -> bool: ...


@dataclass(frozen=True)
class TenantQuotas:
    """A tenant's quotas (quotas.py). As a tenant's overrides, None means the gateway's default
    (GATEWAY_QUOTA_*); as the quotas in force, None means no limit."""

    max_documents: int | None = None
    max_stored_bytes: int | None = None
    max_questions_per_day: int | None = None


@dataclass(frozen=True)
class StoredUsage:
    """Live (not deleted) documents of a tenant and the bytes of their current versions."""

    documents: int
    stored_bytes: int


class QuotaStore(Protocol):
    async def overrides(self, tenant_id: str) -> TenantQuotas:
        """The tenant's own quotas; all None when it has none."""
        ...

    async def set_overrides(self, tenant_id: str, quotas: TenantQuotas) -> TenantQuotas:
        """Replace the tenant's overrides; raises LookupError when there is no such tenant."""
        ...

    async def usage(self, tenant_id: str) -> StoredUsage: ...


class ReadinessProbe(Protocol):
    async def checks(self) -> dict[str, bool]: ...


def _without_nul(value: Any) -> Any:
    """`value` with every NUL character in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nul(v) for v in value]
    return value

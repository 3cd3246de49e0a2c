"""The document registry as uploads through the HTTP API see it: quota-checked registration.

`register` takes the tenant's upload lock (quotas.py), counts what the tenant has, and registers the version only
if it fits, all while holding the lock: two uploads that each fit alone cannot both pass when together they do
not, on one replica or many. An upload equal to the current version registers nothing and is never refused.
Everything else passes straight through; the Kafka projections use the plain registry (their documents were
already published by someone else).
"""

from __future__ import annotations

from ragstream_gateway.documents import Submission, is_unchanged
from ragstream_gateway.ports import (
    DocumentListing,
    DocumentRecord,
    DocumentRegistry,
    DocumentStatus,
    DocumentVersion,
    Registration,
    StatusChange,
)
from ragstream_gateway.quotas import QuotaEnforcer


class QuotaEnforcingRegistry:
    def __init__(self, registry: DocumentRegistry, quotas: QuotaEnforcer) -> None:
        self._registry = registry
        self._quotas = quotas

    async def register(self, version: DocumentVersion) -> Registration:
        tenant_id = version.tenant_id
        if not self._quotas.limits_uploads(await self._quotas.effective(tenant_id)):
            return await self._registry.register(version)
        async with self._quotas.upload_lock(tenant_id):
            current = await self._registry.get(tenant_id, version.document_id)
            unchanged = current is not None and is_unchanged(
                current, version.content_sha256, version.title, version.metadata
            )
            if not unchanged:
                await self._quotas.check_upload(tenant_id, current, version.size_bytes)
            return await self._registry.register(version)

    async def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        return await self._registry.get(tenant_id, document_id)

    async def list(
        self, tenant_id: str, *, limit: int, cursor: str | None, status: DocumentStatus | None
    ) -> DocumentListing:
        return await self._registry.list(tenant_id, limit=limit, cursor=cursor, status=status)

    async def mark_publish_failed(self, tenant_id: str, document_id: str, version: int, error: str) -> None:
        await self._registry.mark_publish_failed(tenant_id, document_id, version, error)

    async def mark_published(self, tenant_id: str, document_id: str, version: int) -> None:
        await self._registry.mark_published(tenant_id, document_id, version)

    async def mark_deleted(self, tenant_id: str, document_id: str, version: int) -> None:
        await self._registry.mark_deleted(tenant_id, document_id, version)

    async def register_external(self, version: DocumentVersion, number: int) -> bool:
        return await self._registry.register_external(version, number)

    async def apply_status(self, change: StatusChange) -> bool:
        return await self._registry.apply_status(change)


async def precheck_upload(quotas: QuotaEnforcer, registry: DocumentRegistry, submission: Submission) -> None:
    """Before the content is stored: refuse an upload that cannot fit, so a refused one leaves no blob behind.
    An identical re-upload adds nothing (same live document, same size) and passes without hashing here."""
    tenant_id = submission.tenant_id
    if not quotas.limits_uploads(await quotas.effective(tenant_id)):
        return
    current = await registry.get(tenant_id, submission.document_id) if submission.document_id else None
    await quotas.check_upload(tenant_id, current, len(submission.content))

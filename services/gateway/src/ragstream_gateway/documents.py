"""Document intake: register a version, hand the content to the pipeline, answer only once Kafka has it.

Order of a submission, and why:
1. Content goes to the blob store first, under a content-addressed key (`<document_id>/<sha256>`), so a
   retry writes the same blob and nothing in the registry ever points at content that is not stored.
2. The registry row is written next (new version, status `received`): the version number comes from it.
3. The event is published and acknowledged (acks=all) before the client hears 202.
If publishing fails the client gets 503 and the row is marked `failed` at stage `publish`: the version is
visibly not in the pipeline and a retry of the same request registers and publishes the next version. If the
event did reach Kafka after all (a timeout after the broker's write), the pipeline's status events move the
row on from `failed` (see the registry adapter), so the failure mark cannot hide a version being indexed.

After Kafka acknowledged the event the row records the version as published. An identical re-upload of a
version still `received` and not recorded as published publishes that version's event again (202): the gateway
may have died between registering and publishing it, and the client's retry is what heals that. The consumers'
writes are idempotent per version, so an event published twice changes nothing.

Deletes publish first and mark the row afterwards: a failed publish leaves the document untouched (503,
retry), and a row that could not be marked is healed by the registry consumer reading our own
DocumentDeleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from rag.v1 import documents_pb2, usage_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp
from ragstream_common.usage_records import usage_record

from ragstream_gateway.ports import (
    AuditEntry,
    AuditLog,
    BlobStore,
    DocumentRecord,
    DocumentRegistry,
    DocumentVersion,
    Registration,
)

log = get_logger(__name__)


class PublishFailed(Exception):
    """Kafka did not acknowledge the event; the client must retry."""


class DocumentNotFound(Exception):
    pass


@dataclass(frozen=True)
class Submission:
    tenant_id: str
    document_id: str | None
    title: str
    metadata: Mapping[str, str]
    content: bytes
    content_type: str
    filename: str = ""
    # JSON uploads are text: small ones travel inline in the event instead of through the blob store.
    inline_allowed: bool = False


@dataclass(frozen=True)
class Caller:
    actor: str
    client_ip: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


def new_document_id() -> str:
    return uuid.uuid4().hex


def blob_key(document_id: str, sha256: str) -> str:
    return f"{document_id}/{sha256}"


def is_unchanged(record: DocumentRecord, sha256: str, title: str, metadata: Mapping[str, str]) -> bool:
    """Same content, title and metadata as a live, published version."""
    return (
        record.status != "deleted"
        and record.error_stage != "publish"
        and record.content_sha256 == sha256
        and record.title == title
        and dict(record.metadata) == dict(metadata)
    )


class DocumentService:
    def __init__(
        self,
        registry: DocumentRegistry,
        blobs: BlobStore,
        sink: EventSink,
        audit: AuditLog,
        *,
        inline_text_max_bytes: int,
        publish_timeout_s: float,
    ) -> None:
        self._registry = registry
        self._blobs = blobs
        self._sink = sink
        self._audit = audit
        self._inline_max = inline_text_max_bytes
        self._publish_timeout_s = publish_timeout_s

    async def submit(self, submission: Submission, caller: Caller) -> tuple[str, Registration]:
        tenant_id = submission.tenant_id
        document_id = submission.document_id or new_document_id()
        sha256 = hashlib.sha256(submission.content).hexdigest()
        current = await self._registry.get(tenant_id, document_id)
        if current is not None and is_unchanged(current, sha256, submission.title, submission.metadata):
            if current.status != "received" or current.published_version >= current.version:
                return document_id, Registration(current.version, current.status, unchanged=True)
            # Registered but not known to be published (a gateway that died between the two): publish that version
            # again. Consumers are idempotent per version, so a second event for a version in flight is harmless.
            previous = current.version - 1 if current.version > 1 else None
            registration = Registration(current.version, "received", previous_version=previous)
            source = self._source(submission, sha256, inline=not current.source_uri, uri=current.source_uri)
            await self._publish_version(submission, document_id, registration, source, caller, "document.republish")
            return document_id, registration
        inline = submission.inline_allowed and len(submission.content) <= self._inline_max
        uri = (
            ""
            if inline
            else await self._blobs.put(
                tenant_id, blob_key(document_id, sha256), submission.content, submission.content_type
            )
        )
        registration = await self._registry.register(
            DocumentVersion(
                tenant_id,
                document_id,
                submission.title,
                dict(submission.metadata),
                submission.content_type,
                sha256,
                len(submission.content),
                uri,
            )
        )
        if registration.unchanged:
            return document_id, registration
        action = "document.create" if registration.previous_version is None else "document.update"
        source = self._source(submission, sha256, inline=inline, uri=uri)
        await self._publish_version(submission, document_id, registration, source, caller, action)
        return document_id, registration

    @staticmethod
    def _source(submission: Submission, sha256: str, *, inline: bool, uri: str) -> documents_pb2.DocumentSource:
        source = documents_pb2.DocumentSource(
            content_type=submission.content_type,
            filename=submission.filename,
            size_bytes=len(submission.content),
            sha256=sha256,
        )
        if inline:
            source.text = submission.content.decode("utf-8")
        else:
            source.uri = uri
        return source

    async def _publish_version(
        self,
        submission: Submission,
        document_id: str,
        registration: Registration,
        source: documents_pb2.DocumentSource,
        caller: Caller,
        action: str,
    ) -> None:
        """Publish the version's event (PublishFailed marks the version and is raised), then audit `action`."""
        tenant_id, version = submission.tenant_id, registration.version
        event = _version_event(tenant_id, document_id, submission, registration, source)
        try:
            await self._publish(event, ingested_usage(event))
        except PublishFailed as exc:
            await self._registry.mark_publish_failed(tenant_id, document_id, version, str(exc))
            await self._record(
                tenant_id, caller, "document.publish_failed", document_id, version=version, error=str(exc)
            )
            raise
        try:
            await self._registry.mark_published(tenant_id, document_id, version)
        except Exception as exc:  # accepted all the same: at worst an identical retry publishes it once more
            log.warning("could not mark the version published", document_id=document_id, error=repr(exc))
        await self._record(
            tenant_id,
            caller,
            action,
            document_id,
            version=version,
            sha256=source.sha256,
            size_bytes=source.size_bytes,
            content_type=submission.content_type,
        )

    async def delete(self, tenant_id: str, document_id: str, caller: Caller) -> DocumentRecord:
        current = await self._registry.get(tenant_id, document_id)
        if current is None:
            raise DocumentNotFound(document_id)
        if current.status == "deleted":
            return current  # DELETE is idempotent; the first one already went out
        event = documents_pb2.DocumentDeleted(
            tenant_id=tenant_id, document_id=document_id, version=current.version, occurred_at=now_timestamp()
        )
        await self._publish(event)
        await self._registry.mark_deleted(tenant_id, document_id, current.version)
        await self._record(tenant_id, caller, "document.delete", document_id, version=current.version)
        return current

    async def _publish(
        self,
        message: documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated | documents_pb2.DocumentDeleted,
        *usage: usage_pb2.UsageRecorded,
    ) -> None:
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._sink.emit([Emitted(message), *(Emitted(record) for record in usage)])
        except Exception as exc:
            log.error(
                "publish failed",
                tenant_id=message.tenant_id,
                document_id=message.document_id,
                version=message.version,
                error=repr(exc),
            )
            # The cause stays in the log above: this message reaches clients (the 503, the version's error).
            raise PublishFailed("the document's event could not be published") from exc

    async def _record(self, tenant_id: str, caller: Caller, action: str, resource: str, **details: object) -> None:
        entry = AuditEntry(tenant_id, caller.actor, action, resource, caller.client_ip, {**caller.details, **details})
        try:
            await self._audit.record(entry)
        except Exception as exc:
            # The document operation already happened; a lost audit row must not turn it into an error.
            log.error("audit write failed", action=action, resource=resource, error=repr(exc))


def ingested_usage(event: documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated) -> usage_pb2.UsageRecorded:
    """The document version taken in, for metering: counted once per version, with its size."""
    return usage_record(
        event.tenant_id,
        f"{event.tenant_id}/{event.document_id}/{event.version}:document",
        "gateway",
        occurred_at=event.occurred_at,
        documents_ingested=1,
        bytes_ingested=event.source.size_bytes,
    )


def _version_event(
    tenant_id: str,
    document_id: str,
    submission: Submission,
    registration: Registration,
    source: documents_pb2.DocumentSource,
) -> documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated:
    event: documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated
    if registration.previous_version is None:
        event = documents_pb2.DocumentReceived()
    else:
        event = documents_pb2.DocumentUpdated(previous_version=registration.previous_version)
    event.tenant_id, event.document_id, event.version = tenant_id, document_id, registration.version
    event.title = submission.title
    event.source.CopyFrom(source)
    event.occurred_at.CopyFrom(now_timestamp())
    event.metadata.update(submission.metadata)
    return event

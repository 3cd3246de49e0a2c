"""Kafka projections into the document registry.

- Status projector (group ragstream-gateway-status, rag.documents.status.v1): DocumentProcessing, Indexed,
  Failed and Removed move a document's status; the registry ignores versions older than its own.
- Registry projector (group ragstream-gateway-registry, rag.documents.received.v1): documents that other
  producers published straight to Kafka get a registry row; the gateway's own events find their version
  already registered and change nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial
from typing import Any

from rag.v1 import documents_pb2, status_pb2
from ragstream_common.events import Envelope
from ragstream_common.logs import get_logger

from ragstream_gateway.ports import DocumentRegistry, DocumentVersion, StatusChange

log = get_logger(__name__)


_STATUS_EVENTS = (
    status_pb2.DocumentProcessing,
    status_pb2.DocumentIndexed,
    status_pb2.DocumentFailed,
    status_pb2.DocumentRemoved,
    documents_pb2.DocumentDeleted,
)


def status_change(message: Any) -> StatusChange | None:
    """The registry change a status (or delete) event asks for; None for anything else."""
    if not isinstance(message, _STATUS_EVENTS):
        return None
    change = partial(StatusChange, message.tenant_id, message.document_id, message.version)
    if isinstance(message, status_pb2.DocumentProcessing):
        return change("processing")
    if isinstance(message, status_pb2.DocumentIndexed):
        return change("indexed", chunk_count=message.chunk_count)
    if isinstance(message, status_pb2.DocumentFailed):
        reason = f"{message.error_class}: {message.reason}" if message.error_class else message.reason
        return change("failed", error_stage=message.stage or "unknown", error=reason)
    return change("deleted")


def _valid(change: StatusChange) -> bool:
    return bool(change.tenant_id and change.document_id and change.version >= 1)


async def project_status(batch: Sequence[Envelope[Any]], registry: DocumentRegistry) -> None:
    for envelope in batch:
        change = status_change(envelope.message)
        if change is None or not _valid(change):
            log.warning("status event ignored", event_type=envelope.event_type, key=envelope.key)
            continue
        await registry.apply_status(change)


def external_version(message: documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated) -> DocumentVersion:
    source = message.source
    which = source.WhichOneof("content")
    text = source.text.encode("utf-8") if which == "text" else b""
    sha256 = source.sha256 or (hashlib.sha256(text).hexdigest() if which == "text" else "")
    return DocumentVersion(
        tenant_id=message.tenant_id,
        document_id=message.document_id,
        title=message.title,
        metadata=dict(message.metadata),
        content_type=source.content_type,
        content_sha256=sha256,
        size_bytes=source.size_bytes or len(text),
        source_uri=source.uri if which == "uri" else "",
    )


async def project_registrations(batch: Sequence[Envelope[Any]], registry: DocumentRegistry) -> None:
    for envelope in batch:
        message = envelope.message
        if isinstance(message, documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated):
            if message.tenant_id and message.document_id and message.version >= 1:
                await registry.register_external(external_version(message), message.version)
                continue
        elif isinstance(message, documents_pb2.DocumentDeleted):
            change = status_change(message)
            if change is not None and _valid(change):
                await registry.apply_status(change)
                continue
        log.warning("document event ignored", event_type=envelope.event_type, key=envelope.key)

"""Ingest handlers: a received document becomes token-aware chunks (ChunksReady), or DocumentFailed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeAlias

from rag.v1 import chunks_pb2, documents_pb2, status_pb2
from ragstream_common.blobs import BlobNotFound
from ragstream_common.events import Emitted, Envelope, EventSink, PermanentError
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp

from ragstream_ingest.chunker import Chunker, chunk_id
from ragstream_ingest.extract import ExtractedDocument, ExtractionError, extract_document
from ragstream_ingest.fetch import FetchError
from ragstream_ingest.metrics import CHUNKS, DOCUMENTS
from ragstream_ingest.ports import ContentSource, RawContent

log = get_logger(__name__)
DocumentEvent: TypeAlias = documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated
IngestEvent: TypeAlias = DocumentEvent | documents_pb2.DocumentDeleted


class DocumentRejected(Exception):
    """The document itself is bad (unfetchable, unparseable, empty): it ends as DocumentFailed."""

    def __init__(self, stage: str, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.error_class, self.reason = stage, error_class, reason


async def ingest_batch(
    batch: Sequence[Envelope[IngestEvent]], source: ContentSource, chunker: Chunker, sink: EventSink
) -> None:
    """Turn each event of the batch into its output events; emit them all, in order, in one go."""
    events: list[Emitted] = []
    for envelope in batch:
        message = envelope.message
        if isinstance(message, documents_pb2.DocumentDeleted):
            # Forwarded behind the document's earlier versions: the index deletes in order.
            events.append(Emitted(message, envelope.trace_context))
            continue
        events.extend(await _ingest_document(message, envelope, source, chunker))
    await sink.emit(events)


async def _ingest_document(
    document: DocumentEvent, envelope: Envelope[IngestEvent], source: ContentSource, chunker: Chunker
) -> list[Emitted]:
    _validate(document)
    try:
        raw = await _read_content(document, source)
        extracted = await asyncio.to_thread(_extract, raw, document.source.filename)
        ready = await asyncio.to_thread(_chunk, document, extracted, chunker)
    except DocumentRejected as rejected:
        DOCUMENTS.labels("failed").inc()
        log.info("document failed", document_id=document.document_id, reason=rejected.reason)
        failed = status_pb2.DocumentFailed(
            tenant_id=document.tenant_id,
            document_id=document.document_id,
            version=document.version,
            stage=rejected.stage,
            reason=rejected.reason,
            error_class=rejected.error_class,
            occurred_at=now_timestamp(),
        )
        return [Emitted(failed, envelope.trace_context)]
    DOCUMENTS.labels("chunked").inc()
    CHUNKS.inc(len(ready.chunks))
    processing = status_pb2.DocumentProcessing(
        tenant_id=document.tenant_id,
        document_id=document.document_id,
        version=document.version,
        stage="embed",
        occurred_at=now_timestamp(),
    )
    return [Emitted(processing, envelope.trace_context), Emitted(ready, envelope.trace_context)]


def _validate(document: DocumentEvent) -> None:
    problems: list[str] = []
    if not document.tenant_id:
        problems.append("tenant_id is required")
    if not document.document_id:
        problems.append("document_id is required")
    if document.version < 1:
        problems.append("version must be >= 1")
    if not document.source.WhichOneof("content"):
        problems.append("source.text or source.uri is required")
    if problems:
        raise PermanentError("; ".join(problems))


async def _read_content(document: DocumentEvent, source: ContentSource) -> RawContent:
    if document.source.WhichOneof("content") == "text":
        return RawContent(document.source.text.encode("utf-8"), document.source.content_type or "text/plain")
    try:
        raw = await source.read(document.tenant_id, document.source.uri)
    except FetchError as exc:
        raise DocumentRejected("fetch", exc.error_class, str(exc)) from exc
    except BlobNotFound as exc:
        raise DocumentRejected("fetch", "blob_not_found", f"blob {exc} not found") from exc
    except ValueError as exc:
        raise DocumentRejected("fetch", "bad_uri", str(exc)) from exc
    return RawContent(raw.data, document.source.content_type or raw.content_type)


def _extract(raw: RawContent, filename: str) -> ExtractedDocument:
    try:
        return extract_document(raw.data, raw.content_type or None, filename or None)
    except ExtractionError as exc:
        raise DocumentRejected("parse", exc.error_class, exc.reason) from exc


def _chunk(document: DocumentEvent, extracted: ExtractedDocument, chunker: Chunker) -> chunks_pb2.ChunksReady:
    ready = chunks_pb2.ChunksReady(
        tenant_id=document.tenant_id,
        document_id=document.document_id,
        version=document.version,
        title=document.title or extracted.title or document.source.filename,
        content_type=extracted.content_type,
        occurred_at=now_timestamp(),
    )
    ready.metadata.update(document.metadata)
    for piece in chunker.split(extracted.text):
        ready.chunks.append(
            chunks_pb2.Chunk(
                chunk_id=chunk_id(document.tenant_id, document.document_id, document.version, piece.position),
                position=piece.position,
                text=piece.text,
                content_sha256=piece.content_sha256,
                token_count=piece.token_count,
                char_start=piece.char_start,
                char_end=piece.char_end,
                heading=piece.heading or "",
            )
        )
    if not ready.chunks:
        raise DocumentRejected("chunk", "empty_document", "the document has no text to index")
    return ready

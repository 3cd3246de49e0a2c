"""Indexer handler: ChunksEmbedded and DocumentDeleted in, document status events out.

Each document version is written in one transaction (see PostgresChunkIndex); status events are emitted only
after the commits of the whole batch, and the consumer commits offsets only after that. A redelivered version
writes nothing but announces DocumentIndexed again, so a crash between commit and emit heals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from opentelemetry import context as otel_context
from opentelemetry import trace
from rag.v1 import chunks_pb2, documents_pb2, status_pb2
from ragstream_common.events import Emitted, Envelope, EventSink, PermanentError
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp

from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.metrics import DOCUMENTS
from ragstream_retrieve.models import UpsertOutcome
from ragstream_retrieve.ports import ChunkIndexWriter
from ragstream_retrieve.wire import InvalidDocument, document_from_event

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.retrieve")
INDEX_STAGE = "index"
# What rag.chunks.embedded.v1 carries (the consumer dead-letters anything else).
IndexEvent: TypeAlias = chunks_pb2.ChunksEmbedded | documents_pb2.DocumentDeleted
StatusEvent: TypeAlias = status_pb2.DocumentIndexed | status_pb2.DocumentFailed | status_pb2.DocumentRemoved


@dataclass
class Indexer:
    writer: ChunkIndexWriter
    sink: EventSink
    analyzer: LexicalAnalyzer
    # The size every primary vector must have; None: the index checks sizes per generation (the service).
    dimensions: int | None = 384
    # Documents of one batch written at the same time (each needs a pooled connection).
    concurrency: int = 4

    async def handle_batch(self, batch: Sequence[Envelope[IndexEvent]]) -> None:
        """Events of one document run in order; different documents run concurrently; one emit for the batch."""
        by_document: dict[str, list[Envelope[IndexEvent]]] = {}
        for envelope in batch:
            by_document.setdefault(envelope.key, []).append(envelope)
        limit = asyncio.Semaphore(self.concurrency)

        async def run(envelopes: list[Envelope[IndexEvent]]) -> list[Emitted]:
            async with limit:
                return [event for envelope in envelopes for event in await self.handle(envelope)]

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run(envelopes)) for envelopes in by_document.values()]
        except ExceptionGroup as failures:
            # The consumer judges the error itself (PermanentError -> DLQ, anything else -> retry one by one).
            raise failures.exceptions[0] from None
        await self.sink.emit([event for task in tasks for event in task.result()])

    async def handle(self, envelope: Envelope[IndexEvent]) -> list[Emitted]:
        """One event, traced as part of its document's trace; status events continue that trace."""
        message = envelope.message
        attributes: dict[str, str | int] = {
            "rag.tenant_id": message.tenant_id,
            "rag.document_id": message.document_id,
            "rag.version": message.version,
        }
        with tracer.start_as_current_span("retrieve index", context=envelope.trace_context, attributes=attributes):
            _require_ids(message.tenant_id, message.document_id)
            if isinstance(message, chunks_pb2.ChunksEmbedded):
                status = await self._index(message)
            else:
                status = await self._delete(message)
            # Captured inside this span (a child of the envelope's trace), though emitted after the batch.
            return [] if status is None else [Emitted(status, otel_context.get_current())]

    async def _index(self, event: chunks_pb2.ChunksEmbedded) -> StatusEvent | None:
        try:
            # Analysis is CPU work: keep it off the loop that also serves queries.
            document = await asyncio.to_thread(document_from_event, event, self.analyzer, self.dimensions)
            # The index checks each model's vectors against its generation's size (InvalidDocument too).
            outcome = await self.writer.upsert_document(document)
        except InvalidDocument as exc:
            DOCUMENTS.labels("failed").inc()
            log.warning(
                "cannot index document",
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                version=event.version,
                reason=str(exc),
            )
            return status_pb2.DocumentFailed(
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                version=event.version,
                stage=INDEX_STAGE,
                reason=str(exc),
                error_class=type(exc).__name__,
                occurred_at=now_timestamp(),
            )
        DOCUMENTS.labels(outcome.value).inc()
        if outcome in (UpsertOutcome.SUPERSEDED, UpsertOutcome.DELETED):
            log.info(
                "ignoring stale document version",
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                version=event.version,
                outcome=outcome.value,
            )
            return None
        return status_pb2.DocumentIndexed(
            tenant_id=event.tenant_id,
            document_id=event.document_id,
            version=event.version,
            chunk_count=len(document.chunks),
            model=event.model,
            occurred_at=now_timestamp(),
        )

    async def _delete(self, event: documents_pb2.DocumentDeleted) -> StatusEvent:
        await self.writer.delete_document(event.tenant_id, event.document_id, event.version)
        DOCUMENTS.labels("removed").inc()
        return status_pb2.DocumentRemoved(
            tenant_id=event.tenant_id,
            document_id=event.document_id,
            version=event.version,
            occurred_at=now_timestamp(),
        )


def _require_ids(tenant_id: str, document_id: str) -> None:
    if not tenant_id or not document_id:
        raise PermanentError("event without tenant_id or document_id")

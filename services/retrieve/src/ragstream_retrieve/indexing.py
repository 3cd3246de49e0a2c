"""Indexer handler: ChunksEmbedded and DocumentDeleted in, document status events out.

Each document version is written in one transaction (see PostgresChunkIndex); status events are published
only after the commits of the whole batch, and the consumer commits offsets only after that. A redelivered
version writes nothing but announces DocumentIndexed again, so a crash between commit and publish heals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from rag.v1 import chunks_pb2, documents_pb2, status_pb2
from ragstream_common.kafka import Envelope, OutgoingEvent, PermanentError
from ragstream_common.kafka.topics import DOCUMENTS_STATUS
from ragstream_common.logs import get_logger
from ragstream_common.messages import document_key, now_timestamp

from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import UpsertOutcome
from ragstream_retrieve.ports import ChunkIndexWriter, EventSink
from ragstream_retrieve.wire import InvalidDocument, document_from_event

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.retrieve")
INDEX_STAGE = "index"


@dataclass
class Indexer:
    writer: ChunkIndexWriter
    sink: EventSink
    analyzer: LexicalAnalyzer
    dimensions: int = 384
    # Documents of one batch written at the same time (each needs a pooled connection).
    concurrency: int = 4
    outcomes: dict[str, int] = field(default_factory=dict)

    async def handle_batch(self, batch: Sequence[Envelope[Any]]) -> None:
        """Events of one document run in order; different documents run concurrently."""
        by_document: dict[str, list[Envelope[Any]]] = {}
        for envelope in batch:
            by_document.setdefault(envelope.key, []).append(envelope)
        limit = asyncio.Semaphore(self.concurrency)

        async def run(envelopes: list[Envelope[Any]]) -> list[OutgoingEvent]:
            async with limit:
                return [event for envelope in envelopes for event in await self.handle(envelope)]

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run(envelopes)) for envelopes in by_document.values()]
        except ExceptionGroup as failures:
            # The consumer judges the error itself (PermanentError -> DLQ, anything else -> retry one by one).
            raise failures.exceptions[0] from None
        await self.sink.publish_many([event for task in tasks for event in task.result()])

    async def handle(self, envelope: Envelope[Any]) -> list[OutgoingEvent]:
        """One event, traced as part of its document's trace; status events continue that trace."""
        message = envelope.message
        if not isinstance(message, chunks_pb2.ChunksEmbedded | documents_pb2.DocumentDeleted):
            log.warning("ignoring unexpected event", event_type=envelope.event_type, topic=envelope.topic)
            return []
        attributes = {"rag.tenant_id": message.tenant_id, "rag.document_id": message.document_id,
                      "rag.version": message.version}
        with tracer.start_as_current_span("retrieve index", context=envelope.trace_context, attributes=attributes):
            if isinstance(message, chunks_pb2.ChunksEmbedded):
                return await self._index(message)
            return await self._delete(message)

    async def _index(self, event: chunks_pb2.ChunksEmbedded) -> list[OutgoingEvent]:
        _require_ids(event.tenant_id, event.document_id)
        try:
            # Analysis is CPU work: keep it off the loop that also serves queries.
            document = await asyncio.to_thread(document_from_event, event, self.analyzer, self.dimensions)
        except InvalidDocument as exc:
            self._count("failed")
            log.warning("cannot index document", tenant_id=event.tenant_id, document_id=event.document_id,
                        version=event.version, reason=str(exc))
            failed = status_pb2.DocumentFailed(
                tenant_id=event.tenant_id, document_id=event.document_id, version=event.version, stage=INDEX_STAGE,
                reason=str(exc), error_class=type(exc).__name__, occurred_at=now_timestamp(),
            )
            return [_status(failed)]
        outcome = await self.writer.upsert_document(document)
        self._count(outcome.value)
        if outcome in (UpsertOutcome.SUPERSEDED, UpsertOutcome.DELETED):
            log.info("ignoring stale document version", tenant_id=event.tenant_id, document_id=event.document_id,
                     version=event.version, outcome=outcome.value)
            return []
        indexed = status_pb2.DocumentIndexed(
            tenant_id=event.tenant_id, document_id=event.document_id, version=event.version,
            chunk_count=len(document.chunks), model=event.model, occurred_at=now_timestamp(),
        )
        return [_status(indexed)]

    async def _delete(self, event: documents_pb2.DocumentDeleted) -> list[OutgoingEvent]:
        _require_ids(event.tenant_id, event.document_id)
        await self.writer.delete_document(event.tenant_id, event.document_id, event.version)
        self._count("removed")
        removed = status_pb2.DocumentRemoved(
            tenant_id=event.tenant_id, document_id=event.document_id, version=event.version,
            occurred_at=now_timestamp(),
        )
        return [_status(removed)]

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def _require_ids(tenant_id: str, document_id: str) -> None:
    if not tenant_id or not document_id:
        raise PermanentError("event without tenant_id or document_id")


def _status(message: Any) -> OutgoingEvent:
    key = document_key(message.tenant_id, message.document_id)
    # Captured now, inside the document's span, though published after the batch.
    return OutgoingEvent(DOCUMENTS_STATUS.name, key, message, context=otel_context.get_current())

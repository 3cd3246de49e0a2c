"""Fakes of the retrieve handlers' ports: an index over a list of chunks, a writer that keeps the real version
rules, a recording ReplyService client, and a list publisher for routing the handlers' output."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from opentelemetry import trace
from rag.v1 import services_pb2
from ragstream_common.events import OutgoingEvent
from ragstream_retrieve.lexical import Bm25Parameters, LexicalAnalyzer
from ragstream_retrieve.models import (
    Candidate,
    DocumentVersion,
    IndexState,
    SearchFilters,
    StoredChunk,
    UpsertOutcome,
)

R = TypeVar("R", services_pb2.SourcesReply, services_pb2.QueryFailure)


@dataclass(frozen=True)
class DenseCall:
    tenant_id: str
    vector: np.ndarray
    filters: SearchFilters
    limit: int


@dataclass(frozen=True)
class LexicalCall:
    tenant_id: str
    term_weights: Mapping[str, float]
    filters: SearchFilters
    limit: int


@dataclass
class ListSearchIndex:
    """`SearchIndex` over (tenant, chunk) pairs: dense = cosine, lexical = sum of query weight x term frequency
    (the ranking contract, not BM25's numbers); records what it was asked. `fail_with` makes every call raise."""

    chunks: list[tuple[str, StoredChunk]] = field(default_factory=list)
    analyzer: LexicalAnalyzer = field(default_factory=LexicalAnalyzer)
    fail_with: Exception | None = None
    dense_calls: list[DenseCall] = field(default_factory=list)
    lexical_calls: list[LexicalCall] = field(default_factory=list)

    def _visible(self, tenant_id: str, filters: SearchFilters) -> list[StoredChunk]:
        if self.fail_with is not None:
            raise self.fail_with
        return [
            chunk
            for tenant, chunk in self.chunks
            if tenant == tenant_id
            and (not filters.document_ids or chunk.document_id in filters.document_ids)
            and all(chunk.metadata.get(k) == v for k, v in filters.metadata.items())
        ]

    async def dense_candidates(
        self, tenant_id: str, vector: np.ndarray, filters: SearchFilters, limit: int
    ) -> list[Candidate]:
        self.dense_calls.append(DenseCall(tenant_id, vector, filters, limit))
        scored = [Candidate(c.key, float(c.embedding @ vector)) for c in self._visible(tenant_id, filters)]
        return sorted(scored, key=lambda c: -c.score)[:limit]

    async def lexical_candidates(
        self,
        tenant_id: str,
        term_weights: Mapping[str, float],
        filters: SearchFilters,
        limit: int,
        bm25: Bm25Parameters,
    ) -> list[Candidate]:
        self.lexical_calls.append(LexicalCall(tenant_id, dict(term_weights), filters, limit))
        scored = []
        for chunk in self._visible(tenant_id, filters):
            frequencies = Counter(self.analyzer.terms(chunk.text))
            score = sum(weight * frequencies[term] for term, weight in term_weights.items())
            if score > 0:
                scored.append(Candidate(chunk.key, float(score)))
        return sorted(scored, key=lambda c: -c.score)[:limit]

    async def fetch_chunks(self, tenant_id: str, keys: Sequence[int]) -> dict[int, StoredChunk]:
        wanted = set(keys)
        return {c.key: c for c in self._visible(tenant_id, SearchFilters()) if c.key in wanted}


@dataclass
class VersionedChunkIndex:
    """`ChunkIndexWriter` in memory that decides with the real `IndexState` rules; `operations` records every
    call in order ("upsert d1 v2 indexed", "delete d1 v1"). `fail_with` makes the next call raise (once)."""

    states: dict[tuple[str, str], IndexState] = field(default_factory=dict)
    documents: dict[tuple[str, str], DocumentVersion] = field(default_factory=dict)
    operations: list[str] = field(default_factory=list)
    fail_with: Exception | None = None

    def _check_failure(self) -> None:
        if self.fail_with is not None:
            failure, self.fail_with = self.fail_with, None
            raise failure

    async def upsert_document(self, document: DocumentVersion) -> UpsertOutcome:
        self._check_failure()
        key = (document.tenant_id, document.document_id)
        state = self.states.get(key, IndexState())
        outcome = state.plan_upsert(document.version)
        if outcome is UpsertOutcome.INDEXED:
            self.documents[key] = document
            self.states[key] = IndexState(document.version, state.deleted_through_version)
        self.operations.append(f"upsert {document.document_id} v{document.version} {outcome.value}")
        return outcome

    async def delete_document(self, tenant_id: str, document_id: str, version: int) -> None:
        self._check_failure()
        key = (tenant_id, document_id)
        state = self.states.get(key, IndexState())
        if state.removes_chunks(version):
            self.documents.pop(key, None)
        self.states[key] = IndexState(state.indexed_version, max(state.deleted_through_version, version))
        self.operations.append(f"delete {document_id} v{version}")


@dataclass(frozen=True)
class Delivery(Generic[R]):
    """One call of the ReplyService: where, what, the trace it ran in (0: none) and the tenant it acted for."""

    address: str
    message: R
    trace_id: int
    tenant_id: str = ""


@dataclass
class RecordingReplies:
    """`ReplyClient` that records every delivery with the trace it was made in; `accept` is the gateway's ack."""

    sources: list[Delivery[services_pb2.SourcesReply]] = field(default_factory=list)
    failures: list[Delivery[services_pb2.QueryFailure]] = field(default_factory=list)
    accept: bool = True

    async def deliver_sources(self, address: str, reply: services_pb2.SourcesReply, tenant_id: str) -> bool:
        self.sources.append(Delivery(address, reply, _current_trace_id(), tenant_id))
        return self.accept

    async def deliver_failure(self, address: str, failure: services_pb2.QueryFailure, tenant_id: str) -> bool:
        self.failures.append(Delivery(address, failure, _current_trace_id(), tenant_id))
        return self.accept


@dataclass
class ListPublisher:
    """The publisher side of `RoutedEventSink`: keeps the records it would send."""

    sent: list[OutgoingEvent] = field(default_factory=list)

    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None:
        self.sent.extend(events)


def _current_trace_id() -> int:
    return trace.get_current_span().get_span_context().trace_id

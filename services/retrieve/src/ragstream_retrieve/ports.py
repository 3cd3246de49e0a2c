"""What the retrieve handlers need from the outside world; events go out through `ragstream_common.events.EventSink`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from rag.v1 import services_pb2

from ragstream_retrieve.generations_model import Generation, Generations
from ragstream_retrieve.lexical import Bm25Parameters
from ragstream_retrieve.models import (
    Candidate,
    DocumentVersion,
    MissingChunk,
    SearchFilters,
    StoredChunk,
    UpsertOutcome,
)


class ChunkIndexWriter(Protocol):
    async def upsert_document(self, document: DocumentVersion) -> UpsertOutcome:
        """Replace the document's chunks with this version's, atomically, unless the version is stale."""
        ...

    async def delete_document(self, tenant_id: str, document_id: str, version: int) -> None:
        """Remove the document's chunks up to `version` and ignore those versions from now on."""
        ...


class SearchIndex(Protocol):
    """Candidate generation and lookup, always within one tenant."""

    async def dense_candidates(
        self, tenant_id: str, vector: np.ndarray, filters: SearchFilters, limit: int, model: str | None = None
    ) -> list[Candidate]:
        """Nearest chunks by cosine similarity (score = similarity), best first, among the vectors of `model`
        (None: the live generation's)."""
        ...

    async def lexical_candidates(
        self,
        tenant_id: str,
        term_weights: Mapping[str, float],
        filters: SearchFilters,
        limit: int,
        bm25: Bm25Parameters,
    ) -> list[Candidate]:
        """Best chunks by BM25 over the weighted query terms (score = BM25), best first."""
        ...

    async def fetch_chunks(
        self, tenant_id: str, keys: Sequence[int], model: str | None = None
    ) -> dict[int, StoredChunk]:
        """The chunks by key, each with its vector of `model` (None: the live generation's)."""
        ...


class ReplyClient(Protocol):
    """The gateway's ReplyService at the address a query names, acting for the query's tenant (the gateway
    refuses replies for another tenant's query); failures are reported, never raised."""

    async def deliver_sources(self, address: str, reply: services_pb2.SourcesReply, tenant_id: str) -> bool: ...

    async def deliver_failure(self, address: str, failure: services_pb2.QueryFailure, tenant_id: str) -> bool: ...


class QueryEmbedder(Protocol):
    async def embed_query(self, text: str, model: str = "") -> np.ndarray:
        """The L2-normalised vector of a query text by `model` ("": the embed service's primary)."""
        ...


class TextEmbedder(Protocol):
    """Re-embedding: stored chunk texts through the embed service's documents path."""

    async def embed_texts(self, texts: Sequence[str], model: str) -> np.ndarray: ...

    async def primary_model(self) -> tuple[str, int]:
        """The embed service's primary model (EMBED_MODEL): its recorded name and size."""
        ...


class GenerationStore(Protocol):
    """The generations and the vectors they lack (adapters/pg_generations.py)."""

    async def load(self) -> Generations: ...

    async def create(self, model: str, dimensions: int) -> Generation | None: ...

    async def progress(self, model: str) -> tuple[int, int]: ...

    async def record_progress(self, generation_id: int, total: int, done: int) -> None: ...

    async def missing(self, model: str, after_key: int, limit: int) -> list[MissingChunk]: ...

    async def store_vectors(self, model: str, chunks: Sequence[MissingChunk], vectors: np.ndarray) -> None: ...

    async def switch(self, generation_id: int) -> bool: ...


class LiveGenerations(Protocol):
    async def current(self) -> Generations:
        """The generations as recently read (a second or so old at most)."""
        ...

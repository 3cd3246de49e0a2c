"""The retrieve service's own types: what gets indexed, what a search asks for and what it finds."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ragstream_retrieve.lexical import DEFAULT_BM25, Bm25Parameters


@dataclass(frozen=True)
class ChunkToIndex:
    chunk_id: str
    position: int
    text: str
    heading: str
    content_sha256: str
    token_count: int
    embedding: np.ndarray
    term_frequencies: Mapping[str, int]
    # Vectors of the other models the embed service serves while a generation builds (model -> vector).
    extra_embeddings: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def lexical_length(self) -> int:
        return sum(self.term_frequencies.values())

    def vectors(self, primary_model: str) -> dict[str, np.ndarray]:
        """Every vector of the chunk by model, the primary (`embedding`) under the document's model."""
        return {**self.extra_embeddings, primary_model: self.embedding}


@dataclass(frozen=True)
class DocumentVersion:
    """Every chunk of one version of one document: indexed all together or not at all."""

    tenant_id: str
    document_id: str
    version: int
    title: str
    metadata: Mapping[str, str]
    model: str
    model_version: str
    chunks: Sequence[ChunkToIndex]


class UpsertOutcome(enum.Enum):
    INDEXED = "indexed"
    # The same version was indexed before (a redelivery): nothing written.
    ALREADY_INDEXED = "already_indexed"
    # A newer version is indexed already: this late one is ignored.
    SUPERSEDED = "superseded"
    # The document was deleted at or after this version: ignored.
    DELETED = "deleted"


@dataclass(frozen=True)
class IndexState:
    indexed_version: int = 0
    deleted_through_version: int = 0

    def plan_upsert(self, version: int) -> UpsertOutcome:
        """What indexing `version` must do given what the index holds (INDEXED: replace the chunks)."""
        if version <= self.deleted_through_version:
            return UpsertOutcome.DELETED
        if version < self.indexed_version:
            return UpsertOutcome.SUPERSEDED
        if version == self.indexed_version:
            return UpsertOutcome.ALREADY_INDEXED
        return UpsertOutcome.INDEXED

    def removes_chunks(self, deleted_version: int) -> bool:
        """A delete of `deleted_version` removes the indexed chunks unless a newer version replaced them."""
        return self.indexed_version <= deleted_version


class RetrievalMode(enum.Enum):
    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


@dataclass(frozen=True)
class SearchFilters:
    document_ids: tuple[str, ...] = ()
    # Equality on every pair (jsonb containment).
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchRequest:
    tenant_id: str
    text: str
    top_k: int
    mode: RetrievalMode = RetrievalMode.HYBRID
    filters: SearchFilters = SearchFilters()
    # L2-normalised query vector; required by the dense and hybrid modes.
    vector: np.ndarray | None = None
    # The model `vector` is of (its generation's vectors are searched); None: the live generation's.
    model: str | None = None


# Hybrid fusion (fusion.py): convex combination of per-query normalised scores, or weighted reciprocal rank fusion.
FusionMethod = Literal["convex", "rrf"]
ScoreNormalization = Literal["minmax", "zscore"]


@dataclass(frozen=True)
class SearchTuning:
    candidate_depth: int = 100
    fusion: FusionMethod = "convex"
    score_normalization: ScoreNormalization = "minmax"
    rrf_k: float = 60.0
    # Relative weights of the retrievers in either fusion (convex: alpha = dense / (dense + lexical)).
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    # Results whose vectors are at least this similar to a better result are dropped as near-duplicates.
    dedupe_cosine: float = 0.98
    bm25: Bm25Parameters = DEFAULT_BM25


@dataclass(frozen=True)
class HnswSettings:
    """pgvector HNSW search parameters, set per search transaction."""

    # Candidate list size of the graph search; raised to the requested depth when that is larger.
    ef_search: int = 100
    # pgvector 0.8: keep scanning when filters (tenant, documents, metadata) reject most of the nearest rows.
    iterative_scan: str = "relaxed_order"
    max_scan_tuples: int = 20_000


@dataclass(frozen=True)
class Candidate:
    """A chunk found by one retriever: its index row key and that retriever's score."""

    key: int
    score: float


@dataclass(frozen=True)
class StoredChunk:
    key: int
    chunk_id: str
    document_id: str
    version: int
    title: str
    text: str
    position: int
    metadata: Mapping[str, str]
    content_sha256: str
    embedding: np.ndarray


@dataclass(frozen=True)
class SearchHit:
    chunk: StoredChunk
    score: float
    dense_score: float
    lexical_score: float


@dataclass(frozen=True)
class MissingChunk:
    """A chunk without a vector of the model a generation builds: re-embedded from its stored text."""

    tenant_id: str
    chunk_key: int
    text: str

"""Conversions between rag.v1 messages and the service's own types, with the validation that goes with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rag.v1 import chunks_pb2, queries_pb2
from ragstream_common.messages import unpack_vector

from ragstream_retrieve.lexical import LexicalAnalyzer, lexical_text
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion, RetrievalMode, SearchFilters, SearchHit

RETRIEVAL_MODES = {
    queries_pb2.RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode.HYBRID,
    queries_pb2.RETRIEVAL_MODE_HYBRID: RetrievalMode.HYBRID,
    queries_pb2.RETRIEVAL_MODE_DENSE: RetrievalMode.DENSE,
    queries_pb2.RETRIEVAL_MODE_LEXICAL: RetrievalMode.LEXICAL,
}


class InvalidDocument(ValueError):
    """The event cannot be indexed as it is (wrong vector size, broken vectors, duplicate chunk ids)."""


class InvalidVector(ValueError):
    """A query or chunk vector of the wrong size, or one that cannot be normalised."""


@dataclass(frozen=True)
class TopKLimits:
    default: int = 8
    maximum: int = 100

    def clamp(self, requested: int) -> int:
        return min(requested if requested > 0 else self.default, self.maximum)


def checked_vector(values: np.ndarray, dimensions: int | None) -> np.ndarray:
    """A finite, L2-normalised float32 copy of `values` (of `dimensions` when given), or InvalidVector."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0 or (dimensions is not None and vector.shape != (dimensions,)):
        raise InvalidVector(f"vector has {vector.size} dimensions, expected {dimensions or 'some'}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidVector("vector is zero or not finite")
    return vector / norm


def document_from_event(
    event: chunks_pb2.ChunksEmbedded, analyzer: LexicalAnalyzer, dimensions: int | None = None
) -> DocumentVersion:
    """The indexable form of a ChunksEmbedded event: vectors checked, lexical terms analysed (CPU work).

    `dimensions`: the size every primary vector must have; None leaves the sizes to the index, which checks
    each model's vectors against its generation's (generations_model.stored_models)."""
    if dimensions is not None and event.dimensions and event.dimensions != dimensions:
        raise InvalidDocument(
            f"model {event.model!r} produces {event.dimensions} dimensions, the index stores {dimensions}"
        )
    ids = [c.chunk.chunk_id for c in event.chunks]
    if "" in ids or len(set(ids)) != len(ids):
        raise InvalidDocument("chunk ids must be present and unique within a document version")
    title = _clean(event.title)
    chunks = []
    for embedded in event.chunks:
        chunk = embedded.chunk
        try:
            vector = checked_vector(unpack_vector(embedded.vector), dimensions or event.dimensions or None)
            extra = {
                v.model: checked_vector(unpack_vector(v.vector), v.dimensions or None) for v in embedded.extra_vectors
            }
        except InvalidVector as exc:
            raise InvalidDocument(f"chunk {chunk.chunk_id}: {exc}") from None
        text, heading = _clean(chunk.text), _clean(chunk.heading)
        chunks.append(
            ChunkToIndex(
                chunk_id=chunk.chunk_id,
                position=chunk.position,
                text=text,
                heading=heading,
                content_sha256=chunk.content_sha256,
                token_count=chunk.token_count,
                embedding=vector,
                term_frequencies=analyzer.term_frequencies(lexical_text(title, heading, text)),
                extra_embeddings=extra,
            )
        )
    return DocumentVersion(
        tenant_id=event.tenant_id,
        document_id=event.document_id,
        version=event.version,
        title=title,
        metadata={_clean(k): _clean(v) for k, v in event.metadata.items()},
        model=event.model,
        model_version=event.model_version,
        chunks=chunks,
    )


def _clean(text: str) -> str:
    # Postgres text cannot hold NUL characters.
    return text.replace("\x00", "")


def search_filters(filters: queries_pb2.QueryFilters) -> SearchFilters:
    return SearchFilters(document_ids=tuple(filters.document_ids), metadata=dict(filters.metadata))


def scored_chunk(hit: SearchHit) -> queries_pb2.ScoredChunk:
    chunk = hit.chunk
    return queries_pb2.ScoredChunk(
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        version=chunk.version,
        title=chunk.title,
        text=chunk.text,
        position=chunk.position,
        score=hit.score,
        dense_score=hit.dense_score,
        lexical_score=hit.lexical_score,
        metadata=dict(chunk.metadata),
    )


def scored_chunks(hits: Sequence[SearchHit]) -> list[queries_pb2.ScoredChunk]:
    return [scored_chunk(hit) for hit in hits]

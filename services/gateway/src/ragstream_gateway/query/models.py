"""HTTP request and response bodies of the query API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from rag.v1 import queries_pb2


class QueryFiltersBody(BaseModel):
    document_ids: list[str] = Field(default_factory=list, max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict)


class QueryBody(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)
    filters: QueryFiltersBody | None = None
    mode: Literal["answer", "search"] = "answer"
    retrieval: Literal["hybrid", "dense", "lexical"] = "hybrid"
    timeout_ms: int | None = Field(default=None, ge=1, le=120_000, description="Deadline for the whole query")


class SearchBody(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=10, ge=1, le=100)
    filters: QueryFiltersBody | None = None
    retrieval: Literal["hybrid", "dense", "lexical"] = "hybrid"
    timeout_ms: int | None = Field(default=None, ge=1, le=120_000)


class CitationOut(BaseModel):
    index: int
    document_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float


class ChunkOut(BaseModel):
    chunk_id: str
    document_id: str
    version: int
    title: str
    text: str
    position: int
    score: float
    dense_score: float
    lexical_score: float
    metadata: dict[str, str]


class QueryResponse(BaseModel):
    query_id: str
    answer: str
    no_answer: bool
    degraded: bool
    backend: str
    citations: list[CitationOut]
    timings: dict[str, float]


class SearchResponse(BaseModel):
    query_id: str
    results: list[ChunkOut]
    timings: dict[str, float]


def citation_out(citation: queries_pb2.Citation) -> CitationOut:
    return CitationOut(
        index=citation.index,
        document_id=citation.document_id,
        chunk_id=citation.chunk_id,
        title=citation.title,
        snippet=citation.snippet,
        score=citation.score,
    )


def chunk_out(chunk: queries_pb2.ScoredChunk) -> ChunkOut:
    return ChunkOut(
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        version=chunk.version,
        title=chunk.title,
        text=chunk.text,
        position=chunk.position,
        score=chunk.score,
        dense_score=chunk.dense_score,
        lexical_score=chunk.lexical_score,
        metadata=dict(chunk.metadata),
    )

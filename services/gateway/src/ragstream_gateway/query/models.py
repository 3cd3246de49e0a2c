"""HTTP request and response bodies of the query API (request bounds as in ragstream_gateway.models)."""

from __future__ import annotations

from typing import Annotated, Literal

from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel, Field, StringConstraints, model_validator
from rag.v1 import queries_pb2

from ragstream_gateway.models import NO_NUL_PATTERN, DocumentId, Metadata

MAX_QUESTION_CHARS = 4000
MAX_FILTER_DOCUMENT_IDS = 1000
MAX_TOP_K = 100
MAX_AGENT_STEPS = 8
QueryMode = Literal["answer", "search", "agent"]
Question = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=NO_NUL_PATTERN)]


class QueryFiltersBody(BaseModel):
    document_ids: list[DocumentId] = Field(default_factory=list, max_length=MAX_FILTER_DOCUMENT_IDS)
    metadata: Metadata = Field(default_factory=dict, description="Chunks whose document has all these entries")


class QueryBody(BaseModel):
    question: Question
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    filters: QueryFiltersBody | None = None
    mode: QueryMode = Field(
        default="answer",
        description="answer: retrieve once, then answer; search: the sources alone; agent: the answer may follow "
        "up with further searches of its own (multi-step retrieval) and cites chunks from any step",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=MAX_AGENT_STEPS,
        description="Agent mode only: the most retrieval steps, the question's own included (default 4)",
    )
    retrieval: Literal["hybrid", "dense", "lexical"] = "hybrid"
    timeout_ms: int | None = Field(default=None, ge=1, le=120_000, description="Deadline for the whole query")

    @model_validator(mode="after")
    def _max_steps_only_for_the_agent(self) -> QueryBody:
        if self.max_steps is not None and self.mode != "agent":
            raise ValueError("max_steps applies to mode agent only")
        return self


class SearchBody(BaseModel):
    query: Question
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)
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


class StepSourceOut(BaseModel):
    document_id: str
    chunk_id: str
    score: float


class AgentStepOut(BaseModel):
    step: int = Field(description="1-based, in the order the steps ran")
    query: str = Field(description="The search this step ran (step 1: the question itself)")
    reason: str
    sources: list[StepSourceOut]
    new_sources: int = Field(description="How many of `sources` no earlier step had found")


class QueryResponse(BaseModel):
    query_id: str
    answer: str
    no_answer: bool
    degraded: bool
    backend: str
    citations: list[CitationOut]
    timings: dict[str, float]
    steps: list[AgentStepOut] | None = Field(default=None, description="Agent mode: the retrieval steps taken")
    exit_reason: str | None = Field(
        default=None,
        description="Agent mode: why it stopped searching (answered, no_new_evidence, step_budget, deadline, "
        "token_budget or repeated_call)",
    )


class SearchResponse(BaseModel):
    query_id: str
    results: list[ChunkOut]
    timings: dict[str, float]


def _fields(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def citation_out(citation: queries_pb2.Citation) -> CitationOut:
    return CitationOut.model_validate(_fields(citation))


def chunk_out(chunk: queries_pb2.ScoredChunk) -> ChunkOut:
    return ChunkOut.model_validate(_fields(chunk))


def agent_step_out(step: queries_pb2.AgentStep) -> AgentStepOut:
    """A step as the API shows it: which chunks it found, not their texts (the citations and sources carry those)."""
    sources = [StepSourceOut(document_id=c.document_id, chunk_id=c.chunk_id, score=c.score) for c in step.sources]
    return AgentStepOut(
        step=step.step, query=step.query, reason=step.reason, sources=sources, new_sources=step.new_sources
    )

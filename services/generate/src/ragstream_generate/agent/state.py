"""What an agent run knows: the steps taken, the sources they found, and what a planner may ask for next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rag.v1.queries_pb2 import ScoredChunk


class ExitReason(StrEnum):
    """Why the loop stopped (AnswerProduced.exit_reason)."""

    ANSWERED = "answered"  # the planner had nothing left to ask, or wrote its answer
    # The planner stopped after a step that found no source earlier steps had not, or two steps in a row did.
    NO_NEW_EVIDENCE = "no_new_evidence"
    STEP_BUDGET = "step_budget"  # max_steps steps ran
    DEADLINE = "deadline"  # too little of the query's deadline was left for another step
    TOKEN_BUDGET = "token_budget"  # an LLM planner spent the tenant's tokens for one query
    REPEATED_CALL = "repeated_call"  # the planner asked for a search it had already run
    SEARCH_FAILED = "search_failed"  # a step's search failed: answered from the earlier steps, degraded


@dataclass(frozen=True)
class PlannedSearch:
    """One search a planner asks for. `document_id` set: read that document (its chunks most relevant to
    `query`), which the planner may do only for a document an earlier step found."""

    query: str
    reason: str
    top_k: int | None = None
    document_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # narrows the caller's filters, never widens them

    def key(self) -> tuple[str, str, int | None, tuple[tuple[str, str], ...]]:
        """Identity for "never repeat a query": case and spacing do not make a search new."""
        query = " ".join(self.query.casefold().split())
        return (query, self.document_id or "", self.top_k, tuple(sorted(self.metadata.items())))


@dataclass(frozen=True)
class FinalAnswer:
    """An answer the planner wrote itself: `text` cites sources by their number in AgentState.sources ([1] is
    the first source any step found)."""

    text: str


@dataclass
class Step:
    number: int  # 1-based
    search: PlannedSearch
    sources: list[ScoredChunk]
    new_chunk_ids: list[str]  # the sources no earlier step had found, in rank order


@dataclass
class AgentState:
    question: str
    steps: list[Step] = field(default_factory=list)
    # Every source of every step, each once, in the order they were first found: the citation numbering.
    sources: list[ScoredChunk] = field(default_factory=list)
    tokens_in: int = 0  # what an LLM planner spent so far
    tokens_out: int = 0

    def record(self, search: PlannedSearch, found: list[ScoredChunk]) -> Step:
        known = {chunk.chunk_id for chunk in self.sources}
        new = [chunk for chunk in found if chunk.chunk_id not in known]
        self.sources.extend(new)
        step = Step(len(self.steps) + 1, search, list(found), [chunk.chunk_id for chunk in new])
        self.steps.append(step)
        return step

    def seen_documents(self) -> set[str]:
        return {chunk.document_id for chunk in self.sources}

    def source_number(self, chunk_id: str) -> int | None:
        """The 1-based number of a found chunk in `sources`."""
        for number, chunk in enumerate(self.sources, start=1):
            if chunk.chunk_id == chunk_id:
                return number
        return None

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

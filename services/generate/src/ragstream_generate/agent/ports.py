"""What the agent loop needs from outside: a search (RetrieveService.Search over gRPC in production) and a
planner that decides the next step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rag.v1.queries_pb2 import RETRIEVAL_MODE_UNSPECIFIED, RetrievalMode, ScoredChunk

from ragstream_generate.agent.state import AgentState, FinalAnswer, PlannedSearch


@dataclass(frozen=True)
class SearchScope:
    """What every step of one query searches within: the query's tenant and the caller's filters."""

    tenant_id: str
    document_ids: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    retrieval: RetrievalMode.ValueType = RETRIEVAL_MODE_UNSPECIFIED  # hybrid


class Searcher(Protocol):
    async def search(
        self,
        scope: SearchScope,
        query: str,
        top_k: int,
        timeout_s: float,
        *,
        document_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> list[ScoredChunk]:
        """Ranked chunks of `scope.tenant_id` for `query`, within the scope's filters and, further narrowed,
        `document_ids`/`metadata`. Raises on failure (the loop ends the run with what it has)."""
        ...


class Planner(Protocol):
    name: str

    async def next_action(self, state: AgentState, timeout_s: float) -> PlannedSearch | FinalAnswer | None:
        """The next search, a written answer, or None: nothing left to ask (the loop composes the answer)."""
        ...

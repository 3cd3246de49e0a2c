"""Fakes of the agent's ports: an in-memory searcher ranking a tenant's chunks by shared terms, and a planner
that plays a script of actions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rag.v1 import queries_pb2
from ragstream_common.text_analysis import ENGLISH_ANALYZER
from ragstream_generate.agent.ports import SearchScope
from ragstream_generate.agent.state import AgentState, FinalAnswer, PlannedSearch


def chunk(document_id: str, text: str, score: float = 1.0, position: int = 0) -> queries_pb2.ScoredChunk:
    return queries_pb2.ScoredChunk(
        chunk_id=f"{document_id}#{position}", document_id=document_id, title=document_id, text=text, score=score
    )


@dataclass
class InMemorySearcher:
    """`Searcher` over {tenant: [(document_id, text)]}: chunks sharing terms with the query, most shared first.
    `calls` records (tenant, query, top_k, document_ids, metadata); `fail_on` raises for a query containing it;
    `delay_s` sleeps before answering."""

    documents: Mapping[str, Sequence[tuple[str, str]]]
    calls: list[tuple[str, str, int, tuple[str, ...], dict[str, str]]] = field(default_factory=list)
    fail_on: str | None = None
    delay_s: float = 0.0

    async def search(
        self,
        scope: SearchScope,
        query: str,
        top_k: int,
        timeout_s: float,
        *,
        document_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> list[queries_pb2.ScoredChunk]:
        self.calls.append((scope.tenant_id, query, top_k, tuple(document_ids), dict(metadata or {})))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in query:
            raise ConnectionError("retrieve unavailable")
        wanted = set(ENGLISH_ANALYZER.terms(query))
        allowed = set(document_ids) | set(scope.document_ids)
        scored = []
        for document_id, text in self.documents.get(scope.tenant_id, ()):
            if allowed and document_id not in allowed:
                continue
            shared = len(wanted & set(ENGLISH_ANALYZER.terms(text)))
            if shared:
                scored.append((shared, document_id, text))
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [chunk(d, t, score=float(s)) for s, d, t in scored[:top_k]]


@dataclass
class ScriptedPlanner:
    """`Planner` returning its script's actions in order, then None; an exception in the script is raised."""

    script: list[PlannedSearch | FinalAnswer | Exception | None]
    name: str = "scripted"
    seen_steps: list[int] = field(default_factory=list)
    delay_s: float = 0.0

    async def next_action(self, state: AgentState, timeout_s: float) -> PlannedSearch | FinalAnswer | None:
        self.seen_steps.append(len(state.steps))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.script:
            return None
        action = self.script.pop(0)
        if isinstance(action, Exception):
            raise action
        return action

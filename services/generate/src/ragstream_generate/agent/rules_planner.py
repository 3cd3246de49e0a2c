"""The model-free planner: decomposition, then bridge entities, then one RM3 expansion; no weights, no network.

Step 1 (the question as asked) is the pipeline's own retrieval. After it the planner asks, in order: each
sub-query of a compound question once; while no single evidence chunk covers the question's words, a search
for the best bridge entity plus the words its chunk lacks (at most `max_bridges`); then one RM3 expansion of
the question over step 1's sources. It stops when one chunk covers every word of the question (or of each of
its parts), when a bridge step found a chunk covering its own search, when the last step found nothing new
among its top sources, or when nothing new is left to ask.

Coverage is per chunk, not over the union of the evidence: two chunks that between them hold every word are a
chain to follow, not an answer, even when step 1 happened to retrieve both (a small corpus), so the bridge
step still runs and the answer links the hops through the entity they share. One instance serves many
concurrent runs: everything it knows about a run it derives from the run's `AgentState`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.v1.queries_pb2 import ScoredChunk

from ragstream_generate.agent.bridging import bridge_entities, bridge_query, uncovered_words
from ragstream_generate.agent.decompose import decompose
from ragstream_generate.agent.expansion import rm3_query
from ragstream_generate.agent.state import AgentState, PlannedSearch

# The reason of a bridge step names its entity: how a later call knows which bridges a run has used.
_BRIDGE_REASON = re.compile(r"bridge: '(?P<entity>.+)' from step \d+ is not in the question")
_EXPANSION_PREFIX = "expansion:"
_SearchKey = tuple[str, str, int | None, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class RulesPlannerConfig:
    evidence_k: int = 3  # each step's sources that count as its evidence
    max_bridges: int = 2
    expansion: bool = True
    top_k: int | None = None  # per follow-up search; None: the query's own top_k


@dataclass(frozen=True)
class _Evidence:
    chunks: list[ScoredChunk]
    step_of: dict[str, int]  # chunk id -> the first step that had it among its top sources
    ranks: list[int]  # per chunk, its rank in that step's search


def _evidence(state: AgentState, evidence_k: int) -> _Evidence:
    """The top `evidence_k` sources of every step, interleaved by rank (each step's best first), each once."""
    chunks: list[ScoredChunk] = []
    step_of: dict[str, int] = {}
    ranks: list[int] = []
    for rank in range(evidence_k):
        for step in state.steps:
            if rank < len(step.sources) and step.sources[rank].chunk_id not in step_of:
                step_of[step.sources[rank].chunk_id] = step.number
                chunks.append(step.sources[rank])
                ranks.append(rank)
    return _Evidence(chunks, step_of, ranks)


def _last_step_found_nothing_new(state: AgentState, evidence_k: int) -> bool:
    last = state.steps[-1]
    if last.number <= 1:
        return False
    top = {chunk.chunk_id for chunk in last.sources[:evidence_k]}
    return not top.intersection(last.new_chunk_ids)


def _covered_by_one(question: str, chunks: list[ScoredChunk]) -> bool:
    return any(not uncovered_words(question, [chunk]) for chunk in chunks)


def _bridge_answered(state: AgentState, evidence_k: int) -> bool:
    """The last step followed a bridge and one of its top sources holds everything its search asked."""
    last = state.steps[-1]
    if not _BRIDGE_REASON.fullmatch(last.search.reason):
        return False
    return _covered_by_one(last.search.query, last.sources[:evidence_k])


def followed_entity(reason: str) -> str | None:
    """The bridge entity a step of this planner followed, from its reason; None for any other step."""
    match = _BRIDGE_REASON.fullmatch(reason)
    return match.group("entity") if match else None


def _used_bridges(state: AgentState) -> list[str]:
    return [entity for step in state.steps if (entity := followed_entity(step.search.reason))]


class ModelFreePlanner:
    """The `Planner` of agent/ports.py without a model: pure CPU, about a millisecond per step."""

    name = "rules"

    def __init__(self, config: RulesPlannerConfig | None = None) -> None:
        self.config = config or RulesPlannerConfig()

    async def next_action(self, state: AgentState, timeout_s: float) -> PlannedSearch | None:
        # Milliseconds of CPU: the timeout never binds, and there is nothing to await.
        return self.plan(state)

    def plan(self, state: AgentState) -> PlannedSearch | None:
        """The next search for `state`, or None: nothing useful left to ask."""
        if not state.steps:
            return self._search(state.question, "the question as asked")
        asked = {step.search.key() for step in state.steps}
        parts = decompose(state.question)
        for part in parts:
            search = self._search(part.query, part.reason)
            if search.key() not in asked:
                return search
        if _last_step_found_nothing_new(state, self.config.evidence_k):
            return None
        if _bridge_answered(state, self.config.evidence_k):
            return None
        evidence = _evidence(state, self.config.evidence_k)
        # A compound question asks what its parts ask: "raise or lower", "compared with" are in no source.
        focus = [part.query for part in parts] if parts else [state.question]
        if all(_covered_by_one(words, evidence.chunks) for words in focus):
            return None
        return self._bridge(state, " ".join(focus), evidence, asked) or self._expansion(state, asked)

    def _search(self, query: str, reason: str) -> PlannedSearch:
        return PlannedSearch(query=query, reason=reason, top_k=self.config.top_k)

    def _bridge(
        self, state: AgentState, focus: str, evidence: _Evidence, asked: set[_SearchKey]
    ) -> PlannedSearch | None:
        used = _used_bridges(state)
        if len(used) >= self.config.max_bridges:
            return None
        # Only an entity next to the question's terms is a bridge; one in an unrelated sentence is noise.
        for entity in bridge_entities(state.question, evidence.chunks, exclude=used, ranks=evidence.ranks):
            if not entity.related:
                continue
            source = next(chunk for chunk in evidence.chunks if chunk.chunk_id == entity.chunk_id)
            query = bridge_query(entity.text, focus, [source])  # the entity and what its own chunk lacks
            step = evidence.step_of[entity.chunk_id]
            search = self._search(query, f"bridge: '{entity.text}' from step {step} is not in the question")
            if search.key() not in asked:
                return search
        return None

    def _expansion(self, state: AgentState, asked: set[_SearchKey]) -> PlannedSearch | None:
        if not self.config.expansion or any(s.search.reason.startswith(_EXPANSION_PREFIX) for s in state.steps):
            return None
        query = rm3_query(state.question, state.steps[0].sources)
        added = query[len(state.question) :].split()
        if not added:
            return None
        search = self._search(query, f"{_EXPANSION_PREFIX} words of step 1's top sources ({', '.join(added)})")
        return None if search.key() in asked else search

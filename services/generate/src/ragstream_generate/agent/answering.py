"""An AGENT query from retrieved sources to its answer: step 1 is the pipeline's retrieval of the question, then
the loop's steps, then one `sources` event with everything found, then the answer's tokens and final draft.

The answer: the LLM planner's own when it wrote one; else the configured backend over all steps' sources,
where the default (extractive) composes the steps' evidence in the order that links them (agent/compose.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rag.v1 import queries_pb2, services_pb2

from ragstream_generate.agent.compose import compose_agent_answer
from ragstream_generate.agent.loop import AgentBudget, AgentOutcome, AgentRun, run_agent
from ragstream_generate.agent.ports import Planner, Searcher, SearchScope
from ragstream_generate.agent.state import AgentState, PlannedSearch, Step
from ragstream_generate.backends.base import AnswerBackend, AnswerEvent, DraftAnswer, count_tokens, whitespace_tokens
from ragstream_generate.backends.extractive import ExtractiveConfig, wordish_tokens
from ragstream_generate.backends.openai_chat import draft_from_completion
from ragstream_generate.metrics import TOKENS

FIRST_STEP_REASON = "the question as asked"
# A planner for one run (an LLM planner keeps its conversation per run; the model-free one is shared).
PlannerFactory = Callable[[AgentState], Planner]


class AgentListener(Protocol):
    """Where the run's progress goes live (the waiting gateway)."""

    async def step(self, step: queries_pb2.AgentStep) -> None: ...

    async def sources(self, reply: services_pb2.SourcesReply) -> None: ...


@dataclass(frozen=True)
class AgentConfig:
    default_steps: int = 4
    max_steps: int = 8  # the hard cap, whatever a query asks for
    evidence_k: int = 3  # a step's top sources that count as its evidence
    max_top_k: int = 20
    step_timeout_s: float = 5.0
    answer_reserve_s: float = 0.3
    token_budget: int | None = 20_000  # an LLM planner's tokens per query
    tenant_token_budgets: Mapping[str, int] = field(default_factory=dict)
    extractive: ExtractiveConfig = field(default_factory=ExtractiveConfig)

    def steps_for(self, asked: int) -> int:
        return min(asked or self.default_steps, self.max_steps)

    def tokens_for(self, tenant_id: str) -> int | None:
        return self.tenant_token_budgets.get(tenant_id, self.token_budget)


def step_message(step: Step) -> queries_pb2.AgentStep:
    return queries_pb2.AgentStep(
        step=step.number,
        query=step.search.query,
        reason=step.search.reason,
        sources=step.sources,
        new_sources=len(step.new_chunk_ids),
    )


class AgentAnswerer:
    def __init__(
        self,
        planner: PlannerFactory,
        searcher: Searcher,
        backend: AnswerBackend,
        config: AgentConfig | None = None,
        fallback: PlannerFactory | None = None,
    ) -> None:
        self._planner = planner
        self._fallback = fallback
        self._searcher = searcher
        self._backend = backend
        self.config = config or AgentConfig()

    async def run(self, retrieved: queries_pb2.QueryRetrieved, listener: AgentListener) -> AgentOutcome:
        """Step 1 from the retrieved sources, then the loop; every step and finally the sources go live."""
        query = retrieved.query
        state = AgentState(query.question)
        top_k = max(1, min(query.top_k or 5, self.config.max_top_k))
        first = state.record(PlannedSearch(query.question, FIRST_STEP_REASON, top_k=top_k), list(retrieved.chunks))
        await listener.step(step_message(first))
        budget = AgentBudget(
            max_steps=self.config.steps_for(query.max_steps),
            deadline=_monotonic_deadline(query),
            answer_reserve_s=self.config.answer_reserve_s,
            step_timeout_s=self.config.step_timeout_s,
            tokens=self.config.tokens_for(query.tenant_id),
            top_k=top_k,
        )
        run = AgentRun(state, self._planner(state), self._fallback(state) if self._fallback else None, budget)
        scope = SearchScope(
            query.tenant_id, list(query.filters.document_ids), dict(query.filters.metadata), query.retrieval
        )

        async def announce(step: Step) -> None:
            await listener.step(step_message(step))

        outcome = await run_agent(run, self._searcher, scope, announce)
        await listener.sources(services_pb2.SourcesReply(query_id=query.query_id, chunks=state.sources))
        return outcome

    async def answer(self, outcome: AgentOutcome) -> AsyncIterator[AnswerEvent]:
        """The answer's tokens, then its draft (planner tokens included, degraded when the run was)."""
        state = outcome.state
        TOKENS.labels(outcome.planner, "in").inc(state.tokens_in)  # the planner's own model calls
        TOKENS.labels(outcome.planner, "out").inc(state.tokens_out)
        async for event in self._answer_events(outcome):
            if isinstance(event, DraftAnswer):
                event = dataclasses.replace(
                    event,
                    degraded=event.degraded or outcome.degraded,
                    tokens_in=event.tokens_in + state.tokens_in,
                    tokens_out=event.tokens_out + state.tokens_out,
                )
            yield event

    async def _answer_events(self, outcome: AgentOutcome) -> AsyncIterator[AnswerEvent]:
        state = outcome.state
        if outcome.written is not None:
            draft = draft_from_completion(outcome.written.text, state.question, state.sources, outcome.planner)
        elif self._backend.name == "extractive":
            draft = compose_agent_answer(state, self.config.extractive, self.config.evidence_k)
        else:  # an LLM backend writes the answer from every step's sources, streamed as it comes
            async for event in self._backend.stream(state.question, state.sources):
                yield event
            return
        if outcome.written is None:  # what the model-free composer read and wrote (the planner's come on top)
            draft = dataclasses.replace(
                draft,
                tokens_in=whitespace_tokens(state.question, *(chunk.text for chunk in state.sources)),
                tokens_out=whitespace_tokens(draft.text),
            )
        count_tokens(draft)
        for token in wordish_tokens(draft.text):
            yield token
        yield draft


def _monotonic_deadline(query: queries_pb2.QueryRequested) -> float:
    """The query's wall-clock deadline on the monotonic clock; none set: a minute from now."""
    if not query.HasField("deadline"):
        return time.monotonic() + 60.0
    return time.monotonic() + (query.deadline.ToMicroseconds() / 1e6 - time.time())

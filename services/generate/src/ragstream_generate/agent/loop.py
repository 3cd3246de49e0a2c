"""The bounded agent loop: ask the planner for a search, run it, record the step, until something says stop.

Bounds, checked before every step: `max_steps` steps (step 1, the question as the pipeline retrieved it,
included), the query's deadline less a reserve for composing the answer, an LLM planner's token budget, a
search asked for twice (never repeated; the loop stops), and two steps in a row that found nothing new. A
planner that fails (an LLM endpoint down) is replaced by the fallback planner and the answer is marked degraded;
a search that fails ends the loop with what earlier steps found. Each step is a span of the query's trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry import trace
from ragstream_common.logs import get_logger

from ragstream_generate.agent.ports import Planner, Searcher, SearchScope
from ragstream_generate.agent.state import AgentState, ExitReason, FinalAnswer, PlannedSearch, Step

log = get_logger(__name__)
tracer = trace.get_tracer("ragstream.generate")

StepListener = Callable[[Step], Awaitable[None]]


@dataclass(frozen=True)
class AgentBudget:
    max_steps: int
    deadline: float  # time.monotonic() by which the answer must be done
    answer_reserve_s: float = 0.3  # kept back from the deadline for composing and streaming the answer
    step_timeout_s: float = 5.0  # one search (or planner call) at most
    tokens: int | None = None  # an LLM planner's tokens for this query; None: unbounded
    top_k: int = 5  # a step's results when the planner does not say
    read_top_k: int = 8  # chunks of a document read whole

    def time_left(self) -> float:
        return self.deadline - self.answer_reserve_s - time.monotonic()


@dataclass
class AgentOutcome:
    state: AgentState
    exit_reason: ExitReason
    written: FinalAnswer | None = None  # the planner's own answer, when it wrote one
    degraded: bool = False  # the planner failed over to the fallback, or a search failed
    planner: str = ""


@dataclass
class AgentRun:
    """One query's run: mutable progress shared by the loop's helpers."""

    state: AgentState
    planner: Planner
    fallback: Planner | None
    budget: AgentBudget
    degraded: bool = False


async def run_agent(run: AgentRun, searcher: Searcher, scope: SearchScope, on_step: StepListener) -> AgentOutcome:
    """Steps after step 1 (already in `run.state`) until a bound or the planner stops the loop."""
    keys = {step.search.key() for step in run.state.steps}
    while True:
        reason = _exhausted(run)
        if reason is not None:
            return _outcome(run, reason)
        action = await _next_action(run)
        if action is None or isinstance(action, ExitReason):
            return _outcome(run, action or _stopped_reason(run.state))
        if isinstance(action, FinalAnswer):
            return _outcome(run, ExitReason.ANSWERED, action)
        if action.key() in keys:
            log.info("agent search repeated", query=action.query[:200], planner=run.planner.name)
            return _outcome(run, ExitReason.REPEATED_CALL)
        keys.add(action.key())
        step = await _search_step(run, searcher, scope, action)
        if step is None:
            return _outcome(run, ExitReason.SEARCH_FAILED if run.degraded else ExitReason.DEADLINE)
        await on_step(step)
        if _nothing_new_twice(run.state):
            return _outcome(run, ExitReason.NO_NEW_EVIDENCE)


def _exhausted(run: AgentRun) -> ExitReason | None:
    if len(run.state.steps) >= run.budget.max_steps:
        return ExitReason.STEP_BUDGET
    if run.budget.tokens is not None and run.state.tokens >= run.budget.tokens:
        return ExitReason.TOKEN_BUDGET
    if run.budget.time_left() <= 0:
        return ExitReason.DEADLINE
    return None


async def _next_action(run: AgentRun) -> PlannedSearch | FinalAnswer | ExitReason | None:
    """The planner's next move; a failing planner hands over to the fallback (degraded)."""
    while True:
        left = min(run.budget.time_left(), run.budget.step_timeout_s)
        try:
            async with asyncio.timeout(left):
                return await run.planner.next_action(run.state, left)
        except TimeoutError:
            if run.budget.time_left() <= 0:
                return ExitReason.DEADLINE
            error: Exception = TimeoutError(f"planner {run.planner.name} took over {left:.1f}s")
        except Exception as exc:  # an LLM endpoint's trouble must not cost the answer
            error = exc
        if run.fallback is None or run.fallback is run.planner:
            raise error
        log.warning("agent planner failed; falling back", planner=run.planner.name, error=repr(error)[:300])
        run.planner, run.degraded = run.fallback, True


async def _search_step(run: AgentRun, searcher: Searcher, scope: SearchScope, action: PlannedSearch) -> Step | None:
    number = len(run.state.steps) + 1
    attributes: dict[str, str | int] = {
        "rag.agent.step": number,
        "rag.agent.reason": action.reason[:200],
        "rag.agent.planner": run.planner.name,
    }
    with tracer.start_as_current_span("agent step", attributes=attributes) as span:
        timeout_s = min(run.budget.time_left(), run.budget.step_timeout_s)
        read = action.document_id is not None
        top_k = run.budget.read_top_k if read else (action.top_k or run.budget.top_k)
        try:
            found = await searcher.search(
                scope,
                action.query,
                top_k,
                timeout_s,
                document_ids=[action.document_id] if action.document_id else (),
                metadata=action.metadata,
            )
        except Exception as exc:  # a failed step ends the loop; earlier steps still answer
            span.record_exception(exc)
            if run.budget.time_left() > 0:
                run.degraded = True
                log.warning("agent search failed", step=number, error=repr(exc)[:300])
            return None
        step = run.state.record(action, found)
        span.set_attribute("rag.agent.new_sources", len(step.new_chunk_ids))
        return step


def _nothing_new_twice(state: AgentState) -> bool:
    last_two = state.steps[-2:]
    return len(state.steps) > 2 and all(not step.new_chunk_ids for step in last_two)


def _stopped_reason(state: AgentState) -> ExitReason:
    """Why a planner with nothing left to ask stopped: the last step found nothing new, or it has its answer."""
    last = state.steps[-1]
    if last.number > 1 and not last.new_chunk_ids:
        return ExitReason.NO_NEW_EVIDENCE
    return ExitReason.ANSWERED


def _outcome(run: AgentRun, reason: ExitReason, written: FinalAnswer | None = None) -> AgentOutcome:
    return AgentOutcome(run.state, reason, written, run.degraded, run.planner.name)

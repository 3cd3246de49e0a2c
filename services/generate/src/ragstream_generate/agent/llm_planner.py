"""The LLM planner: an OpenAI-compatible chat model picks the agent's next step by streamed tool calling.

Tools (their schemas and argument checks are in agent/llm_tools.py): `search(query, top_k?, filters?)`,
`read_document(document_id)` (only a document an earlier step found) and `answer(text)`. The model sees the
question and step 1's sources; after each step the tool result it asked for carries the sources that step found
that it had not seen. Sources are numbered by their position in AgentState.sources across all steps, so `answer`
text cites [n] the way the answer composition numbers them.

Prompt injection: sources go into the prompt in the `<source id="n">` blocks of backends/openai_chat.py, escaped
the same way, under its system prompt (source text is data, never instructions); a search the model asks for
can only narrow the caller's filters (the loop enforces that), and `read_document` is refused for a document no
step found, so injected text cannot steer the run outside the query's scope.

Per-run memory: one LLMPlanner serves every concurrent query, so a run's conversation lives in an
LLMPlannerRun, made per query by `LLMPlanner.run_for(state)` (the loop holds it for the query's lifetime).
`LLMPlanner.next_action(state, ...)` also works: it keeps one run per state, dropped when the state is
garbage-collected (the run holds only a weak reference to its state).

Failures: a refused call (malformed JSON arguments, an unknown tool, a missing or invalid argument, an unseen
document) is answered with a tool error message and the model is asked again; the run's `max_refusals`-th
refused call raises PlannerFailed. An endpoint failure (connection refused, HTTP error, no complete answer within
`timeout_s`, a broken or empty stream) raises PlannerUnavailable; the loop then falls back to the model-free
planner, degraded.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from openai import AsyncOpenAI
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.logs import get_logger

from ragstream_generate.agent.llm_tools import (
    TOOL_RULES,
    TOOLS,
    Completion,
    Refused,
    ToolCall,
    action_for,
    assemble,
    tool_message,
)
from ragstream_generate.agent.state import AgentState, FinalAnswer, PlannedSearch
from ragstream_generate.backends.base import whitespace_tokens
from ragstream_generate.backends.openai_chat import SYSTEM_PROMPT, OpenAIChatConfig, escape_source_text, source_block

log = get_logger(__name__)


class PlannerFailed(RuntimeError):
    """The model kept making calls that had to be refused: the run cannot go on with this planner."""


class PlannerUnavailable(PlannerFailed):
    """The endpoint failed, timed out or sent a broken stream."""


class LLMPlanner:
    """Planner over an OpenAI-compatible endpoint; holds the client and configuration shared by all runs."""

    name = "llm"

    def __init__(self, config: OpenAIChatConfig, client: AsyncOpenAI | None = None, *, max_refusals: int = 2) -> None:
        self.config = config
        self.max_refusals = max_refusals
        self.client = client or AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value(),
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        self._runs: dict[int, LLMPlannerRun] = {}  # id(state) -> its run; see next_action

    async def aclose(self) -> None:
        await self.client.close()

    def run_for(self, state: AgentState) -> LLMPlannerRun:
        """A new conversation for one query's state."""
        return LLMPlannerRun(self, state)

    async def next_action(self, state: AgentState, timeout_s: float) -> PlannedSearch | FinalAnswer | None:
        run = self._runs.get(id(state))
        if run is None:
            run = self._runs[id(state)] = self.run_for(state)
            # Before the id can be reused by another state: finalizers run when the state is freed.
            weakref.finalize(state, self._runs.pop, id(state), None)
        return await run.next_action(state, timeout_s)


class LLMPlannerRun:
    """One query's conversation with the model; a Planner for that query's state only."""

    name = "llm"

    def __init__(self, planner: LLMPlanner, state: AgentState) -> None:
        self._planner = planner
        self._state = weakref.ref(state)
        self._messages: list[dict[str, Any]] = []
        self._shown = 0  # state.sources[:_shown] are in the conversation
        self._steps_seen = 0  # len(state.steps) when the model's last search was handed to the loop
        self._awaiting: ToolCall | None = None  # the call whose result the next request reports
        self._deferred: list[dict[str, Any]] = []  # tool messages for the calls not acted on, after that result
        self._refusals = 0

    async def next_action(self, state: AgentState, timeout_s: float) -> PlannedSearch | FinalAnswer | None:
        if self._state() is not state:
            raise ValueError("an LLMPlannerRun plans for the state it was made for")
        if not self._messages:
            self._messages = self._opening(state)
        else:
            self._report_last_step(state)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._decide(state)
        except TimeoutError as error:
            raise self._unavailable(error) from error

    async def _decide(self, state: AgentState) -> PlannedSearch | FinalAnswer:
        """Ask until the model makes a call that can be acted on."""
        while True:
            completion = await self._complete(state)
            if not completion.calls:
                if not completion.content.strip():
                    raise self._unavailable(ValueError("empty completion"))
                self._messages.append({"role": "assistant", "content": completion.content})
                return FinalAnswer(completion.content)
            first, *others = completion.calls
            self._messages.append(
                {
                    "role": "assistant",
                    "content": completion.content or None,
                    "tool_calls": [call.message_entry() for call in completion.calls],
                }
            )
            self._deferred = [tool_message(call.id, "Refused: one call at a time. Ask again.") for call in others]
            try:
                action = action_for(first, state)
            except Refused as refusal:
                self._refuse(first, str(refusal))
                continue
            self._awaiting = first
            self._steps_seen = len(state.steps)
            return action

    def _refuse(self, call: ToolCall, reason: str) -> None:
        self._refusals += 1
        log.info("llm_planner_refused_call", tool=call.name, reason=reason, refusals=self._refusals)
        if self._refusals >= self._planner.max_refusals:
            raise PlannerFailed(f"{self._refusals} refused tool calls; the last: {reason}")
        self._messages.append(tool_message(call.id, f"Error: {reason}"))
        self._messages.extend(self._deferred)
        self._deferred = []

    def _opening(self, state: AgentState) -> list[dict[str, Any]]:
        user = (
            f"<sources>\n{self._new_source_blocks(state) or '(none found)'}\n</sources>\n\n"
            f"<question>\n{escape_source_text(state.question.strip())}\n</question>\n\n"
            "Call search or read_document if the sources above miss evidence the question needs; "
            "otherwise call answer."
        )
        return [{"role": "system", "content": TOOL_RULES + SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def _report_last_step(self, state: AgentState) -> None:
        """The result of the call the model is waiting on: the sources new to it, or that there were none."""
        if self._awaiting is None:
            return
        blocks = self._new_source_blocks(state)
        if blocks:
            result = f"New sources:\n<sources>\n{blocks}\n</sources>"
        else:
            found = [
                number
                for step in state.steps[self._steps_seen :]
                for chunk in step.sources
                if (number := state.source_number(chunk.chunk_id)) is not None
            ]
            seen = "".join(f"[{number}]" for number in dict.fromkeys(found))
            result = "No new sources." + (f" The search found only sources you have: {seen}." if seen else "")
        self._messages.append(tool_message(self._awaiting.id, result))
        self._messages.extend(self._deferred)
        self._awaiting, self._deferred = None, []

    def _new_source_blocks(self, state: AgentState) -> str:
        """The sources not yet shown, numbered by their position in state.sources; marks them shown."""
        fresh = state.sources[self._shown :]
        first = self._shown + 1
        self._shown = len(state.sources)
        return "\n\n".join(_numbered_source(number, chunk) for number, chunk in enumerate(fresh, start=first))

    async def _complete(self, state: AgentState) -> Completion:
        config = self._planner.config
        extra: dict[str, Any] = {}
        if config.max_tokens is not None:
            extra["max_tokens"] = config.max_tokens
        if config.stream_usage:
            extra["stream_options"] = {"include_usage": True}
        try:
            stream = await self._planner.client.chat.completions.create(  # type: ignore[call-overload]
                model=config.model,
                messages=self._messages,
                tools=TOOLS,
                tool_choice="auto",
                temperature=config.temperature,
                stream=True,
                **extra,
            )
            async with stream:
                completion = await assemble(stream)
        except Exception as error:  # any failure of the endpoint or its stream
            raise self._unavailable(error) from error
        self._count_tokens(state, completion)
        return completion

    def _count_tokens(self, state: AgentState, completion: Completion) -> None:
        usage = completion.usage
        if usage is not None:
            state.tokens_in += int(usage.prompt_tokens or 0)
            state.tokens_out += int(usage.completion_tokens or 0)
            return
        state.tokens_in += whitespace_tokens(*(str(message.get("content") or "") for message in self._messages))
        state.tokens_out += whitespace_tokens(completion.content, *(call.arguments for call in completion.calls))

    def _unavailable(self, error: BaseException) -> PlannerUnavailable:
        config = self._planner.config
        log.warning("llm_planner_unavailable", error=repr(error), base_url=config.base_url, model=config.model)
        return PlannerUnavailable(f"the planner's endpoint failed: {error!r}")


def _numbered_source(number: int, chunk: ScoredChunk) -> str:
    """The openai_chat source block, preceded by the document it came from (what read_document takes)."""
    return f'Source {number} is from document "{escape_source_text(chunk.document_id, quote=True)}":\n' + source_block(
        number, chunk
    )


__all__ = ["TOOLS", "LLMPlanner", "LLMPlannerRun", "PlannerFailed", "PlannerUnavailable"]

"""The model-free agent's answer: extractive, from the evidence of every step, in the order that links them.

Each step contributes its best sentence for its own search; a step that followed a bridge entity (a name its
query shares with an earlier step's sources) contributes the sentence that names the entity, and the earlier
step contributes the sentence that introduced it, so "Project Falcon is led by Dr. Maria Ortiz [1]. Dr. Maria
Ortiz works from the Lisbon office [2]." reads as the chain it is. Citations are numbered by first use and point
into `AgentState.sources`, the sources of all steps. One step only: exactly the single-shot extractive answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragstream_generate.agent.bridging import find_entities
from ragstream_generate.agent.state import AgentState, Step
from ragstream_generate.backends.base import NO_ANSWER_TEXT, CitationRef, DraftAnswer
from ragstream_generate.backends.extractive import (
    ExtractiveConfig,
    RankedSentence,
    compose_answer,
    ranked_sentences,
    with_marker,
)


@dataclass(frozen=True)
class Chosen:
    source: int  # index into AgentState.sources
    start: int
    text: str
    score: float


def _in_union(state: AgentState, step: Step, sentence: RankedSentence) -> Chosen:
    chunk = step.sources[sentence.source]
    number = state.source_number(chunk.chunk_id)
    assert number is not None  # every step's sources are in the union
    return Chosen(number - 1, sentence.start, sentence.text, sentence.score)


def _best(state: AgentState, step: Step, query: str, evidence_k: int, naming: str | None = None) -> Chosen | None:
    """The step's best sentence for `query` among its top sources; with `naming`, only sentences naming it."""
    wanted = naming.casefold() if naming else None
    for sentence in ranked_sentences(query, step.sources[:evidence_k]):
        if wanted is None or wanted in sentence.text.casefold():
            return _in_union(state, step, sentence)
    return None


def _links(state: AgentState, step: Step) -> list[tuple[Step, str]]:
    """(earlier step, entity) pairs: names in this step's query that an earlier step's sources contain."""
    earlier = state.steps[: step.number - 1]
    links = []
    for entity in find_entities(step.search.query):
        folded = entity.casefold()
        source_step = next((s for s in earlier if any(folded in c.text.casefold() for c in s.sources)), None)
        if source_step is not None:
            links.append((source_step, entity))
    return links


def chosen_sentences(state: AgentState, evidence_k: int) -> list[list[Chosen]]:
    """Per step, in step order, the sentences it contributes (each sentence once)."""
    per_step: list[list[Chosen]] = [[] for _ in state.steps]
    linked_steps: set[int] = set()
    for step in state.steps[1:]:
        for earlier, entity in _links(state, step):
            introduced = _best(state, earlier, state.question + " " + entity, evidence_k, naming=entity)
            if introduced is not None:
                per_step[earlier.number - 1].append(introduced)
                linked_steps.add(earlier.number)
    for step in state.steps:
        links = _links(state, step) if step.number > 1 else []
        linking: str | None = links[0][1] if links else None
        own = _best(state, step, step.search.query, evidence_k, naming=linking)
        if own is None and linking is not None:
            own = _best(state, step, step.search.query, evidence_k)
        if own is not None and (step.number not in linked_steps or step.number > 1):
            per_step[step.number - 1].append(own)
    seen: set[tuple[int, int]] = set()
    unique: list[list[Chosen]] = []
    for sentences in per_step:
        kept = [s for s in sentences if (s.source, s.start) not in seen]
        seen.update((s.source, s.start) for s in kept)
        unique.append(kept)
    return unique


def compose_agent_answer(
    state: AgentState, config: ExtractiveConfig | None = None, evidence_k: int = 3, backend: str = "extractive"
) -> DraftAnswer:
    config = config or ExtractiveConfig()
    if len(state.steps) == 1:  # the single-shot answer, over the union (which is step 1's sources)
        return compose_answer(state.question, state.sources, config, backend)
    index_of: dict[int, int] = {}
    snippet_of: dict[int, Chosen] = {}
    parts: list[str] = []
    for sentences in chosen_sentences(state, evidence_k):
        for sentence in sentences:
            index = index_of.setdefault(sentence.source, len(index_of) + 1)
            if sentence.source not in snippet_of:
                snippet_of[sentence.source] = sentence
            parts.append(with_marker(sentence.text, index))
    if not parts:
        return DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend=backend)
    citations = [
        CitationRef(index=index, source=source, snippet=snippet_of[source].text, score=state.sources[source].score)
        for source, index in index_of.items()
    ]
    return DraftAnswer(text=" ".join(parts), citations=citations, backend=backend)

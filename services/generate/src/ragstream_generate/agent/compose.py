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


def _best(
    state: AgentState,
    step: Step,
    query: str,
    evidence_k: int,
    naming: str | None = None,
    avoid: frozenset[str] = frozenset(),
) -> Chosen | None:
    """The step's best sentence for `query` among its top sources, not from the `avoid` chunks; with `naming`,
    only sentences naming it."""
    wanted = naming.casefold() if naming else None
    for sentence in ranked_sentences(query, step.sources[:evidence_k]):
        if step.sources[sentence.source].chunk_id in avoid:
            continue
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
    """Per step, in step order, the sentences it contributes (each sentence once). A step that followed an
    entity gives its best sentence naming it; the earlier step gives the sentence that introduced the entity,
    from another chunk (step 1 may have retrieved both hops, and the same sentence cannot be both ends)."""
    intros: list[list[Chosen]] = [[] for _ in state.steps]
    owns: list[Chosen | None] = [None for _ in state.steps]
    for step in state.steps[1:]:
        for earlier, entity in _links(state, step):
            own = owns[step.number - 1] or _best(state, step, step.search.query, evidence_k, naming=entity)
            owns[step.number - 1] = own
            avoid = frozenset({state.sources[own.source].chunk_id}) if own else frozenset()
            introduced = _best(state, earlier, state.question, evidence_k, naming=entity, avoid=avoid)
            if introduced is not None:
                intros[earlier.number - 1].append(introduced)
    per_step: list[list[Chosen]] = []
    for step, introduced, own in zip(state.steps, intros, owns, strict=True):
        # A step that introduced an entity contributes that sentence; its own best would be a second, unlinked
        # answer to the same search.
        own = own or (None if introduced else _best(state, step, step.search.query, evidence_k))
        per_step.append([*introduced, *([own] if own else [])])
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

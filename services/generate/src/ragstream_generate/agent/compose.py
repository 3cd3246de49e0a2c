"""The model-free agent's answer: extractive, from the evidence of every step, in the order that links them.

Step 1 (the question as asked) contributes what the single-shot answer would say. Each later step answers its
own search: the best sentence of its best-ranked source that matches the search (retrieval
ranks passages better than sentence matching does), then the sentence of that source covering most of the search
words the first lacks ("The Osaka office occupies two floors... It opened in 2013."). A step that followed a
bridge entity (a name its query shares with an earlier step's sources) answers with a sentence naming the entity,
and the earlier step contributes the sentence that introduced it, from another chunk, so "Project Falcon is led
by Dr. Maria Ortiz [1]. Dr. Maria Ortiz works from the Lisbon office [2]." reads as the chain it is. Citations
are numbered by first use and point into `AgentState.sources`, the sources of all steps. One step only: exactly
the single-shot extractive answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragstream_generate.agent.bridging import find_entities
from ragstream_generate.agent.state import AgentState, Step
from ragstream_generate.backends.base import NO_ANSWER_TEXT, CitationRef, DraftAnswer
from ragstream_generate.backends.extractive import (
    ExtractiveConfig,
    compose_answer,
    ranked_sentences,
    selected_sentences,
    with_marker,
)
from ragstream_generate.citations import content_terms, sentence_spans


@dataclass(frozen=True)
class Chosen:
    source: int  # index into AgentState.sources
    start: int
    text: str


@dataclass(frozen=True)
class Pick:
    """What a step is asked to answer with: its search, a name the sentence must contain, chunks to avoid."""

    query: str
    naming: str | None = None
    avoid: frozenset[str] = frozenset()


def _union_index(state: AgentState, chunk_id: str) -> int:
    number = state.source_number(chunk_id)
    assert number is not None  # every step's sources are in the union
    return number - 1


def _first(state: AgentState, step: Step, pick: Pick, evidence_k: int, taken: set[tuple[int, int]]) -> Chosen | None:
    """The matching sentence of the best-ranked source that has one."""
    wanted = pick.naming.casefold() if pick.naming else None
    candidates = []
    for sentence in ranked_sentences(pick.query, step.sources[:evidence_k]):
        chunk = step.sources[sentence.source]
        chosen = Chosen(_union_index(state, chunk.chunk_id), sentence.start, sentence.text)
        if chunk.chunk_id in pick.avoid or (chosen.source, chosen.start) in taken:
            continue
        if wanted is None or wanted in sentence.text.casefold():
            candidates.append((sentence.source, chosen))  # ranked best first: stable by source rank below
    return min(candidates, key=lambda item: item[0])[1] if candidates else None


def _rest(state: AgentState, first: Chosen, query: str, taken: set[tuple[int, int]]) -> Chosen | None:
    """The sentence of the same source that covers most of the query words `first` lacks."""
    text = state.sources[first.source].text
    wanted = set(content_terms(query)) - set(content_terms(first.text))
    best: tuple[int, Chosen] | None = None
    for start, end in sentence_spans(text):
        if start == first.start or (first.source, start) in taken:
            continue
        hits = len(wanted.intersection(content_terms(text[start:end])))
        if hits and (best is None or hits > best[0]):
            best = (hits, Chosen(first.source, start, text[start:end]))
    return best[1] if best else None


def _answer(state: AgentState, step: Step, pick: Pick, evidence_k: int, taken: set[tuple[int, int]]) -> list[Chosen]:
    first = _first(state, step, pick, evidence_k, taken)
    if first is None:
        return []
    taken.add((first.source, first.start))
    rest = _rest(state, first, pick.query, taken)
    if rest is None:
        return [first]
    taken.add((rest.source, rest.start))
    return sorted([first, rest], key=lambda chosen: chosen.start)  # text order within the source


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


def chosen_sentences(state: AgentState, evidence_k: int, config: ExtractiveConfig) -> list[list[Chosen]]:
    """Per step, in step order, the sentences it contributes (each sentence once)."""
    taken: set[tuple[int, int]] = set()
    intros: list[list[Chosen]] = [[] for _ in state.steps]
    owns: list[list[Chosen] | None] = [None for _ in state.steps]
    first = owns[0] = _single_shot(state, config)  # the question as asked, answered as single-shot answers it
    taken.update((chosen.source, chosen.start) for chosen in first)
    for step in state.steps[1:]:
        for earlier, entity in _links(state, step):
            own = owns[step.number - 1]
            if own is None:
                own = owns[step.number - 1] = _answer(state, step, Pick(step.search.query, entity), evidence_k, taken)
            avoid = frozenset(state.sources[chosen.source].chunk_id for chosen in own)
            pick = Pick(state.question, entity, avoid)
            intros[earlier.number - 1].extend(_answer(state, earlier, pick, evidence_k, taken)[:1])
    per_step: list[list[Chosen]] = []
    for step, introduced, own in zip(state.steps, intros, owns, strict=True):
        # A later step that introduced an entity contributes that sentence; its own best answer to the same
        # search would be a second, unlinked claim.
        if own is None:
            own = [] if introduced else _answer(state, step, Pick(step.search.query), evidence_k, taken)
        per_step.append([*own, *introduced] if step.number == 1 else [*introduced, *own])
    return per_step


def _single_shot(state: AgentState, config: ExtractiveConfig) -> list[Chosen]:
    first = state.steps[0]
    return [
        Chosen(_union_index(state, first.sources[s.source].chunk_id), s.start, s.text)
        for s in selected_sentences(state.question, first.sources, config)
    ]


def compose_agent_answer(
    state: AgentState, config: ExtractiveConfig | None = None, evidence_k: int = 3, backend: str = "extractive"
) -> DraftAnswer:
    config = config or ExtractiveConfig()
    if len(state.steps) == 1:  # the single-shot answer, over the union (which is step 1's sources)
        return compose_answer(state.question, state.sources, config, backend)
    index_of: dict[int, int] = {}
    snippet_of: dict[int, Chosen] = {}
    parts: list[str] = []
    for sentences in chosen_sentences(state, evidence_k, config):
        for sentence in sentences:
            index = index_of.setdefault(sentence.source, len(index_of) + 1)
            snippet_of.setdefault(sentence.source, sentence)
            parts.append(with_marker(sentence.text, index))
    if not parts:
        return DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend=backend)
    citations = [
        CitationRef(index=index, source=source, snippet=snippet_of[source].text, score=state.sources[source].score)
        for source, index in index_of.items()
    ]
    return DraftAnswer(text=" ".join(parts), citations=citations, backend=backend)

"""The model-free agent's answer: extractive, from the evidence of every step, in the order that links them.

Step 1 (the question as asked) contributes what the single-shot answer would say. Each later step answers its
own search: the best sentence of its best-ranked source that matches the search (retrieval
ranks passages better than sentence matching does), then the sentence of that source covering most of the search
words the first lacks ("The Osaka office occupies two floors... It opened in 2013."). A step that followed a
bridge entity (a name its query shares with an earlier step's sources) answers with a sentence naming the entity,
and the earlier step contributes the sentence that introduced it, so "Project Falcon is led by Dr. Maria Ortiz
[1]. Dr. Maria Ortiz works from the Lisbon office [2]." reads as the chain it is.

Once such a chain is found it leads the answer, and every other sentence must name the question's own entity
("Project Falcon") or an entity of the chain: step 1's single-shot sentences match the question's words, so they
include other projects' leads ("Siobhan Kelly is the project lead."), which next to the chain are competing
claims, not evidence. Without a chain the same holds for what the question names (its entities and years):
asked what caused INC-4408 and INC-4200, the other incidents' root causes step 1 found are dropped, as long
as some sentence comes from a chunk naming one of them. When one intro sentence names two followed entities
("Incident commander: X; also on call: Y"), only the hop that answers more of the question stays. Citations
are numbered by first use and point into `AgentState.sources`, the sources of all steps. One step only: exactly
the single-shot extractive answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.v1.queries_pb2 import ScoredChunk

from ragstream_generate.agent.entities import (
    TOKEN,
    clause_naming,
    coverage_terms,
    find_entities,
    is_year,
    question_content_words,
)
from ragstream_generate.agent.rules_planner import followed_entity
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
    if first is None and pick.naming:  # "The Montreal office occupies two floors." shares only the name
        first = _first_naming(state, step, pick, evidence_k, taken)
    if first is None:
        return []
    taken.add((first.source, first.start))
    rest = _rest(state, first, pick.query, taken)
    if rest is None:
        return [first]
    taken.add((rest.source, rest.start))
    return sorted([first, rest], key=lambda chosen: chosen.start)  # text order within the source


def _links(state: AgentState, step: Step) -> list[tuple[Step, str]]:
    """(earlier step, entity) pairs: names in this step's query that an earlier step's sources contain. The
    model-free planner's reason names the entity it followed ("Austin site manager" opens with "Austin", which
    alone is no name); another planner's query is searched for names."""
    earlier = state.steps[: step.number - 1]
    links = []
    followed = followed_entity(step.search.reason)
    for entity in [followed] if followed else find_entities(step.search.query):
        folded = entity.casefold()
        source_step = next((s for s in earlier if any(folded in c.text.casefold() for c in s.sources)), None)
        if source_step is not None:
            links.append((source_step, entity))
    return links


def _names(chosen: Chosen, entities: list[str]) -> bool:
    folded = chosen.text.casefold()
    return any(entity.casefold() in folded for entity in entities)


@dataclass(frozen=True)
class _Hop:
    entity: str
    own: list[Chosen]  # the hop's sentences (the intro is the chain's sentence naming the entity)


@dataclass
class _Plan:
    """What the answer is made of: the chain (per link, the intro, then the hop it leads to) and the rest."""

    evidence_k: int
    taken: set[tuple[int, int]]  # (source, sentence start) already chosen
    rest: list[Chosen]
    chain: list[Chosen] = field(default_factory=list)
    chain_entities: list[str] = field(default_factory=list)
    hops: list[_Hop] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)  # every entity a step followed, chained or not


def _first_naming(
    state: AgentState, step: Step, pick: Pick, evidence_k: int, taken: set[tuple[int, int]]
) -> Chosen | None:
    """The first sentence naming `pick.naming` in the step's best-ranked sources: a short sentence that covers
    too little of a long search to rank ("The project lead is Kwame Mensah.") may still be the link."""
    assert pick.naming is not None
    for chunk in step.sources[:evidence_k]:
        if chunk.chunk_id in pick.avoid:
            continue
        index = _union_index(state, chunk.chunk_id)
        for start, end in sentence_spans(chunk.text):
            chosen = Chosen(index, start, chunk.text[start:end])
            if (index, start) not in taken and _names(chosen, [pick.naming]):
                return chosen
    return None


def _intro(state: AgentState, earlier: Step, entity: str, own: list[Chosen], plan: _Plan) -> list[Chosen]:
    """The earlier step's sentence that introduced `entity`: none when the chain already names it, a sentence
    the single-shot answer holds (moved to the chain) when it has one, else the earlier step's best such."""
    if any(_names(chosen, [entity]) for chosen in plan.chain):
        return []
    held = next((chosen for chosen in plan.rest if _names(chosen, [entity])), None)
    if held is not None:
        plan.rest.remove(held)
        return [held]
    avoid = frozenset(state.sources[chosen.source].chunk_id for chosen in own)
    pick = Pick(state.question, entity, avoid)
    first = _first(state, earlier, pick, plan.evidence_k, plan.taken) or _first_naming(
        state, earlier, pick, plan.evidence_k, plan.taken
    )
    if first is None:
        return []
    plan.taken.add((first.source, first.start))
    return [first]


def _plan(state: AgentState, evidence_k: int, config: ExtractiveConfig) -> _Plan:
    single = _single_shot(state, config)  # the question as asked, answered as single-shot answers it
    plan = _Plan(evidence_k, {(chosen.source, chosen.start) for chosen in single}, list(single))
    introduced: set[int] = set()  # steps an entity was followed from
    linked: set[int] = set()  # steps that followed one
    for step in state.steps[1:]:
        for earlier, entity in _links(state, step):
            linked.add(step.number)
            plan.followed.append(entity)
            own = _answer(state, step, Pick(step.search.query, entity), evidence_k, plan.taken)
            if not own:  # the hop found nothing naming the entity: no chain through it
                continue
            intro = _intro(state, earlier, entity, own, plan)
            introduced.add(earlier.number)
            plan.chain.extend([*intro, *own])
            plan.chain_entities.append(entity)
            plan.hops.append(_Hop(entity, own))
            break  # one chain per step: a second entity of the same query would repeat the hop
    for step in state.steps[1:]:
        # A step that only introduced an entity, or followed one, has said what it has to say in the chain;
        # its own best answer to the same search would be a second, unlinked claim.
        if step.number not in introduced and step.number not in linked:
            plan.rest.extend(_answer(state, step, Pick(step.search.query), evidence_k, plan.taken))
    _drop_sibling_hops(plan, state.question)
    return plan


def _drop_sibling_hops(plan: _Plan, question: str) -> None:
    """Hops from one intro sentence naming several entities ("Incident commander: Siobhan Kelly; also on call:
    Marta Novak.") are alternatives: the question asks about one of them. The best hop's sentences hold more of
    the question's words that the intro lacks ("Osaka" in "Amara Okafor works from the Osaka office", asked who
    of those on call works from Osaka), or, as many, its entity's clause of the intro holds more ("commander",
    asked which team the commander is in: both hops name a team). The others leave the answer (their office or
    team is a competing claim), with any hop that continued from them; ties stay, as nothing tells them apart."""
    asked = set(coverage_terms(" ".join(question_content_words(question))))
    intros = {id(hop): _intro_of(plan, hop) for hop in plan.hops}
    siblings: dict[Chosen, list[tuple[tuple[int, int], _Hop]]] = {}
    for hop in plan.hops:
        intro = intros[id(hop)]
        if intro is not None:
            lacking = asked - set(coverage_terms(intro.text))
            found = lacking & set(coverage_terms(" ".join(chosen.text for chosen in hop.own)))
            clause = asked & set(coverage_terms(clause_naming(intro.text, hop.entity)))
            siblings.setdefault(intro, []).append(((len(found), len(clause)), hop))
    dropped = {id(hop) for group in siblings.values() for score, hop in group if score < max(s for s, _ in group)}
    for hop in plan.hops:  # in step order: a continuation comes after the hop it continued from
        if any(intros[id(hop)] in other.own for other in plan.hops if id(other) in dropped):
            dropped.add(id(hop))
    for hop in plan.hops:
        if id(hop) in dropped:
            plan.chain = [chosen for chosen in plan.chain if chosen not in hop.own]
            plan.chain_entities.remove(hop.entity)


def _intro_of(plan: _Plan, hop: _Hop) -> Chosen | None:
    """The chain's sentence that introduced the hop's entity: the first naming it, outside the hop itself."""
    return next((chosen for chosen in plan.chain if chosen not in hop.own and _names(chosen, [hop.entity])), None)


def chosen_sentences(state: AgentState, evidence_k: int, config: ExtractiveConfig) -> list[Chosen]:
    """The answer's sentences in order, each once. With a chain found (a step followed an entity an earlier
    step introduced), the chain leads, and any other sentence must come from a chunk about what the question
    names or name an entity of the chain ("Siobhan Kelly is the project lead." from another project's charter
    is a competing claim, not evidence). Without one: step 1's single-shot sentences, then each later step's
    own, in step order, kept by the same test (an entity some step followed counts as named); all of them
    when no sentence passes it (the question names nothing the sources name)."""
    plan = _plan(state, evidence_k, config)
    asked = _named(state.question)
    about = {index for index, chunk in enumerate(state.sources) if _chunk_names(chunk, asked)}

    def kept(wanted: list[str]) -> list[Chosen]:
        return [chosen for chosen in plan.rest if chosen.source in about or _names(chosen, wanted)]

    if plan.chain:
        return [*plan.chain, *kept([*asked, *plan.chain_entities])]
    return kept([*asked, *plan.followed]) or plan.rest


def _named(question: str) -> list[str]:
    """What the question names: its entities and its years ("the 2024 travel policy")."""
    return [*find_entities(question), *(word for word in TOKEN.findall(question) if is_year(word))]


def _chunk_names(chunk: ScoredChunk, entities: list[str]) -> bool:
    """The chunk (its document's title included: "Incident report INC-4408") names one of `entities`."""
    folded = f"{chunk.title}\n{chunk.text}".casefold()
    return any(entity.casefold() in folded for entity in entities)


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
    for sentence in chosen_sentences(state, evidence_k, config):
        index = index_of.setdefault(sentence.source, len(index_of) + 1)  # numbered by first use
        snippet_of.setdefault(sentence.source, sentence)
        parts.append(with_marker(sentence.text, index))
    if not parts:
        return DraftAnswer(text=NO_ANSWER_TEXT, no_answer=True, backend=backend)
    citations = [
        CitationRef(index=index, source=source, snippet=snippet_of[source].text, score=state.sources[source].score)
        for source, index in index_of.items()
    ]
    return DraftAnswer(text=" ".join(parts), citations=citations, backend=backend)

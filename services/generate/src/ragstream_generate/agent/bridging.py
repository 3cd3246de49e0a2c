"""Bridge entities: the names and codes in the evidence that lead to the next hop of a multi-hop question.

"Which office does the lead of Project Falcon work from?" is answered in two hops: step 1 finds "Project
Falcon is led by Dr. Maria Ortiz.", and the next search asks for "Maria Ortiz office work": the bridge
entity plus the question's words that no evidence covers yet. Pure CPU text processing over the project's
one analyzer (`ragstream_common.text_analysis`), so coverage means what retrieval's index means by a match.
Titles ("Dr.", "Ms.") are not part of a name: "Dr. Maria Ortiz" is found as "Maria Ortiz".
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rag.v1.queries_pb2 import ScoredChunk

from ragstream_generate.agent.entities import (
    coverage_terms,
    find_entities,
    mentions_in,
    names_seen_inside,
    question_content_words,
)

# A mention in a sentence unrelated to the question still counts, but well below one next to its terms.
_UNRELATED_MENTION_WEIGHT = 0.25
# A mention whose sentence or chunk names what the question names (the charter of Project Falcon, "Project
# lead: Maria Ortiz."), or an entity the chain followed: a strong sign of the next hop, worth half of sharing
# every word of the question. Binary: which sentence of the chunk holds the name is the writer's choice ("Chen
# Wei, technical writer, Mobile Apps team. Works from the Krakow office ..."), so the question's terms decide.
_NAMED = 0.5


def uncovered_words(question: str, evidence: Sequence[ScoredChunk]) -> list[str]:
    """The question's content words whose stems occur in none of the evidence texts, each once, in order."""
    covered = {term for chunk in evidence for term in coverage_terms(chunk.text)}
    uncovered: list[str] = []
    for word in question_content_words(question):
        stems = coverage_terms(word)
        if stems and not covered.intersection(stems) and word not in uncovered:
            uncovered.append(word)
    return uncovered


@dataclass(frozen=True)
class BridgeEntity:
    text: str
    chunk_id: str  # the chunk of its best-scored mention
    score: float
    # Some mention's sentence shares terms with the question, or its chunk names what the question names ("Main
    # supplier: Bluepeak Systems." in the charter of the project asked about).
    related: bool = False


@dataclass
class _Tally:
    best: BridgeEntity
    count: int
    order: int


def _is_known(terms: set[str], question_terms: set[str], excluded: list[set[str]]) -> bool:
    return terms <= question_terms or any(terms <= known for known in excluded)


@dataclass(frozen=True)
class _TermWeights:
    """The question's terms weighted by how rare they are in the evidence: "office" and "work", in most of the
    chunks of a directory, say little about which name is the bridge; "falcon" says much."""

    weights: dict[str, float]
    generic: frozenset[str]  # in more than half of the chunks (of at least three)

    @classmethod
    def of(cls, asked: set[str], chunk_terms: Sequence[set[str]]) -> _TermWeights:
        count = len(chunk_terms)
        frequency = {term: sum(term in terms for terms in chunk_terms) for term in asked}
        weights = {term: math.log(1 + count / max(found, 1)) for term, found in frequency.items()}
        generic = frozenset(term for term, found in frequency.items() if count >= 3 and 2 * found > count)
        return cls(weights, generic)

    def share(self, shared: set[str]) -> float:
        total = sum(self.weights.values())
        return sum(self.weights[term] for term in shared) / total if total else 0.0


def _naming(chunk_terms: set[str], named: list[set[str]]) -> float:
    """Whether a mention's chunk (its sentences and title) names what the question, or the chain so far, names."""
    return _NAMED if any(name <= chunk_terms for name in named) else 0.0


def bridge_entities(
    question: str, chunks: Sequence[ScoredChunk], exclude: Collection[str] = (), ranks: Sequence[int] | None = None
) -> list[BridgeEntity]:
    """Entities of `chunks` that the question does not name, best bridge first. `exclude`: the entities the run
    has followed already, which also count as named by the question for the next hop (a chain: "Maria Ortiz
    works from the Lisbon office" is tied to the question through Maria Ortiz).

    A mention scores higher in a higher-ranked chunk, in a clause sharing more of the question's terms (rare
    ones in the evidence weigh more), and much higher when its chunk names the question's own entity;
    frequency breaks ties. `ranks`: each chunk's rank in the search that found it (default: its
    position), so the best source of the latest hop counts as much as step 1's best.

    A mention is related (can be a bridge) when it is tied to a named entity, or when its clause shares a term
    that is not generic in the evidence; a sentence sharing only generic terms ("office", "work") counts only
    where no chunk names the question's entity at all. So a top-ranked "Tom Becker works from the Oslo office"
    does not make Tom Becker a bridge for a question about Project Falcon's lead. A clause is its sentence cut at
    ";" (and "|", bullets): asked about an incident's commander, "Incident commander: Siobhan Kelly; also on
    call: Marta Novak." puts Siobhan Kelly beside "commander" and Marta Novak beside nothing."""
    question_terms = set(coverage_terms(question))
    asked = set(coverage_terms(" ".join(question_content_words(question))))
    excluded = [set(coverage_terms(text)) for text in exclude]
    per_chunk = [mentions_in(chunk.text) for chunk in chunks]
    inside = names_seen_inside([mention for mentions in per_chunk for mention in mentions])
    named = [terms for name in find_entities(question) if (terms := set(coverage_terms(name)))] + excluded
    chunk_terms = [set(coverage_terms(chunk.text)) for chunk in chunks]
    term_weights = _TermWeights.of(asked, chunk_terms)
    # A chunk names what its document's title names: "Incident report INC-4408" holds INC-4408 only there.
    titled_terms = [terms | set(coverage_terms(chunk.title)) for chunk, terms in zip(chunks, chunk_terms, strict=True)]
    anchored = any(name <= terms for name in named for terms in titled_terms)  # some chunk names the question's
    ranks = list(ranks) if ranks is not None else list(range(len(chunks)))
    tallies: dict[str, _Tally] = {}
    for position, (chunk, mentions) in enumerate(zip(chunks, per_chunk, strict=True)):
        rank = ranks[position]
        for mention in mentions:
            terms = set(coverage_terms(mention.text))
            if mention.initial_single and mention.text.casefold() not in inside:
                continue
            if not terms or _is_known(terms, question_terms, excluded):
                continue
            shared = (set(coverage_terms(mention.clause)) - terms) & asked
            naming = _naming(titled_terms[position], named)
            score = (_UNRELATED_MENTION_WEIGHT + term_weights.share(shared) + naming) / (1 + rank)
            related = naming > 0 or bool(shared - term_weights.generic) or (bool(shared) and not anchored)
            entity = BridgeEntity(mention.text, chunk.chunk_id, score, related)
            tally = tallies.setdefault(mention.text.casefold(), _Tally(entity, 0, len(tallies)))
            tally.count += 1
            if entity.score > tally.best.score:
                tally.best = BridgeEntity(tally.best.text, entity.chunk_id, entity.score, tally.best.related)
            if entity.related and not tally.best.related:
                tally.best = BridgeEntity(tally.best.text, tally.best.chunk_id, tally.best.score, True)
    # Related entities first: an unrelated one is listed (and scored) but is never the better bridge.
    ranked = sorted(
        tallies.values(), key=lambda tally: (not tally.best.related, -tally.best.score, -tally.count, tally.order)
    )
    return [tally.best for tally in ranked]


def bridge_query(entity: str, question: str, evidence: Sequence[ScoredChunk]) -> str:
    """The entity plus the question's words no evidence covers yet: the next hop's search."""
    entity_terms = set(coverage_terms(entity))
    missing = [
        word for word in uncovered_words(question, evidence) if not entity_terms.issuperset(coverage_terms(word))
    ]
    return " ".join([entity, *missing])

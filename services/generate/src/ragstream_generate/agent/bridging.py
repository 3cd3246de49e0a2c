"""Bridge entities: the names and codes in the evidence that lead to the next hop of a multi-hop question.

"Which office does the lead of Project Falcon work from?" is answered in two hops: step 1 finds "Project
Falcon is led by Dr. Maria Ortiz.", and the next search asks for "Maria Ortiz office work": the bridge
entity plus the question's words that no evidence covers yet. Pure CPU text processing over the project's
one analyzer (`ragstream_common.text_analysis`), so coverage means what retrieval's index means by a match.
Titles ("Dr.", "Ms.") are not part of a name: "Dr. Maria Ortiz" is found as "Maria Ortiz".
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.text_analysis import ENGLISH_ANALYZER, ENGLISH_STOPWORDS

from ragstream_generate.citations import sentence_spans

# Words that shape a question but are not what it asks about (the analyzer's stopwords are Lucene's short
# list, which keeps "which", "does" and "from").
QUESTION_WORDS = frozenset(
    "what which who whom whose where when why how is are was were be been being am do does did done doing has "
    "have had having can could should would shall may might must please tell me my mine i we us our ours you "
    "your yours he she him his her hers its it's they them there here whether about from within during since "
    "until per via across among between toward towards upon also get gets got find show give list know".split()
)
# Irregular forms the stemmer leaves apart ("led" vs "lead"): folded before stemming, so "Project Falcon
# is led by ..." covers the question's "lead".
_IRREGULAR = {
    "led": "lead", "leader": "lead", "owner": "own", "ran": "run", "began": "begin", "begun": "begin",
    "bought": "buy", "brought": "bring", "built": "build", "chose": "choose", "chosen": "choose",
    "found": "find", "gave": "give", "given": "give", "held": "hold", "kept": "keep", "knew": "know",
    "known": "know", "made": "make", "met": "meet", "paid": "pay", "sold": "sell", "sent": "send",
    "spent": "spend", "took": "take", "taken": "take", "told": "tell", "wrote": "write", "written": "write",
    "won": "win", "lost": "lose", "grew": "grow", "grown": "grow", "rose": "rise", "risen": "rise",
    "fell": "fall", "fallen": "fall", "went": "go", "gone": "go", "came": "come", "became": "become",
    "taught": "teach", "thought": "think", "stood": "stand", "understood": "understand",
}  # fmt: skip
_CALENDAR = frozenset(
    "january february march april may june july august september october november december jan feb mar apr "
    "jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday mon tue tues "
    "wed thu thur thurs fri sat sun".split()
)
# Currency codes look like acronyms, but "EUR 180" is an amount, not a name.
_CURRENCIES = frozenset("eur usd gbp chf jpy cny inr aud cad sek nok dkk pln czk".split())
_TITLES = frozenset("dr mr mrs ms mx prof sir dame".split())
# Capitalised at the start of a sentence for grammar's sake, never names.
_FUNCTION_WORDS = (
    ENGLISH_STOPWORDS
    | QUESTION_WORDS
    | frozenset(
        "this those all each every some any both either neither our her his its after before while however also "
        "thus therefore note see yes only most many much more less other another same new".split()
    )
)
_CONNECTORS = frozenset("of de da del van von der den la le du & for".split())
# A word with inner dots, hyphens, slashes or apostrophes stays one token ("FAL-2291", "ISO/IEC", "O'Brien").
TOKEN = re.compile(r"[^\W_]+(?:[-'\u2019./&][^\W_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$")
_YEAR = re.compile(r"(?:19|20)\d\d|FY\d{2}(?:\d{2})?", re.IGNORECASE)
_QUOTED = re.compile(r"[\"\u201c]([^\"\u201c\u201d\n]{2,60})[\"\u201d]")
# Clause separators inside a sentence: "Incident commander: Siobhan Kelly; also on call: Marta Novak." holds
# two facts, and only the clause naming a person says what that person is to the question. Dashes are left
# out: they bracket asides as often as they separate facts ("Maria Ortiz \u2014 the lead \u2014 works from Lisbon").
_CLAUSE_BREAK = re.compile(r";|\s\|\s|\s[\u2022\u00b7]\s")
_MAX_QUOTED_WORDS = 5
# A mention in a sentence unrelated to the question still counts, but well below one next to its terms.
_UNRELATED_MENTION_WEIGHT = 0.25
# A mention whose sentence or chunk names what the question names (the charter of Project Falcon, "Project
# lead: Maria Ortiz."), or an entity the chain followed: a strong sign of the next hop, worth half of sharing
# every word of the question. Binary: which sentence of the chunk holds the name is the writer's choice ("Chen
# Wei, technical writer, Mobile Apps team. Works from the Krakow office ..."), so the question's terms decide.
_NAMED = 0.5


def strip_possessive(word: str) -> str:
    return _POSSESSIVE.sub("", word)


def is_year(word: str) -> bool:
    return _YEAR.fullmatch(word) is not None


def is_code(word: str) -> bool:
    """Identifiers: letters with digits ("FAL-2291"), inner capitals ("iPhone"), acronyms ("ISO", "HR")."""
    has_alpha = any(char.isalpha() for char in word)
    if not has_alpha or word.casefold() in _CALENDAR:
        return False
    if any(char.isdigit() for char in word):
        return True
    letters = [char for char in word if char.isalpha()]
    if len(letters) >= 2 and all(char.isupper() for char in letters):
        return True
    return any(char.isupper() for char in word[1:]) and any(char.islower() for char in word)


def is_name_word(word: str) -> bool:
    """A word that can be (part of) a name: capitalised or code-like, not a month, weekday or function word."""
    word = strip_possessive(word)
    folded = word.casefold()
    if folded in _CALENDAR or folded in _CURRENCIES or (folded in _FUNCTION_WORDS and not is_code(word)):
        return False
    return word[:1].isupper() or is_code(word)


def coverage_terms(text: str) -> list[str]:
    """The analyzer's stemmed terms, with irregular forms folded first ("led" -> "lead")."""
    return ENGLISH_ANALYZER.terms(" ".join(_IRREGULAR.get(word, word) for word in ENGLISH_ANALYZER.words(text)))


def question_content_words(question: str) -> list[str]:
    """The question's words that say what it asks about (unstemmed, case-folded, question order, repeats kept)."""
    return [word for word in ENGLISH_ANALYZER.words(question) if word not in QUESTION_WORDS]


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
class _Mention:
    text: str
    clause: str  # the clause of its sentence that holds it: what the mention is compared with the question by
    initial_single: bool  # one plain capitalised word opening its sentence: a name only if seen elsewhere


def clause_naming(sentence: str, name: str) -> str:
    """The clause of `sentence` that names `name` (case-insensitively); the whole sentence if none does."""
    found = sentence.casefold().find(name.casefold())
    return _clause_at(sentence, found) if found >= 0 else sentence


def _clause_at(sentence: str, offset: int) -> str:
    """The clause of `sentence` holding `offset`: the sentence cut at its clause separators."""
    start = 0
    for separator in _CLAUSE_BREAK.finditer(sentence):
        if separator.start() >= offset:
            return sentence[start : separator.start()].strip()
        start = separator.end()
    return sentence[start:].strip()


def _spaced(sentence: str, left: re.Match[str], right: re.Match[str]) -> bool:
    gap = sentence[left.end() : right.start()]
    return gap.isspace() and "\n" not in gap


def _joins(sentence: str, left: re.Match[str], right: re.Match[str]) -> bool:
    previous = left.group()
    if _POSSESSIVE.search(previous):  # "Falcon's budget": the name ended
        return False
    after_title = previous.casefold() in _TITLES and sentence[left.end() : right.start()].strip() == "."
    if not (_spaced(sentence, left, right) or after_title):
        return False
    following = right.group()
    if following.isdigit():  # "SKU 4471", "Building 7"; a year joins an acronym only ("ISO 2015")
        return not is_year(following) or is_code(previous)
    return is_name_word(following)


def _joins_over_connector(sentence: str, tokens: list[re.Match[str]], end: int) -> bool:
    """ "Head of Engineering", "Ministry of Finance": a lower-case connector between two capitalised words."""
    if end + 2 >= len(tokens) or tokens[end + 1].group().casefold() not in _CONNECTORS:
        return False
    left, connector, right = tokens[end], tokens[end + 1], tokens[end + 2]
    return (
        not _POSSESSIVE.search(left.group())
        and _spaced(sentence, left, connector)
        and _spaced(sentence, connector, right)
        and right.group()[:1].isupper()
        and is_name_word(right.group())
    )


def _run_end(sentence: str, tokens: list[re.Match[str]], start: int) -> int:
    end = start
    while end + 1 < len(tokens):
        if _joins(sentence, tokens[end], tokens[end + 1]):
            end += 1
        elif _joins_over_connector(sentence, tokens, end):
            end += 2
        else:
            break
    return end


def _run_mentions(sentence: str) -> list[_Mention]:
    tokens = list(TOKEN.finditer(sentence))
    mentions: list[_Mention] = []
    index = 0
    while index < len(tokens):
        if not is_name_word(tokens[index].group()):
            index += 1
            continue
        end = _run_end(sentence, tokens, index)
        first = index
        while first <= end and tokens[first].group().casefold() in _TITLES:
            first += 1
        if first <= end:
            text = strip_possessive(sentence[tokens[first].start() : tokens[end].end()])
            single_plain = first == end and not is_code(text)
            clause = _clause_at(sentence, tokens[first].start())
            mentions.append(_Mention(text, clause, single_plain and index == 0))
        index = end + 1
    return mentions


def _quoted_mentions(sentence: str) -> list[_Mention]:
    mentions = []
    for match in _QUOTED.finditer(sentence):
        inner = match.group(1).strip()
        if inner and len(inner.split()) <= _MAX_QUOTED_WORDS and inner[-1] not in ".!?" and TOKEN.search(inner):
            mentions.append(_Mention(inner, _clause_at(sentence, match.start()), False))
    return mentions


def _mentions(text: str) -> list[_Mention]:
    mentions: list[_Mention] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        mentions.extend(_run_mentions(sentence))
        mentions.extend(_quoted_mentions(sentence))
    return mentions


def _names_seen_inside(mentions: Sequence[_Mention]) -> set[str]:
    return {mention.text.casefold() for mention in mentions if not mention.initial_single}


def find_entities(text: str) -> list[str]:
    """Names and codes in `text`, each once (case-insensitively), in order of first mention."""
    mentions = _mentions(text)
    inside = _names_seen_inside(mentions)
    found: dict[str, str] = {}
    for mention in mentions:
        if not mention.initial_single or mention.text.casefold() in inside:
            found.setdefault(mention.text.casefold(), mention.text)
    return list(found.values())


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
    per_chunk = [_mentions(chunk.text) for chunk in chunks]
    inside = _names_seen_inside([mention for mentions in per_chunk for mention in mentions])
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

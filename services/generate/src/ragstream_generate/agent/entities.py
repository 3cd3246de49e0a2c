"""Names and codes in text, and the question's own words: what the agent's planner links hops by.

Pure CPU text processing over the project's one analyzer (`ragstream_common.text_analysis`), so coverage means
what retrieval's index means by a match. Titles ("Dr.", "Ms.") are not part of a name: "Dr. Maria Ortiz" is
found as "Maria Ortiz". A name is compared with a question by the clause of its sentence that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Mention:
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


def _run_mentions(sentence: str) -> list[Mention]:
    tokens = list(TOKEN.finditer(sentence))
    mentions: list[Mention] = []
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
            mentions.append(Mention(text, clause, single_plain and index == 0))
        index = end + 1
    return mentions


def _quoted_mentions(sentence: str) -> list[Mention]:
    mentions = []
    for match in _QUOTED.finditer(sentence):
        inner = match.group(1).strip()
        if inner and len(inner.split()) <= _MAX_QUOTED_WORDS and inner[-1] not in ".!?" and TOKEN.search(inner):
            mentions.append(Mention(inner, _clause_at(sentence, match.start()), False))
    return mentions


def mentions_in(text: str) -> list[Mention]:
    mentions: list[Mention] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        mentions.extend(_run_mentions(sentence))
        mentions.extend(_quoted_mentions(sentence))
    return mentions


def names_seen_inside(mentions: Sequence[Mention]) -> set[str]:
    return {mention.text.casefold() for mention in mentions if not mention.initial_single}


def find_entities(text: str) -> list[str]:
    """Names and codes in `text`, each once (case-insensitively), in order of first mention."""
    mentions = mentions_in(text)
    inside = names_seen_inside(mentions)
    found: dict[str, str] = {}
    for mention in mentions:
        if not mention.initial_single or mention.text.casefold() in inside:
            found.setdefault(mention.text.casefold(), mention.text)
    return list(found.values())

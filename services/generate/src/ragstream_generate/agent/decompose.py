"""Compound questions -> the simple searches that answer their parts (model-free, pure CPU).

Four shapes are split: two questions joined by "and" ("Who leads Project Falcon and where is Project Heron
based?"), comparisons ("... compared with 2024", "versus", "than", "relative to", "differ from"),
"between X and Y", and lists or choices of names, years or codes ("of Project Falcon and Project Heron",
"Project Falcon or Project Heron"). Noun phrases such as "terms and conditions" are never split: both sides
of a list must carry a name, code or number. Except for whole clauses, a sub-query keeps the question's
content words only: "did", "the", "compared with", "raise or lower" go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragstream_common.text_analysis import ENGLISH_STOPWORDS

from ragstream_generate.agent.bridging import QUESTION_WORDS, TOKEN, is_code, is_name_word, is_year, strip_possessive

MAX_SUB_QUERIES = 4


@dataclass(frozen=True)
class SubQuery:
    query: str
    reason: str


# Words that only carry the comparison itself; dropped from a comparison's sub-queries.
_COMPARISON_WORDS = frozenset(
    "compare compared compares comparing comparison versus vs differ differs differed difference differences "
    "different relative opposed than raise raised lower lowered increase increased decrease decreased higher "
    "more less fewer greater change changed changes rise rose fall fell go went up down same similar "
    "between".split()
)
_FILLER = ENGLISH_STOPWORDS | QUESTION_WORDS | frozenset("those one ones much many".split())
# Marks a comparison; what follows it (to the end of the clause) is the compared item.
_COMPARISON = re.compile(
    r"\b(?:compared\s+(?:with|to|against)|in\s+comparison\s+(?:with|to)|compare[sd]?\s+(?:with|to|against)"
    r"|relative\s+to|as\s+opposed\s+to|differ(?:s|ed)?\s+from|different\s+from|than|versus|vs\.?)(?=\s)",
    re.IGNORECASE,
)
_THRESHOLD = re.compile(r"\b(?:more|less|fewer|greater|higher|lower|over|under)\s+than\s+\$?\d", re.IGNORECASE)
_NOT_A_COMPARISON = re.compile(r"\b(?:rather|other)\s+than\b", re.IGNORECASE)
_CUE = re.compile(r"\b(?:compar\w*|differ\w*|versus|vs|than|change[sd]?|relative)\b", re.IGNORECASE)
_BETWEEN = re.compile(
    r"\bbetween\s+(?P<x>.+?)\s+(?:and|&)\s+(?P<y>.+?)"
    r"(?=\s*(?:[,;?]|$)|\s+(?:in|for|at|on|during|from|since|after|before|under|regarding)\s)",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"\s*(?:,\s*and|;\s*and|;|\band)\s+", re.IGNORECASE)
_TIME_WORDS = frozenset("year years quarter quarters month months week weeks last previous prior next".split())
_WH_WORDS = frozenset("what which who whom whose where when why how".split())
_AUX_WORDS = frozenset("is are was were does do did has have had can could should would will".split())
_CLAUSE_SUBJECT_STARTS = frozenset("the a an this that these those it they there its their our".split())
_LIST_GAPS = frozenset("the a an in for at of on during".split())
# Pairs that name one thing: a list of two capitalised words is not split when it is one of these.
_BINOMIALS = frozenset({
    ("research", "development"), ("terms", "conditions"), ("mergers", "acquisitions"), ("health", "safety"),
    ("profit", "loss"), ("sales", "marketing"), ("learning", "development"), ("diversity", "inclusion"),
    ("operations", "maintenance"), ("policies", "procedures"), ("rules", "regulations"), ("pros", "cons"),
    ("questions", "answers"), ("arts", "sciences"), ("compliance", "risk"), ("training", "development"),
})  # fmt: skip


def _normalised(text: str) -> str:
    return " ".join(text.casefold().strip(" ?!.").split())


def _content_words(text: str, comparison: bool) -> list[str]:
    drop = _FILLER | _COMPARISON_WORDS if comparison else _FILLER
    words = (strip_possessive(match.group()) for match in TOKEN.finditer(text))
    return [word for word in words if word.casefold() not in drop]


def _is_listable(words: list[str], index: int, first_word_counts: bool) -> bool:
    """A list item's word: a name or code (the question's first word only if `first_word_counts`), a number,
    or a connector between two names ("Head of Sales")."""
    word = strip_possessive(words[index])
    if word.casefold() in ("of", "&") and 0 < index < len(words) - 1:
        return is_name_word(words[index - 1]) and is_name_word(words[index + 1])
    return any(char.isdigit() for char in word) or ((index > 0 or first_word_counts) and is_name_word(word))


# -- clauses ------------------------------------------------------------------------------------------------
def _starts_clause(rest: str) -> bool:
    words = [match.group().casefold() for match in TOKEN.finditer(rest)][:2]
    if not words:
        return False
    if words[0] in _WH_WORDS:
        return True
    # "and is Project Heron ...", "and does the Munich office ...", but not "and are based in Berlin".
    return (
        words[0] in _AUX_WORDS
        and len(words) > 1
        and (words[1] in _CLAUSE_SUBJECT_STARTS or is_name_word(rest.split()[1]))
    )


def _split_clauses(text: str) -> list[str]:
    parts, start = [], 0
    for match in _CLAUSE_BREAK.finditer(text):
        if _starts_clause(text[match.end() :]) and len(text[start : match.start()].split()) >= 2:
            parts.append(text[start : match.start()].strip(" ,;"))
            start = match.end()
    if not parts:
        return []
    return [*parts, text[start:].strip(" ,;")]


# -- lists and choices of names -----------------------------------------------------------------------------
def _list_items(text: str, first_word_counts: bool = False) -> tuple[int, int, list[str]] | None:
    """The first list of two or more names/numbers joined by "and", "or", "&" or commas: its span and items."""
    tokens = list(TOKEN.finditer(text)) + list(re.finditer(r",", text))
    tokens.sort(key=lambda match: match.start())
    words = [token.group() for token in tokens]
    for joint, word in enumerate(words):
        if word.casefold() not in ("and", "or", "&"):
            continue
        left_end = joint - 1 if joint > 0 and words[joint - 1] == "," else joint
        right_start = joint + 1
        while right_start < len(words) and words[right_start].casefold() in _LIST_GAPS:
            right_start += 1
        right_end = right_start
        while right_end < len(words) and _is_listable(words, right_end, first_word_counts):
            right_end += 1
        items = [(right_start, right_end)]
        end = left_end
        while end > 0:
            start = end
            while start > 0 and _is_listable(words, start - 1, first_word_counts):
                start -= 1
            if start == end:
                break
            items.insert(0, (start, end))
            if start < 2 or words[start - 1] != ",":
                break
            end = start - 1
        if len(items) < 2 or any(start == end for start, end in items):
            continue
        spans = [(tokens[start].start(), tokens[end - 1].end()) for start, end in items]
        names = [text[start:end] for start, end in spans]
        if len(names) == 2 and (names[0].casefold(), names[1].casefold()) in _BINOMIALS:
            continue
        first_index = items[0][0]
        if first_index > 0 and words[first_index - 1].casefold() == "between" and all(_is_count(n) for n in names):
            continue  # "between 10 and 20 employees": a range
        return spans[0][0], spans[-1][1], names
    return None


def _split_list(text: str) -> list[SubQuery]:
    found = _list_items(text)
    if found is None:
        return []
    start, end, names = found
    comparison = _CUE.search(text) is not None
    reason = "comparison: one side" if comparison else "part of the question"
    return [
        SubQuery(" ".join(_content_words(text[:start] + name + text[end:], comparison)), f"{reason} ({name})")
        for name in names
    ]


def _is_count(text: str) -> bool:
    return text.isdigit() and not is_year(text)


# -- comparisons --------------------------------------------------------------------------------------------
def _comparison_marker(text: str) -> re.Match[str] | None:
    for match in _COMPARISON.finditer(text):
        if match.group().casefold() == "than":
            if any(m.start() <= match.start() < m.end() for m in _THRESHOLD.finditer(text)):
                continue
            if any(m.start() <= match.start() < m.end() for m in _NOT_A_COMPARISON.finditer(text)):
                continue
        return match
    return None


def _kind(word: str) -> str:
    if is_year(word):
        return "year"
    if word.isdigit():
        return "number"
    return "name" if word[:1].isupper() or is_code(word) else "other"


def _replace_same_kind(base: list[str], item: list[str]) -> list[str]:
    """The base with its first item of the compared item's kind replaced (year for year, name for name);
    with none of that kind, the item is appended. Item words the base has already are not repeated."""
    kinds = [_kind(word) for word in item]
    kind = next((k for k in ("year", "name", "number") if k in kinds), "other")
    folded = {word.casefold() for word in item}
    if kind == "other" and len(item) >= 2 and not folded & ({w.casefold() for w in base} | _TIME_WORDS):
        return item  # "the gym allowance": a thing of its own; "last year" is a variant of the base
    same = [index for index, word in enumerate(base) if _kind(word) == kind]
    if kind == "other" or not same:
        return base + [word for word in item if word.casefold() not in {w.casefold() for w in base}]
    start = end = same[0]
    while end + 1 < len(base) and _kind(base[end + 1]) == kind:
        end += 1
    replacement = [word for word in item if _kind(word) == kind]
    replaced = base[:start] + replacement + base[end + 1 :]
    return replaced + [word for word in item if word.casefold() not in {w.casefold() for w in replaced}]


def _split_comparison(text: str) -> list[SubQuery]:
    marker = _comparison_marker(text)
    if marker is None:
        return []
    tail = text[marker.end() :]
    clause_end = re.search(r"[,;]", tail)
    compared, rest = (tail[: clause_end.start()], tail[clause_end.end() :]) if clause_end else (tail, "")
    base = _content_words(text[: marker.start()] + " " + rest, comparison=True)
    found = _list_items(compared, first_word_counts=True)
    items = found[2] if found else [compared]
    sides = [SubQuery(" ".join(base), "comparison: one side")]
    for item in items:
        item_words = _content_words(item, comparison=True)
        if item_words:
            side = _replace_same_kind(base, item_words)
            sides.append(SubQuery(" ".join(side), f"comparison: the other side ({' '.join(item_words)})"))
    return sides


def _split_between(text: str) -> list[SubQuery]:
    match = _BETWEEN.search(text)
    if match is None:
        return []
    first, second = (_content_words(match.group(side), comparison=True) for side in ("x", "y"))
    if not first or not second:
        return []
    named = any(_kind(word) != "other" for word in first + second)
    if (_is_count(first[0]) and _is_count(second[0])) or not (named or _CUE.search(text)):
        return []  # "between 10 and 20 employees" is a range; "between work and life" is not two things
    if len(first) == 1 and len(second) > 1:
        first += second[1:]  # "the Berlin and Munich offices": both are offices
    before, after = text[: match.start()], text[match.end() :]
    return [
        SubQuery(
            " ".join(_content_words(f"{before} {' '.join(side)} {after}", comparison=True)),
            f"comparison: one side ({' '.join(side)})",
        )
        for side in (first, second)
    ]


_FROM_TO = re.compile(r"\bfrom\s+(?P<x>\S+)\s+to\s+(?P<y>\S+)", re.IGNORECASE)
_PHRASE_LEAD = frozenset("in for at on of the a an".split())
_ANAPHORS = frozenset({"one", "ones"})


def _split_from_to(text: str) -> list[SubQuery]:
    """ "How did the meal allowance change from 2023 to 2024": one search per year (or name)."""
    match = _FROM_TO.search(text)
    if match is None or _kind(match.group("x")) == "other" or _kind(match.group("x")) != _kind(match.group("y")):
        return []
    rest = _content_words(text[: match.start()] + " " + text[match.end() :], comparison=True)
    return [
        SubQuery(" ".join([*rest, match.group(side)]), f"comparison: one side ({match.group(side)})")
        for side in ("x", "y")
    ]


def _phrase(words: list[str]) -> list[str]:
    while words and words[0].casefold() in _PHRASE_LEAD:
        words = words[1:]
    return words


def _split_choice(text: str) -> list[SubQuery]:
    """ "the Krakow office or the Lisbon office", "in the 2025 policy or in the 2024 one", "the lead of Project
    Beacon or the lead of Project Orchid": two parallel phrases; one search per phrase. The left phrase is found
    by the right one's first or last word ("one" stands for the left phrase's last word)."""
    joint = list(re.finditer(r"\s+or\s+", text, re.IGNORECASE))
    if not joint:
        return []
    left_text, right_text = text[: joint[-1].start()], text[joint[-1].end() :]
    right = _phrase([m.group() for m in TOKEN.finditer(re.split(r"[,;:?]", right_text)[0])])
    left_tokens = [m.group() for m in TOKEN.finditer(re.split(r"[,;:]", left_text)[-1])]
    if not right or len(right) > 6 or len(left_tokens) < 2:
        return []
    head = right[-1].casefold()
    if head in _ANAPHORS:
        right, head = right[:-1], ""
    folded = [word.casefold() for word in left_tokens]
    end = len(left_tokens)
    if head and head in folded:
        end = len(folded) - folded[::-1].index(head)
    elif right[0].casefold() in folded:
        start = len(folded) - folded[::-1].index(right[0].casefold())
        end = min(len(left_tokens), start - 1 + len(right))
    start = end - 1
    while start > 0 and left_tokens[start - 1].casefold() not in _PHRASE_LEAD and end - start < len(right) + 2:
        start -= 1
    left = _phrase(left_tokens[start:end])
    if not left or [w.casefold() for w in left] == [w.casefold() for w in right]:
        return []
    if not head:  # "the 2024 one": the left phrase's noun
        right = [*right, *left[len(right) :]] if len(left) > len(right) else right
    outer = _content_words(left_text[: left_text.rfind(left_tokens[start])] if start else "", comparison=True)
    after = _content_words(re.split(r"[?]", right_text)[0][len(re.split(r"[,;:?]", right_text)[0]) :], True)
    left, right = _content_words(" ".join(left), True), _content_words(" ".join(right), True)
    if not left or not right or right == ["not"]:
        return []  # "... or not" asks one thing
    sides = [_squeezed([*outer, *phrase, *after]) for phrase in (left, right)]
    return [
        SubQuery(" ".join(side), f"comparison: one side ({' '.join(phrase)})")
        for side, phrase in zip(sides, (left, right), strict=True)
    ]


def _squeezed(words: list[str]) -> list[str]:
    """Words without immediate repeats ("lead lead of ...": the phrase repeats the word before it)."""
    return [word for index, word in enumerate(words) if index == 0 or word.casefold() != words[index - 1].casefold()]


def _distinct(parts: list[SubQuery], question: str) -> list[SubQuery]:
    seen = {_normalised(question)}
    kept: list[SubQuery] = []
    for part in parts:
        key = _normalised(part.query)
        if key and key not in seen:
            seen.add(key)
            kept.append(part)
    return kept[:MAX_SUB_QUERIES] if len(kept) >= 2 else []


def _split_simple(text: str) -> list[SubQuery]:
    for split in (_split_comparison, _split_between, _split_list, _split_from_to, _split_choice):
        parts = split(text)
        if parts:
            return parts
    return []


def decompose(question: str) -> list[SubQuery]:
    """The sub-queries of a compound question (at most four, each distinct), or [] when it is not compound."""
    text = " ".join(question.split()).strip(" ?!.")
    clauses = _split_clauses(text)
    if not clauses:
        return _distinct(_split_simple(text), question)
    parts: list[SubQuery] = []
    for clause in clauses:
        parts.extend(_distinct(_split_simple(clause), clause) or [SubQuery(clause, "part of the question")])
    return _distinct(parts, question)

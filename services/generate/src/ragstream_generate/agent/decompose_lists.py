"""Compound questions, part two: lists and choices of names, and parallel phrases -> one sub-query per item.

"of Project Falcon and Project Heron", "Project Falcon or Project Heron", "from 2023 to 2024", "the Krakow office
or the Lisbon office". Also the pieces agent/decompose.py shares with it: SubQuery, the content words a sub-query
keeps, and the kind of a word (year, number, name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragstream_common.text_analysis import ENGLISH_STOPWORDS

from ragstream_generate.agent.entities import QUESTION_WORDS, TOKEN, is_code, is_name_word, is_year, strip_possessive


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
# A word that makes a question a comparison.
CUE = re.compile(r"\b(?:compar\w*|differ\w*|versus|vs|than|change[sd]?|relative)\b", re.IGNORECASE)
_LIST_GAPS = frozenset("the a an in for at of on during".split())
# Pairs that name one thing: a list of two capitalised words is not split when it is one of these.
_BINOMIALS = frozenset({
    ("research", "development"), ("terms", "conditions"), ("mergers", "acquisitions"), ("health", "safety"),
    ("profit", "loss"), ("sales", "marketing"), ("learning", "development"), ("diversity", "inclusion"),
    ("operations", "maintenance"), ("policies", "procedures"), ("rules", "regulations"), ("pros", "cons"),
    ("questions", "answers"), ("arts", "sciences"), ("compliance", "risk"), ("training", "development"),
})  # fmt: skip
_FROM_TO = re.compile(r"\bfrom\s+(?P<x>\S+)\s+to\s+(?P<y>\S+)", re.IGNORECASE)
_PHRASE_LEAD = frozenset("in for at on of the a an".split())
_ANAPHORS = frozenset({"one", "ones"})


def content_words(text: str, comparison: bool) -> list[str]:
    drop = _FILLER | _COMPARISON_WORDS if comparison else _FILLER
    words = (strip_possessive(match.group()) for match in TOKEN.finditer(text))
    return [word for word in words if word.casefold() not in drop]


def word_kind(word: str) -> str:
    if is_year(word):
        return "year"
    if word.isdigit():
        return "number"
    return "name" if word[:1].isupper() or is_code(word) else "other"


def is_count(text: str) -> bool:
    return text.isdigit() and not is_year(text)


def _is_listable(words: list[str], index: int, first_word_counts: bool) -> bool:
    """A list item's word: a name or code (the question's first word only if `first_word_counts`), a number,
    or a connector between two names ("Head of Sales")."""
    word = strip_possessive(words[index])
    if word.casefold() in ("of", "&") and 0 < index < len(words) - 1:
        return is_name_word(words[index - 1]) and is_name_word(words[index + 1])
    return any(char.isdigit() for char in word) or ((index > 0 or first_word_counts) and is_name_word(word))


def list_items(text: str, first_word_counts: bool = False) -> tuple[int, int, list[str]] | None:
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
        if first_index > 0 and words[first_index - 1].casefold() == "between" and all(is_count(n) for n in names):
            continue  # "between 10 and 20 employees": a range
        return spans[0][0], spans[-1][1], names
    return None


def split_list(text: str) -> list[SubQuery]:
    found = list_items(text)
    if found is None:
        return []
    start, end, names = found
    comparison = CUE.search(text) is not None
    reason = "comparison: one side" if comparison else "part of the question"
    return [
        SubQuery(" ".join(content_words(text[:start] + name + text[end:], comparison)), f"{reason} ({name})")
        for name in names
    ]


def split_from_to(text: str) -> list[SubQuery]:
    """ "How did the meal allowance change from 2023 to 2024": one search per year (or name)."""
    match = _FROM_TO.search(text)
    if match is None:
        return []
    first_kind = word_kind(match.group("x"))
    if first_kind == "other" or first_kind != word_kind(match.group("y")):
        return []
    rest = content_words(text[: match.start()] + " " + text[match.end() :], comparison=True)
    return [
        SubQuery(" ".join([*rest, match.group(side)]), f"comparison: one side ({match.group(side)})")
        for side in ("x", "y")
    ]


def _phrase(words: list[str]) -> list[str]:
    while words and words[0].casefold() in _PHRASE_LEAD:
        words = words[1:]
    return words


def split_choice(text: str) -> list[SubQuery]:
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
    outer = content_words(left_text[: left_text.rfind(left_tokens[start])] if start else "", comparison=True)
    after = content_words(re.split(r"[?]", right_text)[0][len(re.split(r"[,;:?]", right_text)[0]) :], True)
    left, right = content_words(" ".join(left), True), content_words(" ".join(right), True)
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


__all__ = [
    "CUE",
    "SubQuery",
    "content_words",
    "is_count",
    "list_items",
    "split_choice",
    "split_from_to",
    "split_list",
    "word_kind",
]

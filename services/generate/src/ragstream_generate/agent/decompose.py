"""Compound questions -> the simple searches that answer their parts (model-free, pure CPU).

Four shapes are split: two questions joined by "and" ("Who leads Project Falcon and where is Project Heron
based?"), comparisons ("... compared with 2024", "versus", "than", "relative to", "differ from"),
"between X and Y", and lists or choices of names, years or codes ("of Project Falcon and Project Heron",
"Project Falcon or Project Heron"). Noun phrases such as "terms and conditions" are never split: both sides
of a list must carry a name, code or number. Except for whole clauses, a sub-query keeps the question's
content words only: "did", "the", "compared with", "raise or lower" go. Lists, choices and "from X to Y" are
split in agent/decompose_lists.py.
"""

from __future__ import annotations

import re

from ragstream_generate.agent.decompose_lists import (
    CUE,
    SubQuery,
    content_words,
    is_count,
    list_items,
    split_choice,
    split_from_to,
    split_list,
    word_kind,
)
from ragstream_generate.agent.entities import TOKEN, is_name_word

MAX_SUB_QUERIES = 4

# Marks a comparison; what follows it (to the end of the clause) is the compared item.
_COMPARISON = re.compile(
    r"\b(?:compared\s+(?:with|to|against)|in\s+comparison\s+(?:with|to)|compare[sd]?\s+(?:with|to|against)"
    r"|relative\s+to|as\s+opposed\s+to|differ(?:s|ed)?\s+from|different\s+from|than|versus|vs\.?)(?=\s)",
    re.IGNORECASE,
)
_THRESHOLD = re.compile(r"\b(?:more|less|fewer|greater|higher|lower|over|under)\s+than\s+\$?\d", re.IGNORECASE)
_NOT_A_COMPARISON = re.compile(r"\b(?:rather|other)\s+than\b", re.IGNORECASE)
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


def _normalised(text: str) -> str:
    return " ".join(text.casefold().strip(" ?!.").split())


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


def _replace_same_kind(base: list[str], item: list[str]) -> list[str]:
    """The base with its first item of the compared item's kind replaced (year for year, name for name);
    with none of that kind, the item is appended. Item words the base has already are not repeated."""
    kinds = [word_kind(word) for word in item]
    kind = next((k for k in ("year", "name", "number") if k in kinds), "other")
    folded = {word.casefold() for word in item}
    if kind == "other" and len(item) >= 2 and not folded & ({w.casefold() for w in base} | _TIME_WORDS):
        return item  # "the gym allowance": a thing of its own; "last year" is a variant of the base
    same = [index for index, word in enumerate(base) if word_kind(word) == kind]
    if kind == "other" or not same:
        return base + [word for word in item if word.casefold() not in {w.casefold() for w in base}]
    start = end = same[0]
    while end + 1 < len(base) and word_kind(base[end + 1]) == kind:
        end += 1
    replacement = [word for word in item if word_kind(word) == kind]
    replaced = base[:start] + replacement + base[end + 1 :]
    return replaced + [word for word in item if word.casefold() not in {w.casefold() for w in replaced}]


def _split_comparison(text: str) -> list[SubQuery]:
    marker = _comparison_marker(text)
    if marker is None:
        return []
    tail = text[marker.end() :]
    clause_end = re.search(r"[,;]", tail)
    compared, rest = (tail[: clause_end.start()], tail[clause_end.end() :]) if clause_end else (tail, "")
    base = content_words(text[: marker.start()] + " " + rest, comparison=True)
    found = list_items(compared, first_word_counts=True)
    items = found[2] if found else [compared]
    sides = [SubQuery(" ".join(base), "comparison: one side")]
    for item in items:
        item_words = content_words(item, comparison=True)
        if item_words:
            side = _replace_same_kind(base, item_words)
            sides.append(SubQuery(" ".join(side), f"comparison: the other side ({' '.join(item_words)})"))
    return sides


def _split_between(text: str) -> list[SubQuery]:
    match = _BETWEEN.search(text)
    if match is None:
        return []
    first, second = (content_words(match.group(side), comparison=True) for side in ("x", "y"))
    if not first or not second:
        return []
    named = any(word_kind(word) != "other" for word in first + second)
    if (is_count(first[0]) and is_count(second[0])) or not (named or CUE.search(text)):
        return []  # "between 10 and 20 employees" is a range; "between work and life" is not two things
    if len(first) == 1 and len(second) > 1:
        first += second[1:]  # "the Berlin and Munich offices": both are offices
    before, after = text[: match.start()], text[match.end() :]
    return [
        SubQuery(
            " ".join(content_words(f"{before} {' '.join(side)} {after}", comparison=True)),
            f"comparison: one side ({' '.join(side)})",
        )
        for side in (first, second)
    ]


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
    for split in (_split_comparison, _split_between, split_list, split_from_to, split_choice):
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


__all__ = ["MAX_SUB_QUERIES", "SubQuery", "decompose"]

"""Sentence spans, content terms and [n] citation markers, shared by the answer backends.

Content terms come from the project's one analyzer (`ragstream_common.text_analysis`), so a sentence
matches a question exactly as retrieval matched the chunk: same stopwords, normalisation and stemming.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ragstream_common.text_analysis import ENGLISH_ANALYZER

# Words before a period that do not end a sentence ("e.g. this", "Dr. Smith").
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr prof inc ltd co corp jr sr st no nos fig figs approx dept est "
    "u.s u.k a.m p.m cf al ca resp viz sec ch vol pp ed eds rev gen col "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# A sentence needs at least one letter or digit ("---" or "*" alone is not one).
_WORD_CHAR = re.compile(r"[^\W_]")
# Terminal punctuation (plus closing quotes/brackets) followed by whitespace: a candidate boundary.
_TERMINAL = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_LINE_BREAK = re.compile(r"\n")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*\u2022]|\d{1,3}[.)]|#{1,6})[ \t]")
_LEADING_MARKUP = re.compile(r"(?:#{1,6}|[-*\u2022]|\d{1,3}[.)])[ \t]+")
_HEADING_MAX_CHARS = 80
_LAST_WORD = re.compile(r"[(\"'\u201c\u2018\[]*([^\s(\"'\u201c\u2018\[]*)$")
_NEXT_CHAR = re.compile(r"\s*(\S)")

# "[1]", "[1, 2]", "[1; 3]", "[2-4]"; adjacent groups ("[1][2]") match one by one.
MARKER_GROUP = re.compile(r"\[\s*(\d{1,3}(?:\s*(?:[,;]|[-\u2013])\s*\d{1,3})*)\s*\]")
_MARKER_ITEM = re.compile(r"(\d{1,3})(?:\s*[-\u2013]\s*(\d{1,3}))?")
_LEADING_MARKERS = re.compile(r"(?:\s*" + MARKER_GROUP.pattern + r")+")
# What a marker group looks like while it is still arriving: "[", then only the characters a group may hold.
_MARKER_PREFIX = re.compile(r"\s*\[[\d\s,;\-\u2013]*")
_MARKER_COMPLETE = re.compile(_MARKER_PREFIX.pattern + r"\]")
_MARKER_HOLD_MAX = 64  # longer than any real group: let it through as text
_CLOSING_PUNCTUATION = frozenset(".,;:!?)]\u201d\u2019")


def content_terms(text: str) -> list[str]:
    """The terms of `text` as retrieval indexes them (the shared analyzer: stemmed, stopwords removed)."""
    return ENGLISH_ANALYZER.terms(text)


def _ends_sentence(text: str, punct_start: int, punct_end: int) -> bool:
    if text[punct_start] == ".":
        word = _LAST_WORD.search(text, max(0, punct_start - 24), punct_start)
        token = word.group(1).lower() if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            return False
    following = _NEXT_CHAR.match(text, punct_end)
    # A lower-case continuation means the period was not a sentence end ("approx. five").
    return not following or not following.group(1).islower()


def _ends_line_block(text: str, newline: int) -> bool:
    """Single newline: a boundary after a heading-like line, a finished line, or before a list item."""
    line_start = text.rfind("\n", 0, newline) + 1
    line = text[line_start:newline].strip()
    if not line or line[-1] in ".!?:;" or _LIST_ITEM.match(text, newline + 1):
        return True
    is_short = len(line) <= _HEADING_MAX_CHARS and not line.endswith(",")
    following = _NEXT_CHAR.match(text, newline + 1)
    return is_short and following is not None and following.group(1).isupper()


def _boundaries(text: str) -> list[int]:
    cuts = {m.end() for m in _PARAGRAPH_BREAK.finditer(text)}
    cuts.update(m.end() for m in _TERMINAL.finditer(text) if _ends_sentence(text, m.start(), m.end()))
    cuts.update(m.end() for m in _LINE_BREAK.finditer(text) if _ends_line_block(text, m.start()))
    return sorted(cuts)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`; text[start:end] is each sentence verbatim."""
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in [*_boundaries(text), len(text)]:
        piece = text[start:cut]
        left = len(piece) - len(piece.lstrip())
        markup = _LEADING_MARKUP.match(piece, left)
        if markup:
            left = markup.end()
        right = len(piece.rstrip())
        if right > left and _WORD_CHAR.search(piece, left, right):
            spans.append((start + left, start + right))
        start = cut
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def _expand_marker_group(group: str) -> list[int]:
    numbers: list[int] = []
    for first, last in _MARKER_ITEM.findall(group):
        low = int(first)
        high = int(last) if last else low
        numbers.extend(range(low, min(high, low + 50) + 1))  # cap absurd ranges like [1-999]
    return numbers


def marker_numbers(text: str) -> list[int]:
    """Every number cited by [n]-style markers in `text`, in order, with repeats."""
    numbers: list[int] = []
    for match in MARKER_GROUP.finditer(text):
        numbers.extend(_expand_marker_group(match.group(1)))
    return numbers


def parse_markers(text: str, source_count: int) -> list[int]:
    """Distinct cited source numbers within 1..source_count, in order of first citation."""
    return list(dict.fromkeys(n for n in marker_numbers(text) if 1 <= n <= source_count))


class SentMarkers:
    """Rewrites an answer's [n] markers as it streams, so that only sources that were sent can be cited.

    Numbers outside 1..source_count are dropped from their group ("[1, 7]" -> "[1]"). A group left empty goes
    too, and so does the whitespace before it unless a word or another marker follows ("HACKED [9]." ->
    "HACKED."). A model that copied a forged "[9]" from a document (or made one up) cites nothing with it. Text
    that may still become a marker is held back until it resolves, so the output does not depend on how the
    answer was split into pieces: feed() them, then flush().
    """

    def __init__(self, source_count: int) -> None:
        self._source_count = source_count
        self._held = ""  # whitespace, or whitespace and the start of a marker group
        self._dropped_space = ""  # the whitespace before a dropped group, until the next character decides

    def feed(self, text: str) -> str:
        return "".join(self._take(char) for char in text)

    def flush(self) -> str:
        held, self._held, self._dropped_space = self._held, "", ""
        return held

    def _take(self, char: str) -> str:
        if self._dropped_space:
            space, self._dropped_space = self._dropped_space, ""
            if not (char.isspace() or char in _CLOSING_PUNCTUATION):
                self._held = space  # a word or a marker follows: it still needs the space
        previous, held = self._held, self._held + char
        if _MARKER_COMPLETE.fullmatch(held):
            self._held = ""
            return self._rewrite(held)
        # Whitespace alone may still precede a marker (and go with it): hold it too.
        if len(held) <= _MARKER_HOLD_MAX and (held.isspace() or _MARKER_PREFIX.fullmatch(held)):
            self._held = held
            return ""
        self._held = ""  # not a marker after all: release what was held, then start over at `char`
        return previous + self._take(char) if previous else char

    def _rewrite(self, held: str) -> str:
        start = held.index("[")
        group = MARKER_GROUP.fullmatch(held, start)
        if group is None:  # "[]", "[,]": brackets, not a marker
            return held
        numbers = _expand_marker_group(group.group(1))
        kept = list(dict.fromkeys(n for n in numbers if 1 <= n <= self._source_count))
        if len(kept) == len(numbers):
            return held
        if not kept:
            self._dropped_space = held[:start]
            return ""
        return f"{held[:start]}[{', '.join(map(str, kept))}]"


def keep_sent_markers(text: str, source_count: int) -> str:
    """`text` with markers of sources 1..source_count only (SentMarkers over the whole text; idempotent)."""
    markers = SentMarkers(source_count)
    return markers.feed(text) + markers.flush()


def strip_markers(text: str) -> str:
    without = MARKER_GROUP.sub("", text)
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", without)).strip()


def claims_by_marker(answer: str) -> dict[int, list[str]]:
    """For each cited number, the answer sentences (markers removed) that cite it.

    Markers that open a sentence ("... days. [1] Next") belong to the sentence before them.
    """
    claims: dict[int, list[str]] = {}
    previous = ""
    for sentence in split_sentences(answer):
        leading = _LEADING_MARKERS.match(sentence)
        if leading and previous:
            for number in marker_numbers(leading.group(0)):
                claims.setdefault(number, []).append(previous)
            sentence = sentence[leading.end() :]
        claim = strip_markers(sentence)
        for number in marker_numbers(sentence):
            claims.setdefault(number, []).append(claim)
        previous = claim or previous
    return claims


def best_sentence(text: str, reference: Iterable[str]) -> str:
    """The sentence of `text` sharing most content terms with `reference` (verbatim).

    Ties go to the earlier sentence; with no overlap at all, the first sentence is returned.
    """
    wanted = set(reference)
    best, best_overlap = "", -1
    for sentence in split_sentences(text):
        overlap = len(wanted.intersection(content_terms(sentence)))
        if overlap > best_overlap:
            best, best_overlap = sentence, overlap
    return best or text.strip()

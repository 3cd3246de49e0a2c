"""Token-aware chunking with the embedding model's own WordPiece tokenizer.

The text is tokenised once. Chunk boundaries are chosen among token positions, scored by how natural
a break they are (section > paragraph > heading > sentence > line > word > inside a word), and mapped
back to the text through the tokenizer's character offsets, so every chunk is a verbatim slice
text[char_start:char_end]. Cutting between whole words keeps the token count of a slice equal to the
number of tokens it spans, because BERT normalisation and pre-tokenisation are character-local.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ragstream_common.stage_metrics import timed_stage
from tokenizers import Tokenizer

# all-MiniLM-L6-v2 reads at most 256 tokens, [CLS] and [SEP] included.
MODEL_MAX_TOKENS = 256
SPECIAL_TOKENS = 2
MAX_CONTENT_TOKENS = MODEL_MAX_TOKENS - SPECIAL_TOKENS
# A piece cut out of a word can re-tokenise longer than the tokens it spanned; a continuation
# token covers at most 10 characters, so a one-token piece always fits this floor.
MIN_CONTENT_TOKENS = 16

# Texts are encoded in paragraph-aligned blocks of about this many characters, in parallel.
ENCODE_BLOCK_CHARS = 16_384

CHUNK_ID_NAMESPACE = uuid.UUID("5d0f4c1e-8b2a-5c37-9a61-3e7f2b9c4d10")

# Scores for the break in front of a token; higher is a better place to cut. GLUED is a word
# boundary without whitespace, such as between a word and its trailing punctuation.
INSIDE_WORD, GLUED, WORD, LINE, SENTENCE, HEADING, PARAGRAPH, SECTION = range(8)

# NFKC already folded fullwidth "!" / "?" and the ellipsis; the ideographic full stop survives it.
_SENTENCE_END = frozenset(".!?\u3002")
_CJK_SENTENCE_END = frozenset("\u3002")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class TextChunk:
    position: int
    text: str
    char_start: int
    char_end: int
    # Content tokens, without [CLS]/[SEP].
    token_count: int
    heading: str | None
    content_sha256: str


def chunk_id(tenant: str, document: str, version: int, position: int) -> str:
    """Deterministic id, stable across re-processing of the same document version."""
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{tenant}/{document}/{version}/{position}"))


def default_tokenizer_path() -> Path:
    return Path(str(resources.files("ragstream_ingest") / "assets" / "minilm-tokenizer.json"))


def load_tokenizer(path: Path | str | None = None) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path or default_tokenizer_path()))
    # The shipped file truncates and pads to 128; chunking needs the raw token stream.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class Chunker:
    def __init__(
        self,
        max_tokens: int = 200,
        overlap_tokens: int = 40,
        tokenizer_path: Path | str | None = None,
    ) -> None:
        if not MIN_CONTENT_TOKENS <= max_tokens <= MAX_CONTENT_TOKENS:
            raise ValueError(f"max_tokens must be in [{MIN_CONTENT_TOKENS}, {MAX_CONTENT_TOKENS}], got {max_tokens}")
        if not 0 <= overlap_tokens <= max_tokens // 2:
            raise ValueError(f"overlap_tokens must be in [0, {max_tokens // 2}], got {overlap_tokens}")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.tokenizer = load_tokenizer(tokenizer_path)

    def count_tokens(self, text: str) -> int:
        """Content tokens of text on its own, as the embedder will see it (minus [CLS]/[SEP])."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str) -> list[TextChunk]:
        """Split normalised text into overlapping chunks of at most max_tokens content tokens."""
        with timed_stage("chunk"):
            return self._split(text)

    def _split(self, text: str) -> list[TextChunk]:
        if not text.strip():
            return []
        offsets, word_ids = self._encode(text)
        if not offsets:  # only characters the tokenizer drops: keep them as one chunk
            start = len(text) - len(text.lstrip())
            return [self._make_chunk(0, text, start, len(text.rstrip()), 0, [], [])]
        scores = _break_scores(text, offsets, word_ids)
        heading_starts, heading_titles = _headings(text)
        plan = _Plan(text, offsets, scores, self.max_tokens, self.overlap_tokens, self.count_tokens)
        return [
            self._make_chunk(position, text, start, end, tokens, heading_starts, heading_titles)
            for position, (start, end, tokens) in enumerate(plan.spans())
        ]

    def _encode(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        """Token offsets and word ids of the whole text, encoded once.

        Cutting at blank lines is exact (whitespace always separates words), and lets the
        tokenizer spread the blocks over its thread pool.
        """
        starts = _block_starts(text, ENCODE_BLOCK_CHARS)
        blocks = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
        encodings = self.tokenizer.encode_batch(blocks, add_special_tokens=False)
        offsets: list[tuple[int, int]] = []
        word_ids: list[int] = []
        shift = 0  # word ids restart in every block; shifting keeps them unique across blocks
        for base, encoding in zip(starts, encodings, strict=True):
            block_ids = [-1 if w is None else w + shift for w in encoding.word_ids]
            word_ids.extend(block_ids)
            offsets.extend([(a + base, b + base) for a, b in encoding.offsets])
            shift = max(block_ids, default=shift - 1) + 1
        return offsets, word_ids

    @staticmethod
    def _make_chunk(
        position: int,
        text: str,
        char_start: int,
        char_end: int,
        tokens: int,
        heading_starts: list[int],
        heading_titles: list[str],
    ) -> TextChunk:
        body = text[char_start:char_end]
        index = bisect.bisect_right(heading_starts, char_start) - 1
        return TextChunk(
            position=position,
            text=body,
            char_start=char_start,
            char_end=char_end,
            token_count=tokens,
            heading=heading_titles[index] if index >= 0 else None,
            content_sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
        )


class _Plan:
    """Greedy left-to-right choice of token spans [first, end) over one encoded text."""

    def __init__(
        self,
        text: str,
        offsets: list[tuple[int, int]],
        scores: list[int],
        max_tokens: int,
        overlap: int,
        count_tokens: Callable[[str], int],
    ) -> None:
        self.text = text
        self.offsets = offsets
        self.scores = scores
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.count_tokens = count_tokens

    def spans(self) -> list[tuple[int, int, int]]:
        """(char_start, char_end, token_count) of each chunk, in order."""
        total = len(self.offsets)
        spans = []
        first = end = 0
        while True:
            end = total if first + self.max_tokens >= total else self._choose_end(first, end)
            char_start, char_end, tokens = self._measure(first, end)
            while tokens > self.max_tokens and end > first + 1:
                end -= 1  # only after a cut inside a word: its pieces may re-tokenise longer
                char_start, char_end, tokens = self._measure(first, end)
            spans.append((char_start, char_end, tokens))
            if end >= total:
                return spans
            first = self._choose_next_first(first, end)

    def _choose_end(self, first: int, previous_end: int) -> int:
        """Best-scored break in the second half of the window; the latest one on ties.

        The end always moves past the previous chunk's end, or a strong break just after the
        overlap would be picked again and again.
        """
        last = first + self.max_tokens
        low = max(first + self.max_tokens // 2, previous_end + 1)
        end = _latest_best(self.scores, low, last)
        if self.scores[end] < WORD:  # a short chunk beats one cut at punctuation or in a word
            end = _latest_best(self.scores, max(first, previous_end) + 1, last)
        return end if self.scores[end] > INSIDE_WORD else last

    def _choose_next_first(self, first: int, end: int) -> int:
        """Start of the next chunk: the earliest sentence, else word, start inside the overlap."""
        if self.scores[end] in (HEADING, SECTION):
            return end  # a new section starts clean, without the tail of the previous one
        low = max(first + 1, end - self.overlap)
        window = self.scores[low:end]
        for wanted in (SENTENCE, WORD, GLUED):
            for index, score in enumerate(window):
                if score >= wanted:
                    return low + index
        return end if self.scores[end] > INSIDE_WORD or not window else low

    def _measure(self, first: int, end: int) -> tuple[int, int, int]:
        text, offsets = self.text, self.offsets
        char_start = offsets[first][0] if first else len(text) - len(text.lstrip())
        # Extend over trailing characters the tokenizer dropped, so nothing between chunks is lost.
        stop = offsets[end][0] if end < len(offsets) else len(text)
        tail_from = offsets[end - 1][1]
        char_end = tail_from + len(text[tail_from:stop].rstrip())
        tokens = end - first
        if not (self._clean_cut(first) and self._clean_cut(end)):
            tokens = self.count_tokens(text[char_start:char_end])
        return char_start, char_end, tokens

    def _clean_cut(self, index: int) -> bool:
        return index == 0 or index >= len(self.offsets) or self.scores[index] > INSIDE_WORD


def _latest_best(scores: list[int], low: int, high: int) -> int:
    window = scores[low : high + 1]
    best = max(window)
    return high - window[::-1].index(best)


def _block_starts(text: str, block_chars: int) -> list[int]:
    starts = [0]
    while True:
        cut = text.find("\n\n", starts[-1] + block_chars)
        if cut < 0:
            return starts
        starts.append(cut + 2)


def _break_scores(text: str, offsets: list[tuple[int, int]], word_ids: list[int]) -> list[int]:
    """Score of the break in front of each token (index 0 is never a break)."""
    scores = [INSIDE_WORD] * len(offsets)
    for index in range(1, len(offsets)):
        if word_ids[index] == word_ids[index - 1]:
            continue
        prev_end = offsets[index - 1][1]
        start = offsets[index][0]
        if start < prev_end:  # one character expanded into several words: not a clean cut
            continue
        gap = text[prev_end:start]
        newlines = gap.count("\n")
        if newlines:
            heading = text.startswith("#", start) and _HEADING.match(text, start) is not None
            if newlines >= 2:
                scores[index] = SECTION if heading else PARAGRAPH
            elif heading:
                scores[index] = HEADING
            else:
                scores[index] = SENTENCE if text[prev_end - 1] in _SENTENCE_END else LINE
        elif text[prev_end - 1] in _SENTENCE_END and (gap or text[prev_end - 1] in _CJK_SENTENCE_END):
            scores[index] = SENTENCE
        else:
            scores[index] = WORD if gap else GLUED
    return scores


def _headings(text: str) -> tuple[list[int], list[str]]:
    starts: list[int] = []
    titles: list[str] = []
    for match in _HEADING.finditer(text):
        starts.append(match.start())
        titles.append(match.group(2).strip())
    return starts, titles

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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tokenizers import Encoding, Tokenizer

# all-MiniLM-L6-v2 reads at most 256 tokens, [CLS] and [SEP] included.
MODEL_MAX_TOKENS = 256
SPECIAL_TOKENS = 2
MAX_CONTENT_TOKENS = MODEL_MAX_TOKENS - SPECIAL_TOKENS
# Below this a hard split inside a word could re-tokenise into more tokens than the budget.
MIN_CONTENT_TOKENS = 32

CHUNK_ID_NAMESPACE = uuid.UUID("5d0f4c1e-8b2a-5c37-9a61-3e7f2b9c4d10")

# Scores for the break in front of a token; higher is a better place to cut.
INSIDE_WORD, WORD, LINE, SENTENCE, HEADING, PARAGRAPH, SECTION = range(7)

_SENTENCE_END = frozenset(".!?…。！？")
_CJK_SENTENCE_END = frozenset("。！？")
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
            raise ValueError(
                f"max_tokens must be in [{MIN_CONTENT_TOKENS}, {MAX_CONTENT_TOKENS}], got {max_tokens}"
            )
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
        if not text.strip():
            return []
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        offsets = encoding.offsets
        if not offsets:  # only characters the tokenizer drops: keep them as one chunk
            start = len(text) - len(text.lstrip())
            return [self._make_chunk(0, text, start, len(text.rstrip()), 0, [], [])]
        scores = _break_scores(text, encoding)
        heading_starts, heading_titles = _headings(text)
        plan = _Plan(text, offsets, scores, self.max_tokens, self.overlap_tokens, self.count_tokens)
        chunks = []
        for position, (first, end, char_start, char_end, tokens) in enumerate(plan.spans()):
            del first, end
            chunks.append(
                self._make_chunk(
                    position, text, char_start, char_end, tokens, heading_starts, heading_titles
                )
            )
        return chunks

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
        count_tokens: object,
    ) -> None:
        self.text = text
        self.offsets = offsets
        self.scores = scores
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.count_tokens = count_tokens

    def spans(self) -> list[tuple[int, int, int, int, int]]:
        total = len(self.offsets)
        spans = []
        first = 0
        while True:
            end = total if first + self.max_tokens >= total else self._choose_end(first)
            char_start, char_end, tokens = self._measure(first, end)
            while tokens > self.max_tokens:  # only after a cut inside a word; shrink until it fits
                end -= 1
                char_start, char_end, tokens = self._measure(first, end)
            spans.append((first, end, char_start, char_end, tokens))
            if end >= total:
                return spans
            first = self._choose_next_first(first, end)

    def _choose_end(self, first: int) -> int:
        """Best-scored break in the second half of the window; the latest one on ties."""
        last = first + self.max_tokens
        end = _latest_best(self.scores, first + max(1, self.max_tokens // 2), last)
        if self.scores[end] == INSIDE_WORD:
            end = _latest_best(self.scores, first + 1, last)  # any word break beats a hard split
        return end if self.scores[end] > INSIDE_WORD else last

    def _choose_next_first(self, first: int, end: int) -> int:
        """Start of the next chunk: the earliest sentence, else word, start inside the overlap."""
        low = max(first + 1, end - self.overlap)
        window = self.scores[low:end]
        for wanted in (SENTENCE, WORD):
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
        if self.scores[first] == INSIDE_WORD and first or (
            end < len(offsets) and self.scores[end] == INSIDE_WORD
        ):
            tokens = self.count_tokens(text[char_start:char_end])  # type: ignore[operator]
        return char_start, char_end, tokens


def _latest_best(scores: list[int], low: int, high: int) -> int:
    window = scores[low : high + 1]
    best = max(window)
    return high - window[::-1].index(best)


def _break_scores(text: str, encoding: Encoding) -> list[int]:
    """Score of the break in front of each token (index 0 is never a break)."""
    offsets = encoding.offsets
    word_ids = encoding.word_ids
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
            scores[index] = WORD
    return scores


def _headings(text: str) -> tuple[list[int], list[str]]:
    starts: list[int] = []
    titles: list[str] = []
    for match in _HEADING.finditer(text):
        starts.append(match.start())
        titles.append(match.group(2).strip())
    return starts, titles

"""Text -> terms: the one analyzer behind retrieval's BM25 index and generation's sentence matching.

Unicode word tokens of two or more characters, NFKC-normalised and case-folded, Lucene's English
stopwords removed, Snowball English stemming (PyStemmer). This is what scored best on SciFact (see
services/retrieve/README.md). Retrieval stores these terms' frequencies in Postgres, so any change
here changes the index: re-index and re-run the retrieval benchmark before changing it.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass

import Stemmer

# Lucene's EnglishAnalyzer stop set (also bm25s' "en" list): short, so negations stay searchable-ish
# while the commonest function words stop flooding the postings.
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these"
    " they this to was will with".split()
)
# Longer "words" are base64, hashes or URLs; they bloat the postings and never match a typed query.
MAX_TERM_CHARS = 64
_WORD = re.compile(r"\w\w+")


class LexicalAnalyzer:
    """Text -> terms. Thread-safe: each thread gets its own stemmer (PyStemmer objects are not)."""

    def __init__(self, language: str = "english", stopwords: frozenset[str] = ENGLISH_STOPWORDS) -> None:
        self._language = language
        self._stopwords = stopwords
        self._local = threading.local()

    def _stemmer(self) -> Stemmer.Stemmer:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = Stemmer.Stemmer(self._language)
        return stemmer

    def words(self, text: str) -> list[str]:
        """Normalised, case-folded words without stopwords, not yet stemmed (text order, repeats kept)."""
        folded = unicodedata.normalize("NFKC", text).casefold()
        return [w for w in _WORD.findall(folded) if w not in self._stopwords and len(w) <= MAX_TERM_CHARS]

    def terms(self, text: str) -> list[str]:
        """Stemmed words: the index terms, in text order (repeats kept: term frequency matters)."""
        stems: list[str] = self._stemmer().stemWords(self.words(text))
        return stems

    def term_frequencies(self, text: str) -> Counter[str]:
        return Counter(self.terms(text))


# The analyzer for code that has no reason to build its own (generation's sentence matching).
ENGLISH_ANALYZER = LexicalAnalyzer()


@dataclass(frozen=True)
class Bm25Parameters:
    k1: float = 1.2
    b: float = 0.75


DEFAULT_BM25 = Bm25Parameters()


def bm25_idf(document_frequency: int, document_count: int) -> float:
    """Lucene's non-negative idf: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return math.log(1 + (document_count - document_frequency + 0.5) / (document_frequency + 0.5))


def bm25_term_weight(
    tf: int,
    document_frequency: int,
    document_count: int,
    length: int,
    average_length: float,
    params: Bm25Parameters = DEFAULT_BM25,
) -> float:
    """One query term's contribution to a chunk's BM25 score (Robertson/Sparck Jones with Lucene's idf)."""
    norm = params.k1 * (1 - params.b + params.b * length / average_length)
    return bm25_idf(document_frequency, document_count) * tf * (params.k1 + 1) / (tf + norm)

"""BM25 for retrieval: the shared analyzer and BM25 formulas (`ragstream_common.text_analysis`, re-exported here)
plus what only the index needs.

Terms come from `ragstream_common.text_analysis.LexicalAnalyzer`: generation matches
sentences with the same analyzer. The index stores term frequencies and chunk lengths; Postgres computes
exactly `bm25_term_weight` at query time, so the corpus statistics (document count, average length,
document frequency) are always current.
"""

from __future__ import annotations

from ragstream_common.text_analysis import (
    DEFAULT_BM25,
    ENGLISH_STOPWORDS,
    MAX_TERM_CHARS,
    Bm25Parameters,
    LexicalAnalyzer,
    bm25_idf,
    bm25_term_weight,
)

__all__ = [
    "DEFAULT_BM25",
    "ENGLISH_STOPWORDS",
    "MAX_TERM_CHARS",
    "Bm25Parameters",
    "LexicalAnalyzer",
    "bm25_idf",
    "bm25_term_weight",
    "lexical_text",
]


def lexical_text(title: str, heading: str, text: str) -> str:
    """What the lexical index sees of a chunk: its title and heading give short chunks their context."""
    return "\n".join(part for part in (title, heading, text) if part)

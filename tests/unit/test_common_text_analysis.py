"""The project's one text analyzer: what it keeps, and that retrieve and generate both use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ragstream_common import text_analysis
from ragstream_common.text_analysis import ENGLISH_ANALYZER, ENGLISH_STOPWORDS, MAX_TERM_CHARS, LexicalAnalyzer
from ragstream_generate import citations
from ragstream_generate.backends import extractive
from ragstream_retrieve import lexical

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services"


def test_stopwords_are_removed_before_stemming() -> None:
    assert ENGLISH_ANALYZER.words("The cat is on the mat and it is not there") == ["cat", "mat"]
    assert ENGLISH_ANALYZER.terms(" ".join(sorted(ENGLISH_STOPWORDS))) == []


def test_question_words_are_terms_not_stopwords() -> None:
    # Lucene's short set: "how", "what", "do" stay searchable, in retrieval and generation alike.
    assert ENGLISH_ANALYZER.terms("How do refunds work?") == ["how", "do", "refund", "work"]


def test_terms_are_snowball_stems_of_the_words() -> None:
    assert ENGLISH_ANALYZER.words("Running runners connected connections") == [
        "running",
        "runners",
        "connected",
        "connections",
    ]
    assert ENGLISH_ANALYZER.terms("Running runners connected connections") == ["run", "runner", "connect", "connect"]


def test_case_is_folded_and_unicode_normalised() -> None:
    assert ENGLISH_ANALYZER.words("CAFÉ Café café") == ["café"] * 3
    assert ENGLISH_ANALYZER.words("cafe\u0301") == ["café"]  # decomposed accent composes (NFKC)
    assert ENGLISH_ANALYZER.words("ﬁnancial Straße") == ["financial", "strasse"]  # ligature, sharp s
    cyrillic_upper, cyrillic_lower = "\u041c\u041e\u0421\u041a\u0412\u0410", "\u043c\u043e\u0441\u043a\u0432\u0430"
    assert ENGLISH_ANALYZER.words(f"Ångström Ελληνικά {cyrillic_upper}") == ["ångström", "ελληνικά", cyrillic_lower]


def test_accents_are_kept_not_stripped() -> None:
    assert ENGLISH_ANALYZER.terms("résumé resume") == ["résumé", "resum"]


def test_numbers_of_two_or_more_characters_are_terms() -> None:
    assert ENGLISH_ANALYZER.terms("42 3 3.5 24/7 2024 v2 1e10") == ["42", "24", "2024", "v2", "1e10"]


def test_hyphens_and_underscores() -> None:
    # A hyphen splits; one-letter parts and stopwords drop out. An underscore is a word character.
    assert ENGLISH_ANALYZER.words("x-ray state-of-the-art AES-256") == ["ray", "state", "art", "aes", "256"]
    assert ENGLISH_ANALYZER.words("snake_case") == ["snake_case"]


@pytest.mark.parametrize("text", ["", "   ", "!!! ...", "a I x", "\n\t"])
def test_input_without_terms_gives_none(text: str) -> None:
    assert ENGLISH_ANALYZER.words(text) == []
    assert ENGLISH_ANALYZER.terms(text) == []
    assert ENGLISH_ANALYZER.term_frequencies(text) == {}


def test_overlong_tokens_are_dropped() -> None:
    assert ENGLISH_ANALYZER.words("q" * MAX_TERM_CHARS + " " + "z" * (MAX_TERM_CHARS + 1)) == ["q" * MAX_TERM_CHARS]


def test_custom_stopwords() -> None:
    assert LexicalAnalyzer(stopwords=frozenset({"cat"})).words("the cat") == ["the"]


def test_retrieve_and_generate_use_the_one_analyzer() -> None:
    assert lexical.LexicalAnalyzer is LexicalAnalyzer
    assert lexical.ENGLISH_STOPWORDS is ENGLISH_STOPWORDS
    # The modules' own namespaces: the names they analyse text with (not re-exported, hence vars()).
    assert vars(citations)["ENGLISH_ANALYZER"] is ENGLISH_ANALYZER
    assert vars(extractive)["content_terms"] is citations.content_terms
    sample = "Can you tell me how snake_case names in plan 3 are handled? ﬁnancial Straße, AES-256"
    assert citations.content_terms(sample) == lexical.LexicalAnalyzer().terms(sample)


def test_no_service_carries_its_own_stemmer_or_stopword_list() -> None:
    """Tokenizing, stopwords and stemming live in ragstream_common.text_analysis only."""
    own_analysis = re.compile(r"^\s*(?:import Stemmer|from Stemmer |import snowballstemmer)|STOPWORDS\s*=", re.M)
    offenders = [
        str(path.relative_to(SERVICES))
        for path in sorted(SERVICES.glob("*/src/**/*.py"))
        if own_analysis.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert own_analysis.search(Path(text_analysis.__file__).read_text(encoding="utf-8"))

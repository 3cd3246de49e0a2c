"""The lexical analyzer and the BM25 formula, checked against hand computations."""

from __future__ import annotations

import math
import threading

import pytest
from ragstream_retrieve.lexical import (
    MAX_TERM_CHARS,
    Bm25Parameters,
    LexicalAnalyzer,
    bm25_idf,
    bm25_term_weight,
    lexical_text,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def analyzer() -> LexicalAnalyzer:
    return LexicalAnalyzer()


def test_terms_are_case_folded_stemmed_and_stopword_free(analyzer: LexicalAnalyzer) -> None:
    assert analyzer.terms("The Running of the RUNNERS is not over") == ["run", "runner", "over"]


def test_single_characters_and_punctuation_are_dropped(analyzer: LexicalAnalyzer) -> None:
    assert analyzer.terms("a b, c! 42 x-ray") == ["42", "ray"]


def test_unicode_words_are_kept_and_normalised(analyzer: LexicalAnalyzer) -> None:
    # NFKC folds the ligature; casefold maps the sharp s.
    assert analyzer.terms("ﬁnancial STRASSE Straße Größe") == ["financi", "strass", "strass", "grösse"]


def test_overlong_tokens_are_dropped(analyzer: LexicalAnalyzer) -> None:
    assert analyzer.terms("x" * (MAX_TERM_CHARS + 1) + " protein") == ["protein"]


def test_term_frequencies_count_repeats(analyzer: LexicalAnalyzer) -> None:
    assert analyzer.term_frequencies("cells cell CELL growth") == {"cell": 3, "growth": 1}


def test_analyzer_is_usable_from_several_threads(analyzer: LexicalAnalyzer) -> None:
    results: list[list[str]] = []

    def work() -> None:
        results.append(analyzer.terms("connected connections"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["connect", "connect"]] * 4


def test_lexical_text_joins_the_present_parts() -> None:
    assert lexical_text("Title", "", "body") == "Title\nbody"


def test_idf_matches_hand_computation() -> None:
    # N = 10, df = 2: ln(1 + (10 - 2 + 0.5) / (2 + 0.5)) = ln(4.4)
    assert bm25_idf(2, 10) == pytest.approx(math.log(4.4))
    assert bm25_idf(10, 10) > 0  # Lucene's idf never goes negative


def test_term_weight_matches_hand_computation() -> None:
    # tf = 3, df = 2, N = 10, dl = 12, avgdl = 8, k1 = 1.2, b = 0.75
    # norm = 1.2 * (0.25 + 0.75 * 12 / 8) = 1.65; weight = ln(4.4) * 3 * 2.2 / (3 + 1.65)
    expected = math.log(4.4) * 6.6 / 4.65
    assert bm25_term_weight(3, 2, 10, 12, 8.0, Bm25Parameters(1.2, 0.75)) == pytest.approx(expected)


def test_term_weight_saturates_and_penalises_length() -> None:
    weight = [bm25_term_weight(tf, 5, 100, 10, 10.0) for tf in (1, 2, 4, 8, 100)]
    assert weight == sorted(weight)
    assert weight[-1] < bm25_idf(5, 100) * (1.2 + 1)  # bounded by idf * (k1 + 1)
    assert bm25_term_weight(2, 5, 100, 40, 10.0) < bm25_term_weight(2, 5, 100, 5, 10.0)


def test_b_zero_ignores_length() -> None:
    params = Bm25Parameters(k1=1.2, b=0.0)
    assert bm25_term_weight(2, 5, 100, 40, 10.0, params) == pytest.approx(bm25_term_weight(2, 5, 100, 5, 10.0, params))

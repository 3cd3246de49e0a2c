import pytest
from ragstream_generate.citations import (
    best_sentence,
    claims_by_marker,
    content_terms,
    marker_numbers,
    parse_markers,
    sentence_spans,
    split_sentences,
    strip_markers,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Refunds take 30 days [1].", [1]),
        ("Both apply [1][2].", [1, 2]),
        ("Both apply [2, 1].", [2, 1]),
        ("Both apply [1;3] and [ 2 ].", [1, 3, 2]),
        ("A range [1-3].", [1, 2, 3]),
        ("Repeats [2] and [2] then [1].", [2, 1]),
        ("Out of range [0] and [4] and [12].", []),
        ("Not markers: [a], [1.5], [].", []),
    ],
)
def test_parse_markers_keeps_in_range_numbers_in_first_citation_order(text: str, expected: list[int]) -> None:
    assert parse_markers(text, source_count=3) == expected


def test_marker_numbers_keep_repeats() -> None:
    assert marker_numbers("[1] x [1, 2] y [2]") == [1, 1, 2, 2]


def test_strip_markers_tidies_punctuation() -> None:
    assert strip_markers("Refunds take 30 days [1]. Support is included [2][3].") == (
        "Refunds take 30 days. Support is included."
    )


def test_split_sentences_handles_abbreviations_decimals_and_initials() -> None:
    text = (
        "Dr. Smith approved a 3.5 percent fee, e.g. for late payment. "
        "J. R. Tolkien wrote it on Jan. 5 in the U.S. office! Was it approx. ten pages? Yes."
    )
    assert split_sentences(text) == [
        "Dr. Smith approved a 3.5 percent fee, e.g. for late payment.",
        "J. R. Tolkien wrote it on Jan. 5 in the U.S. office!",
        "Was it approx. ten pages?",
        "Yes.",
    ]


def test_split_sentences_handles_headings_lists_and_wrapped_lines() -> None:
    text = (
        "# Refund policy\nRefunds are issued within 30 days.\n\n"
        "- Damaged goods are replaced\n- Shipping is free\n"
        "This line is wrapped without\npunctuation and continues."
    )
    assert split_sentences(text) == [
        "Refund policy",
        "Refunds are issued within 30 days.",
        "Damaged goods are replaced",
        "Shipping is free",
        "This line is wrapped without\npunctuation and continues.",
    ]


def test_sentence_spans_are_verbatim_offsets() -> None:
    text = "  First one.   Second one!\n\nThird [x] one?  "
    spans = sentence_spans(text)
    assert [text[start:end] for start, end in spans] == ["First one.", "Second one!", "Third [x] one?"]


def test_content_terms_stem_and_drop_stopwords() -> None:
    # The shared analyzer (Lucene's short stop set, as the retrieval index): question words such as "how"
    # and "what" are terms; "are", "the", "is", "it" are not.
    assert content_terms("How are the refunds processed?") == ["how", "refund", "process"]
    assert content_terms("What is it?") == ["what"]


def test_claims_by_marker_attributes_trailing_markers_to_previous_sentence() -> None:
    claims = claims_by_marker("Refunds take 30 days. [1] Support is 24/7 [2]. Plans differ [1, 3].")
    assert claims == {
        1: ["Refunds take 30 days.", "Plans differ."],
        2: ["Support is 24/7."],
        3: ["Plans differ."],
    }


def test_best_sentence_returns_the_most_overlapping_sentence_verbatim() -> None:
    text = "Shipping is free. Refunds are issued within 30 days of purchase. Call us anytime."
    assert best_sentence(text, content_terms("refund within days")) == (
        "Refunds are issued within 30 days of purchase."
    )
    assert best_sentence(text, []) == "Shipping is free."

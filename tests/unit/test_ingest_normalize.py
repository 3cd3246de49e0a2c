import pytest
from hypothesis import given
from hypothesis import strategies as st
from ragstream_ingest.normalize import normalize_text

pytestmark = pytest.mark.unit


def test_nfkc_folds_compatibility_characters() -> None:
    assert normalize_text("\ufb01le \u2116\uff15 caf\u00e9") == "file No5 café"


def test_whitespace_collapses_inside_lines_and_paragraphs_survive() -> None:
    raw = "  Title \t here  \r\n\r\n\r\n\r\nfirst\u00a0line  \n   second line\n\n\nnext  paragraph  "
    assert normalize_text(raw) == "Title here\n\nfirst line\nsecond line\n\nnext paragraph"


def test_control_and_invisible_characters_are_stripped() -> None:
    assert normalize_text("a\x00b\x07c\u200bd\ufeffe\u00adf\x1b[0m") == "abcdef[0m"


def test_page_and_line_separators_become_breaks() -> None:
    assert normalize_text("one\x0ctwo\u2028three\u2029four") == "one\n\ntwo\nthree\n\nfour"


def test_whitespace_only_text_normalises_to_empty() -> None:
    assert normalize_text(" \n\t\r\n \u3000 \x00") == ""


@given(st.text())
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\n\n\n" not in once
    assert "  " not in once

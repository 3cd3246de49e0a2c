"""The shared format rules: every declared type against every kind of bytes, and gateway/ingest agreement."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ragstream_common.formats import (
    ACCEPTED_TYPES,
    DOCX,
    EXTENSIONS,
    PDF,
    TEXT_HTML,
    TEXT_MARKDOWN,
    TEXT_PLAIN,
    UnsupportedFormat,
    declared_format,
    resolve_format,
    sniff,
)
from ragstream_gateway.content import resolve_upload_type
from ragstream_gateway.problems import Problem
from ragstream_ingest.extract import ExtractionError, extract_document
from support.samples import docx_file, html_file, markdown_file, pdf_file, text_file

pytestmark = pytest.mark.unit

REFUSED = "refused"  # the declaration alone is refused, whatever the bytes
SNIFF = None  # nothing names a format: the bytes decide


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<xml/>")
    return buffer.getvalue()


# Small stand-ins: the rules read signatures only (the property test below uses real documents).
BYTES = {
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "pdf_after_junk": b"junk line\n%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF",
    "docx": _zip("[Content_Types].xml", "word/document.xml"),
    "zip": _zip("xl/workbook.xml"),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "gzip": gzip.compress(b"hello"),
    "html": b"<!DOCTYPE html><html><body><p>hi</p></body></html>",
    "utf8": "plain words, café".encode(),
    "nul_binary": b"MZ\x90\x00\x03\x00\x00\x00\x04\x00",
    "invalid_utf8": "café crème brûlée".encode("latin-1"),
    "utf16": "Grüße aus Köln".encode("utf-16"),
}
SNIFFED = {
    "pdf": "pdf",
    "pdf_after_junk": "text",
    "docx": "docx",
    "zip": "zip",
    "png": "binary",
    "gzip": "binary",
    "html": "html",
    "utf8": "text",
    "nul_binary": "binary",
    "invalid_utf8": "text",  # the encoding is ingest's to detect, not a format question
    "utf16": "text",
}
_TEXTUAL = ("html", "utf8", "invalid_utf8", "utf16", "pdf_after_junk")  # "%PDF-" past the start is text
# Which byte kinds each declared format accepts; the rest are refused.
ACCEPTS: dict[str | None, set[str]] = {
    TEXT_PLAIN: set(_TEXTUAL),
    TEXT_MARKDOWN: set(_TEXTUAL),
    TEXT_HTML: set(_TEXTUAL),
    PDF: {"pdf", "pdf_after_junk"},  # a declared PDF may follow junk bytes
    DOCX: {"docx"},
    REFUSED: set(),
}
# Undeclared bytes resolve by themselves: HTML is sniffed; an undeclared PDF must start with its header.
SNIFFED_AS = {
    "pdf": PDF,
    "docx": DOCX,
    "html": TEXT_HTML,
    "utf8": TEXT_PLAIN,
    "invalid_utf8": TEXT_PLAIN,
    "utf16": TEXT_PLAIN,
    "pdf_after_junk": TEXT_PLAIN,
}

GENERIC = ["", "application/octet-stream", "binary/octet-stream", "application/binary"]
# (content type, filename, the format they name)
DECLARED: list[tuple[str | None, str | None, str | None]] = [
    *((mime, None, mime) for mime in ACCEPTED_TYPES),
    ("text/x-markdown", None, TEXT_MARKDOWN),
    ("application/xhtml+xml", None, TEXT_HTML),
    ("application/x-pdf", None, PDF),
    ("Text/HTML; charset=UTF-8", None, TEXT_HTML),
    *((mime, None, SNIFF) for mime in GENERIC),
    *((mime, "upload", SNIFF) for mime in GENERIC),
    *((mime, "program.exe", SNIFF) for mime in GENERIC),
    *((mime, f"doc{ext}", fmt) for mime in GENERIC for ext, fmt in EXTENSIONS.items()),
    (None, None, SNIFF),
    (None, "NOTES.MD", TEXT_MARKDOWN),
    ("image/png", "a.png", REFUSED),
    ("application/zip", "a.docx", REFUSED),
    ("application/json", None, REFUSED),
    ("text/csv", "data.csv", TEXT_PLAIN),  # any other text/* is plain text
    ("text/x-rst", None, TEXT_PLAIN),
    ("text/plain", "notes.md", TEXT_MARKDOWN),  # browsers label .md as text/plain: the extension wins
    ("text/csv", "notes.markdown", TEXT_MARKDOWN),
    ("text/markdown", "page.htm", TEXT_HTML),
    ("text/html", "a.txt", TEXT_PLAIN),
    ("text/plain", "a.pdf", TEXT_PLAIN),  # only among text formats does the extension win
    ("application/pdf", "a.txt", PDF),
    (DOCX, "a.pdf", DOCX),
]


def _expected(claim: str | None, kind: str) -> str | None:
    if claim is SNIFF:
        return SNIFFED_AS.get(kind)
    return claim if kind in ACCEPTS[claim if claim in ACCEPTS else REFUSED] else None


@pytest.mark.parametrize("kind", BYTES)
def test_sniff(kind: str) -> None:
    assert sniff(BYTES[kind]) == SNIFFED[kind]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"PK\x03\x04broken", "binary"),
        (b"\xff\xfe\x00", "binary"),  # a UTF-16 mark that no UTF-16 text follows
        (b"a\x00b", "binary"),
        (b"\xff\xd8\xff\xe0", "binary"),
        (b"", "text"),
        (b"\xef\xbb\xbf  <!-- c --> <HTML lang=en>", "html"),
        (b"mentions <html> later", "text"),
    ],
)
def test_sniff_edges(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize(("content_type", "filename", "claim"), DECLARED)
def test_declared_format(content_type: str | None, filename: str | None, claim: str | None) -> None:
    if claim == REFUSED:
        with pytest.raises(UnsupportedFormat, match="is not accepted"):
            declared_format(content_type, filename)
    else:
        assert declared_format(content_type, filename) == claim


@pytest.mark.parametrize("kind", BYTES)
@pytest.mark.parametrize(("content_type", "filename", "claim"), DECLARED)
def test_every_declaration_against_every_kind_of_bytes(
    content_type: str | None, filename: str | None, claim: str | None, kind: str
) -> None:
    expected = _expected(claim, kind)
    if expected is None:
        with pytest.raises(UnsupportedFormat):
            resolve_format(content_type, filename, BYTES[kind])
    else:
        assert resolve_format(content_type, filename, BYTES[kind]) == expected


def test_refusals_say_what_was_declared_and_seen() -> None:
    with pytest.raises(UnsupportedFormat, match="declared application/pdf but its bytes are text") as mismatch:
        resolve_format("application/pdf", "a.pdf", b"not a pdf")
    assert (mismatch.value.declared, mismatch.value.sniffed) == (PDF, "text")
    with pytest.raises(UnsupportedFormat, match=r"'a\.zip' is a zip archive") as undeclared:
        resolve_format(None, "a.zip", BYTES["zip"])
    assert (undeclared.value.declared, undeclared.value.sniffed) == (None, "zip")
    with pytest.raises(UnsupportedFormat, match="'image/png' is not accepted") as unknown:
        resolve_format("image/png", None, BYTES["png"])
    assert (unknown.value.declared, unknown.value.sniffed) == (None, None)
    assert isinstance(unknown.value, ValueError)


CONTENT_TYPES = [
    None, "text/plain; charset=utf-8", "text/markdown", "text/html", "text/csv", PDF, DOCX, "application/x-pdf",
    "application/octet-stream", "image/png",
]  # fmt: skip
FILENAMES = [None, "doc", "doc.md", "doc.txt", "doc.html", "doc.pdf", "doc.docx", "doc.exe"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CONTENT_TYPES),
    st.sampled_from(FILENAMES),
    st.one_of(st.binary(max_size=64), st.sampled_from(list(BYTES.values())), st.binary().map(b"PK\x03\x04".__add__)),
)
def test_resolution_is_total_and_stable(content_type: str | None, filename: str | None, data: bytes) -> None:
    """Any input resolves or is refused with UnsupportedFormat; the resolved type resolves to itself.

    The gateway forwards the resolved type with the original filename, so ingest must decide the same.
    """
    try:
        resolved = resolve_format(content_type, filename, data)
    except UnsupportedFormat:
        return
    assert resolved in ACCEPTED_TYPES
    assert resolve_format(resolved, filename, data) == resolved


# Real documents: what the gateway accepts, ingest extracts as the same type, however the type travels.
SAMPLES = {
    "txt": text_file(),
    "md": markdown_file(),
    "html": html_file(),
    "pdf": pdf_file(),
    "docx": docx_file(),
    "latin1": "Le café est très bon, même en été, dit la serveuse.".encode("latin-1"),
    "utf16": "Grüße aus Köln, sagte die Kellnerin am Morgen.".encode("utf-16"),
    "png": BYTES["png"],
    "zip": BYTES["zip"],
    "nul_binary": BYTES["nul_binary"],
}
_INGEST_REFUSALS = {"unsupported_type", "corrupt_document", "undecodable_text"}


@pytest.mark.parametrize("sample", SAMPLES)
def test_what_the_gateway_accepts_ingest_extracts_as_the_same_type(sample: str) -> None:
    data = SAMPLES[sample]
    disagreements = []
    for content_type in CONTENT_TYPES:
        for filename in FILENAMES:
            try:
                accepted: str | None = resolve_upload_type(content_type, filename, data)
            except Problem:
                accepted = None
            # The gateway forwards its resolved type; an external producer sends its own declaration.
            for declared in {accepted, content_type} if accepted else {content_type}:
                outcome = _ingest_outcome(data, declared, filename)
                if outcome != (accepted or "refused"):
                    disagreements.append((content_type, filename, declared, accepted, outcome))
    assert not disagreements


def _ingest_outcome(data: bytes, declared: str | None, filename: str | None) -> str:
    try:
        return extract_document(data, declared, filename).content_type
    except ExtractionError as exc:
        assert exc.error_class in _INGEST_REFUSALS, exc
        return "refused"

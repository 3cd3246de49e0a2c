"""Accepted upload formats (declared type, filename, sniffed bytes; 415 otherwise) and identifier validation.

The format rules themselves are tested exhaustively in test_common_formats.py; these cases pin the gateway's
use of them.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from pydantic import ValidationError
from ragstream_common.formats import DOCX, PDF, TEXT_HTML, TEXT_MARKDOWN, TEXT_PLAIN
from ragstream_gateway.content import resolve_upload_type
from ragstream_gateway.models import DocumentFields, DocumentTextIn, TenantIn
from ragstream_gateway.problems import Problem

pytestmark = pytest.mark.unit

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<xml/>")
    return buffer.getvalue()


DOCX_BYTES = _zip("[Content_Types].xml", "word/document.xml")


@pytest.mark.parametrize(
    ("declared", "filename", "data", "expected"),
    [
        ("text/plain", "a.txt", b"hi", TEXT_PLAIN),
        ("text/plain; charset=utf-8", None, b"hi", TEXT_PLAIN),
        ("text/plain", "notes.md", b"# hi", TEXT_MARKDOWN),  # browsers label .md as text/plain
        ("text/markdown", None, b"# hi", TEXT_MARKDOWN),
        ("application/octet-stream", "page.HTML", b"<html></html>", TEXT_HTML),
        (None, "doc.pdf", PDF_BYTES, PDF),
        ("application/pdf", "whatever.bin", PDF_BYTES, PDF),
        ("", "report.docx", DOCX_BYTES, DOCX),
        (DOCX, None, DOCX_BYTES, DOCX),
        # Deliberate widenings by the shared rules (ingest accepted these already):
        (None, None, b"hello", TEXT_PLAIN),  # nothing names a format: the bytes do
        ("application/octet-stream", "page", b"<!doctype html><p>x</p>", TEXT_HTML),
        ("application/x-pdf", None, PDF_BYTES, PDF),
        ("application/octet-stream", "page.xhtml", b"<html></html>", TEXT_HTML),
        ("text/csv", "data.csv", b"a,b\n1,2\n", TEXT_PLAIN),  # other text/* types are plain text
        ("text/plain", "a.txt", "Grüße".encode("utf-16"), TEXT_PLAIN),  # wide text behind a BOM
        ("text/plain", "a.txt", "café".encode("latin-1"), TEXT_PLAIN),  # ingest detects the charset
    ],
)
def test_accepted_uploads(declared: str | None, filename: str | None, data: bytes, expected: str) -> None:
    assert resolve_upload_type(declared, filename, data) == expected


@pytest.mark.parametrize(
    ("declared", "filename", "data"),
    [
        ("image/png", "a.png", b"\x89PNG\r\n\x1a\n"),
        ("application/zip", "a.zip", _zip("a.txt")),
        ("application/octet-stream", "a.exe", b"MZ\x90\x00\x03\x00\x00\x00"),
        (None, None, b"\x89PNG\r\n\x1a\n"),
        ("application/pdf", "a.pdf", b"not a pdf"),
        ("text/plain", "a.txt", PDF_BYTES),
        (None, "fake.docx", _zip("xl/workbook.xml")),
        ("text/plain", "a.txt", b"\xff\xfe\x00"),  # a UTF-16 mark, then no UTF-16 text
    ],
)
def test_refused_uploads(declared: str | None, filename: str | None, data: bytes) -> None:
    with pytest.raises(Problem) as refused:
        resolve_upload_type(declared, filename, data)
    assert refused.value.status == 415
    assert refused.value.type == "urn:ragstream:problem:unsupported-content"


@pytest.mark.parametrize("document_id", ["a", "doc-1", "A.b_c:d-e", "x" * 128, "0123456789abcdef"])
def test_valid_document_ids(document_id: str) -> None:
    assert DocumentFields(id=document_id).id == document_id


@pytest.mark.parametrize("document_id", ["", "x" * 129, "a/b", "a b", "é", "a?b", "../etc", "a\nb"])
def test_invalid_document_ids(document_id: str) -> None:
    with pytest.raises(ValidationError):
        DocumentFields(id=document_id)


def test_metadata_must_be_strings_and_bounded() -> None:
    assert DocumentFields(metadata={"k": "v"}).metadata == {"k": "v"}
    with pytest.raises(ValidationError):
        DocumentFields.model_validate({"metadata": {"k": 1}})
    with pytest.raises(ValidationError):
        DocumentFields(metadata={f"k{i}": "v" for i in range(65)})
    with pytest.raises(ValidationError):
        DocumentFields.model_validate({"metadata": {"k": "v"}, "unexpected": 1})


def test_text_uploads_need_text() -> None:
    with pytest.raises(ValidationError):
        DocumentTextIn.model_validate_json(b'{"text": ""}')
    with pytest.raises(ValidationError):
        DocumentTextIn.model_validate_json(b'{"text": "x", "content_type": "application/pdf"}')
    assert DocumentTextIn.model_validate_json(b'{"text": "x"}').content_type == TEXT_PLAIN


def test_tenant_fields_are_validated() -> None:
    tenant = TenantIn.model_validate(
        {"tenant_id": "acme", "name": "Acme", "rate_limit": "5/second", "ip_allowlist": ["10.0.0.0/8"]}
    )
    assert str(tenant.ip_allowlist[0]) == "10.0.0.0/8"
    for bad in ({"tenant_id": "a/b"}, {"rate_limit": "fast"}, {"ip_allowlist": ["10.0.0.300/8"]}):
        with pytest.raises(ValidationError):
            TenantIn.model_validate({"tenant_id": "acme", "name": "Acme", **bad})

"""Accepted upload formats (declared type, filename, sniffed bytes) and identifier validation."""

from __future__ import annotations

import io
import zipfile

import pytest
from pydantic import ValidationError
from ragstream_gateway.content import (
    DOCX,
    PDF,
    TEXT_HTML,
    TEXT_MARKDOWN,
    TEXT_PLAIN,
    UnsupportedContent,
    resolve_content_type,
    sniff,
)
from ragstream_gateway.models import DocumentFields, DocumentTextIn, TenantIn

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
    ("data", "kind"),
    [
        (PDF_BYTES, "pdf"),
        (DOCX_BYTES, "docx"),
        (_zip("xl/workbook.xml"), "zip"),
        (b"PK\x03\x04broken", "binary"),
        (b"hello \xc3\xa9", "text"),
        (b"\xff\xfe\x00h", "binary"),
        (b"a\x00b", "binary"),
        (b"\x89PNG\r\n\x1a\n", "binary"),
    ],
)
def test_sniff(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


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
    ],
)
def test_accepted_uploads(declared: str | None, filename: str | None, data: bytes, expected: str) -> None:
    assert resolve_content_type(declared, filename, data) == expected


@pytest.mark.parametrize(
    ("declared", "filename", "data"),
    [
        ("image/png", "a.png", b"\x89PNG\r\n\x1a\n"),
        ("application/zip", "a.zip", _zip("a.txt")),
        ("application/octet-stream", "a.exe", b"MZ"),
        (None, None, b"hello"),
        ("application/pdf", "a.pdf", b"not a pdf"),
        ("text/plain", "a.txt", PDF_BYTES),
        (None, "fake.docx", _zip("xl/workbook.xml")),
        ("text/plain", "a.txt", b"\xff\xfe\x00h"),
    ],
)
def test_refused_uploads(declared: str | None, filename: str | None, data: bytes) -> None:
    with pytest.raises(UnsupportedContent):
        resolve_content_type(declared, filename, data)


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
    tenant = TenantIn(tenant_id="acme", name="Acme", rate_limit="5/second", ip_allowlist=["10.0.0.0/8"])
    assert str(tenant.ip_allowlist[0]) == "10.0.0.0/8"
    for bad in ({"tenant_id": "a/b"}, {"rate_limit": "fast"}, {"ip_allowlist": ["10.0.0.300/8"]}):
        with pytest.raises(ValidationError):
            TenantIn.model_validate({"tenant_id": "acme", "name": "Acme", **bad})

import io
import random
import zipfile

import docx
import pypdf
import pytest
from fpdf import FPDF
from ragstream_common.formats import DOCX, PDF
from ragstream_common.formats import TEXT_HTML as HTML
from ragstream_common.formats import TEXT_MARKDOWN as MARKDOWN
from ragstream_common.formats import TEXT_PLAIN as TEXT
from ragstream_ingest.extract import (
    CorruptDocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ExtractionError,
    UndecodableTextError,
    UnsupportedTypeError,
    decode_text,
    detect_content_type,
    extract_document,
)

pytestmark = pytest.mark.unit


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(*, title: str | None = None, empty: bool = False) -> bytes:
    document = docx.Document()
    if title:
        document.core_properties.title = title
    if not empty:
        document.add_heading("Runbook", level=1)
        document.add_paragraph("Restart the consumer group after a deploy.")
        document.add_heading("Escalation", level=2)
        document.add_paragraph("Page the on-call engineer.")
        table = document.add_table(rows=2, cols=2)
        for row, values in zip(table.rows, [("Service", "Owner"), ("ingest", "search-team")], strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


ARTICLE_HTML = b"""<!DOCTYPE html><html><head><title>Consumer Groups Explained</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/pricing">Pricing plans navigation</a></li></ul></nav>
<main><article><h1>Consumer Groups Explained</h1>
<p>Kafka consumers read records from partitions in order. Each consumer group tracks offsets so
that processing resumes after a restart without losing or repeating work.</p>
<h2>Rebalancing</h2>
<p>When a consumer joins or leaves, the group coordinator triggers a rebalance that reassigns
partitions among the remaining members of the group.</p>
<p>Cooperative rebalancing avoids stopping the world and keeps most assignments stable.</p>
</article></main>
<footer>Copyright 2024 Example Corp. All rights reserved. Cookie settings.</footer>
</body></html>"""


def test_plain_text_is_normalised() -> None:
    doc = extract_document("Hello\r\n\r\n\r\nworld\u00a0 again ".encode(), "text/plain")
    assert (doc.text, doc.content_type, doc.title) == ("Hello\n\nworld again", TEXT, None)


def test_markdown_keeps_headings_and_drops_noise() -> None:
    source = (
        b"Ops Guide\n=========\n\nUse **bold** and *care* with `kafka-topics` and "
        b"[the docs](https://kafka.apache.org) ![diagram](d.png).\n\n## Limits ##\n\n"
        b"> Quoted note\n- item one\n\n| key | value |\n|-----|-------|\n| a | 1 |\n\n"
        b"```sh\nkafka-topics --list\n```\nsnake_case_names stay.\n"
    )
    doc = extract_document(source, None, "guide.md")
    assert doc.content_type == MARKDOWN
    assert doc.title == "Ops Guide"
    assert doc.text.splitlines() == [
        "# Ops Guide",
        "",
        "Use bold and care with kafka-topics and the docs diagram.",
        "",
        "## Limits",
        "",
        "Quoted note",
        "- item one",
        "",
        "| key | value |",
        "| a | 1 |",
        "",
        "kafka-topics --list",
        "snake_case_names stay.",
    ]


def test_html_keeps_the_article_and_drops_boilerplate() -> None:
    doc = extract_document(ARTICLE_HTML, "text/html; charset=utf-8")
    assert doc.content_type == HTML
    assert doc.title == "Consumer Groups Explained"
    assert "group coordinator triggers a rebalance" in doc.text
    assert "## Rebalancing" in doc.text
    for boilerplate in ("Pricing plans navigation", "Copyright 2024", "Cookie settings"):
        assert boilerplate not in doc.text


def test_short_html_falls_back_to_its_full_text() -> None:
    assert extract_document(b"<p>Just a line.</p>", "text/html").text == "Just a line."
    page = b"<html><body><div>Tiny page</div></body></html>"
    assert extract_document(page).text == "Tiny page"


def test_pdf_text_layer_and_title() -> None:
    data = make_pdf(["Kafka partitions keep order.", "Pgvector stores embeddings."], "Manual")
    doc = extract_document(data, "application/pdf", "manual.pdf")
    assert doc.content_type == PDF
    assert doc.title == "Manual"
    assert doc.text == "Kafka partitions keep order.\n\nPgvector stores embeddings."


def test_encrypted_pdf_is_rejected() -> None:
    data = encrypt_pdf(make_pdf(["Top secret numbers."]), user_password="open-sesame")
    with pytest.raises(EncryptedDocumentError) as caught:
        extract_document(data)
    assert caught.value.error_class == "encrypted_document"


def test_pdf_with_only_an_owner_password_is_readable() -> None:
    data = encrypt_pdf(make_pdf(["Printable but locked for editing."]), user_password="")
    assert extract_document(data).text == "Printable but locked for editing."


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n1 0 obj << /Type /Catalog", make_pdf(["Some text to cut."])[:300]],
    ids=["garbage", "truncated"],
)
def test_corrupt_pdf_is_rejected(data: bytes) -> None:
    with pytest.raises(CorruptDocumentError):
        extract_document(data)


def test_pdf_without_text_layer_is_empty() -> None:
    with pytest.raises(EmptyDocumentError) as caught:
        extract_document(make_pdf(["", ""]))
    assert caught.value.error_class == "empty_document"


def test_docx_paragraphs_headings_and_tables() -> None:
    doc = extract_document(make_docx(title="Runbook v2"), None, "runbook.docx")
    assert doc.content_type == DOCX
    assert doc.title == "Runbook v2"
    assert doc.text == (
        "# Runbook\n\nRestart the consumer group after a deploy.\n\n## Escalation\n\n"
        "Page the on-call engineer.\n\nService | Owner\ningest | search-team"
    )


def test_empty_docx_is_rejected() -> None:
    with pytest.raises(EmptyDocumentError):
        extract_document(make_docx(empty=True))


def test_corrupt_docx_is_rejected() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w:document>not closed")
    with pytest.raises(CorruptDocumentError):
        extract_document(out.getvalue(), DOCX)


def test_zip_that_is_not_docx_is_unsupported() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedTypeError) as caught:
        extract_document(out.getvalue())
    assert caught.value.error_class == "unsupported_type"


@pytest.mark.parametrize(
    ("data", "declared", "filename", "expected"),
    [
        (b"# Title\n\ntext", None, "notes.MD", MARKDOWN),
        (b"# Title\n\ntext", "text/x-markdown", None, MARKDOWN),
        (b"  <!DOCTYPE html><html><body>x</body></html>", None, None, HTML),
        (b"<html><body>x</body></html>", "application/octet-stream", "page", HTML),
        (b"a,b\n1,2\n", "text/csv", "data.csv", TEXT),
        (b"plain words", None, None, TEXT),
        (b"mentions %PDF- in passing", None, None, TEXT),
        (b"junk\n%PDF-1.4 ...", "application/x-pdf", None, PDF),  # a declared PDF may follow junk
        (b"<p>x</p>", "application/xhtml+xml", None, HTML),
        (b"# Title", "text/plain", "notes.md", MARKDOWN),  # browsers label .md as text/plain
        ("Grüße".encode("utf-16"), "text/plain", None, TEXT),
    ],
)
def test_content_type_detection(data: bytes, declared: str | None, filename: str | None, expected: str) -> None:
    assert detect_content_type(data, declared, filename) == expected


@pytest.mark.parametrize(
    ("data", "declared", "error"),
    [
        (b"\x89PNG\r\n\x1a\n....", None, UnsupportedTypeError),
        (b"anything", "image/jpeg", UnsupportedTypeError),
        (b"plain text, not a pdf", "application/pdf", CorruptDocumentError),
        (b"plain text, not a docx", DOCX, CorruptDocumentError),
        # The bytes must agree with the declared format (magic bytes used to override the declaration).
        (b"%PDF-1.4 ...", "text/plain", UnsupportedTypeError),
        (b" \n\t\n\x00 ", "text/plain", UndecodableTextError),  # NUL bytes are not text
    ],
)
def test_unsupported_or_mislabelled_content(data: bytes, declared: str | None, error: type[ExtractionError]) -> None:
    with pytest.raises(error):
        detect_content_type(data, declared)


def test_whitespace_only_text_is_empty() -> None:
    with pytest.raises(EmptyDocumentError):
        extract_document(" \n\t\n\u00a0 ".encode(), "text/plain")


def test_text_decoding_fallbacks() -> None:
    assert decode_text("naïve café".encode()) == "naïve café"
    assert decode_text("Grüße aus Köln".encode("utf-16")) == "Grüße aus Köln"
    assert decode_text("\ufeffBOM text".encode()) == "BOM text"
    assert decode_text("Le café est très bon, même en été.".encode("latin-1")) == ("Le café est très bon, même en été.")


def test_declared_charset_is_honoured() -> None:
    data = "Ærlig talt, søster".encode("iso-8859-1")
    assert extract_document(data, "text/plain; charset=ISO-8859-1").text == "Ærlig talt, søster"
    assert extract_document(data, "text/plain; charset=bogus").text == "Ærlig talt, søster"


def test_binary_noise_is_undecodable() -> None:
    noise = b"\x01\x02" + random.Random(7).randbytes(256) + b"\x00\x00\xff\xfe\x00"
    with pytest.raises(UndecodableTextError) as caught:
        extract_document(noise, "text/plain")
    assert caught.value.error_class == "undecodable_text"

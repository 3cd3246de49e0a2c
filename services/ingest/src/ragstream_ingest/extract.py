"""Plain-text extraction for txt, markdown, HTML, PDF and DOCX.

Which format a document is (and whether it is accepted at all) is decided by `ragstream_common.formats`,
the rules the gateway applies too. extract_document() returns normalised text (see normalize.py);
markdown-style "#" heading lines are kept so the chunker can attach the nearest heading to each chunk.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from dataclasses import dataclass

import charset_normalizer
import docx
import pypdf
import trafilatura
from docx.table import Table
from docx.text.paragraph import Paragraph
from ragstream_common.formats import (
    DOCX,
    PDF,
    TEXT_HTML,
    TEXT_MARKDOWN,
    TEXT_PLAIN,
    TEXT_TYPES,
    UnsupportedFormat,
    resolve_format,
)
from ragstream_common.stage_metrics import timed_stage

from ragstream_ingest.normalize import normalize_text

_WESTERN_CODECS = ("cp1252", "latin_1", "iso8859_15")
# Byte order marks of UTF-16 and UTF-32 (UTF-32 LE starts with the UTF-16 LE mark).
_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)
# A DOCX expanding past this is treated as a zip bomb rather than a document.
MAX_DOCX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024


class ExtractionError(Exception):
    """A document that cannot be turned into text; error_class goes into DocumentFailed."""

    error_class = "extraction_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedTypeError(ExtractionError):
    error_class = "unsupported_type"


class EncryptedDocumentError(ExtractionError):
    error_class = "encrypted_document"


class CorruptDocumentError(ExtractionError):
    error_class = "corrupt_document"


class EmptyDocumentError(ExtractionError):
    error_class = "empty_document"


class UndecodableTextError(ExtractionError):
    error_class = "undecodable_text"


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    text: str
    content_type: str
    title: str | None


def detect_content_type(data: bytes, declared: str | None = None, filename: str | None = None) -> str:
    """One of formats.ACCEPTED_TYPES, by the shared rules; refusals become ExtractionErrors."""
    try:
        content_type = resolve_format(declared, filename, data)
    except UnsupportedFormat as exc:
        raise _refusal(exc) from exc
    if content_type == DOCX:
        _check_docx_size(data)
    return content_type


def extract_document(data: bytes, declared: str | None = None, filename: str | None = None) -> ExtractedDocument:
    with timed_stage("parse"):
        return _extract_document(data, declared, filename)


def _extract_document(data: bytes, declared: str | None, filename: str | None) -> ExtractedDocument:
    content_type = detect_content_type(data, declared, filename)
    raw_text, title = _EXTRACTORS[content_type](data, _declared_charset(declared))
    text = normalize_text(raw_text)
    if not text:
        raise EmptyDocumentError(f"no text found in {content_type} document")
    return ExtractedDocument(text=text, content_type=content_type, title=title or None)


def decode_text(data: bytes, charset: str | None = None) -> str:
    """A BOM, then the declared charset, then UTF-8, then the most plausible legacy charset."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):  # fmt: skip
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise UndecodableTextError(f"invalid {codec} text: {exc.reason}") from exc
    for codec in dict.fromkeys(name for name in (charset, "utf-8") if name):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass  # a wrong or unknown declared charset falls through to detection
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None or (b"\x00" in data and not best.encoding.startswith(("utf_16", "utf_32"))):
        raise UndecodableTextError("text is neither UTF-8 nor any recognisable charset")
    # Short texts fit many code pages equally well; among those, Western European is likeliest.
    tied = {match.encoding: match for match in matches if match.chaos == best.chaos}
    preferred = next((tied[name] for name in _WESTERN_CODECS if name in tied), best)
    return str(preferred)


def _declared_charset(declared: str | None) -> str | None:
    match = re.search(r";\s*charset=[\"']?([\w.:-]+)", declared or "", re.I)
    return match.group(1) if match else None


def _refusal(exc: UnsupportedFormat) -> ExtractionError:
    """The DocumentFailed error class of a refusal: a mislabelled PDF/DOCX is corrupt, binary "text" undecodable."""
    reason = str(exc)
    if exc.declared in (PDF, DOCX) and exc.sniffed in ("text", "html", "binary"):
        return CorruptDocumentError(reason)
    if exc.declared in TEXT_TYPES and exc.sniffed == "binary":
        return UndecodableTextError(reason)
    return UnsupportedTypeError(reason)


def _check_docx_size(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # formats.sniff has opened it once already
        expanded = sum(info.file_size for info in archive.infolist())
    if expanded > MAX_DOCX_UNCOMPRESSED_BYTES:
        raise CorruptDocumentError(f"DOCX expands to {expanded} bytes; refusing a likely zip bomb")


def _extract_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    return decode_text(data, charset), None


def _extract_markdown(data: bytes, charset: str | None) -> tuple[str, str | None]:
    text = strip_markdown(decode_text(data, charset))
    heading = re.search(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return text, heading.group(1).strip() if heading else None


def _extract_html(data: bytes, charset: str | None) -> tuple[str, str | None]:
    # trafilatura reads <meta charset> and sniffs the bytes itself, but not UTF-16/32 text: decode that here.
    page = decode_text(data, charset) if data.startswith(_WIDE_BOMS) else data
    text = trafilatura.extract(page, output_format="markdown", include_comments=False)
    if not text:  # short pages often fall below trafilatura's main-content threshold
        text = trafilatura.html2txt(page) or _html_fallback_text(page)
    metadata = trafilatura.extract_metadata(page)
    return strip_markdown(text or ""), metadata.title if metadata else None


def _html_fallback_text(page: bytes | str) -> str:
    """Text of a fragment trafilatura cannot load as a page (no <html>/<body>)."""
    if isinstance(page, str):
        return trafilatura.html2txt(f"<html><body>{page}</body></html>") or ""
    return trafilatura.html2txt(b"<html><body>" + page + b"</body></html>") or ""


def _extract_pdf(data: bytes, charset: str | None) -> tuple[str, str | None]:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
            raise EncryptedDocumentError("PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except ExtractionError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types for malformed input
        raise CorruptDocumentError(f"unreadable PDF: {type(exc).__name__}: {exc}") from exc
    return "\n\n".join(pages), title


def _extract_docx(data: bytes, charset: str | None) -> tuple[str, str | None]:
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [_docx_block(item) for item in document.iter_inner_content()]
        title = document.core_properties.title
    except Exception as exc:  # python-docx / lxml raise many unrelated types for malformed input
        raise CorruptDocumentError(f"unreadable DOCX: {type(exc).__name__}: {exc}") from exc
    return "\n\n".join(block for block in blocks if block), title


def _docx_block(item: Paragraph | Table) -> str:
    if isinstance(item, Table):
        return _docx_table(item)
    text = item.text.strip()
    style = item.style.name if item.style is not None else ""
    level = _heading_level(style or "")
    return f"{'#' * level} {text}" if text and level else text


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading ([1-6])", style)
    return int(match.group(1)) if match else 0


def _docx_table(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:  # merged cells repeat their text
                cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


_MARKDOWN_RULES = [
    (re.compile(r"^ {0,3}(```|~~~).*\n?", re.M), ""),  # code fences (code stays)
    (re.compile(r"^ *\|?( *:?-+:? *\|)+( *:?-+:? *)?\|? *\n?", re.M), ""),  # table separator rows
    (re.compile(r"^(?! {0,3}[#>*+-])(\S.*)\n {0,3}=+ *$", re.M), r"# \1"),  # setext headings
    (re.compile(r"^(?! {0,3}[#>*+-])(\S.*)\n {0,3}-+ *$", re.M), r"## \1"),
    (re.compile(r"^ {0,3}([-*_])( *\1){2,} *$", re.M), ""),  # horizontal rules
    (re.compile(r"^ {0,3}\[[^\]]+\]: +\S+.*$", re.M), ""),  # link reference definitions
    (re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]+#+ *$", re.M), r"\1 \2"),  # closing hashes
    (re.compile(r"^ {0,3}(> ?)+", re.M), ""),  # blockquote markers
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images keep their alt text
    (re.compile(r"\[([^\]]+)\](\([^)]*\)|\[[^\]]*\])"), r"\1"),  # links keep their text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # italic
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
    (re.compile(r"</?[a-zA-Z][^>\n]*>"), ""),  # inline HTML tags
]


def strip_markdown(text: str) -> str:
    """Drop markdown syntax that carries no meaning; keep "#" headings, lists and table rows."""
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    return text


# Each takes the bytes and the declared charset (used by the text formats) and returns text, title.
_EXTRACTORS = {
    TEXT_PLAIN: _extract_text,
    TEXT_MARKDOWN: _extract_markdown,
    TEXT_HTML: _extract_html,
    PDF: _extract_pdf,
    DOCX: _extract_docx,
}

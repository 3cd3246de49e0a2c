"""Content type detection and plain-text extraction for txt, markdown, HTML, PDF and DOCX.

extract_document() returns normalised text (see normalize.py); markdown-style "#" heading lines are
kept so the chunker can attach the nearest heading to each chunk.
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

from ragstream_ingest.normalize import normalize_text

TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SUPPORTED_TYPES = frozenset({TEXT, MARKDOWN, HTML, PDF, DOCX})

_TYPE_ALIASES = {"text/x-markdown": MARKDOWN, "application/xhtml+xml": HTML}
_UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_EXTENSIONS = {
    ".txt": TEXT, ".text": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN, ".html": HTML,
    ".htm": HTML, ".xhtml": HTML, ".pdf": PDF, ".docx": DOCX,
}  # fmt: skip
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b", b"\xd0\xcf\x11\xe0", b"7z\xbc\xaf")
_HTML_SNIFF = re.compile(rb"^(\xef\xbb\xbf)?\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.I | re.S)
_WESTERN_CODECS = ("cp1252", "latin_1", "iso8859_15")
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


def detect_content_type(
    data: bytes, declared: str | None = None, filename: str | None = None
) -> str:
    """One of SUPPORTED_TYPES; magic bytes win over the declared type, which wins over the name."""
    head = data[:1024]
    claimed = _declared_type(declared) or _extension_type(filename)
    pdf_header_at = head.find(b"%PDF-")
    # The header may follow some junk bytes, but then only trust it for a file called a PDF.
    if pdf_header_at == 0 or (pdf_header_at > 0 and claimed == PDF):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        return _zip_type(data)
    if data.startswith(_BINARY_MAGIC):
        raise UnsupportedTypeError("binary format (image, archive or legacy Office) is not supported")
    if claimed in (PDF, DOCX):
        raise CorruptDocumentError(f"content is not a valid {claimed} file")
    if claimed:
        return claimed
    return HTML if _HTML_SNIFF.match(head) else TEXT


def extract_document(
    data: bytes, declared: str | None = None, filename: str | None = None
) -> ExtractedDocument:
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


def _declared_type(declared: str | None) -> str | None:
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    media_type = _TYPE_ALIASES.get(media_type, media_type)
    if media_type in _UNDECLARED:
        return None
    if media_type in SUPPORTED_TYPES:
        return media_type
    if media_type.startswith("text/"):
        return TEXT  # csv, x-rst, ...: still readable as plain text
    raise UnsupportedTypeError(f"content type {media_type!r} is not supported")


def _extension_type(filename: str | None) -> str | None:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    return _EXTENSIONS.get(suffix)


def _zip_type(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            expanded = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise CorruptDocumentError(f"broken zip container: {exc}") from exc
    if "word/document.xml" not in names:
        raise UnsupportedTypeError("zip archive that is not a Word (.docx) document")
    if expanded > MAX_DOCX_UNCOMPRESSED_BYTES:
        raise CorruptDocumentError(f"DOCX expands to {expanded} bytes; refusing a likely zip bomb")
    return DOCX


def _extract_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    return decode_text(data, charset), None


def _extract_markdown(data: bytes, charset: str | None) -> tuple[str, str | None]:
    text = strip_markdown(decode_text(data, charset))
    heading = re.search(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return text, heading.group(1).strip() if heading else None


def _extract_html(data: bytes, charset: str | None) -> tuple[str, str | None]:
    del charset  # trafilatura reads <meta charset> and sniffs the bytes itself
    text = trafilatura.extract(data, output_format="markdown", include_comments=False)
    if not text:  # short pages often fall below trafilatura's main-content threshold
        text = trafilatura.html2txt(data) or _html_fallback_text(data)
    metadata = trafilatura.extract_metadata(data)
    return strip_markdown(text or ""), metadata.title if metadata else None


def _html_fallback_text(data: bytes) -> str:
    """Text of a fragment trafilatura cannot load as a page (no <html>/<body>)."""
    wrapped = b"<html><body>" + data + b"</body></html>"
    return trafilatura.html2txt(wrapped) or ""


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
    TEXT: _extract_text,
    MARKDOWN: _extract_markdown,
    HTML: _extract_html,
    PDF: _extract_pdf,
    DOCX: _extract_docx,
}

"""Which document formats Ragstream accepts, decided once for the gateway and for ingest.

The formats are plain text, markdown, HTML, PDF and DOCX. A document's format is named by its declared
media type; when that type is generic (`application/octet-stream` and friends, or none) by its filename
extension; when neither names one, by its bytes. The bytes must then agree with the named format. The
gateway refuses with 415 what ingest would refuse, and external producers on Kafka meet the same rules,
so a document the gateway accepts is never refused by ingest as unsupported.

Decisions, made here and nowhere else:
- Any `text/*` subtype not listed (text/csv, text/x-rst, text/xml, ...) is read as plain text.
- Among text formats the filename extension beats the declared type: browsers label .md files text/plain.
- Text bytes are bytes without a binary signature: no NUL byte (unless a UTF-16/32 byte order mark says
  the text is wide) and no known binary magic. The character encoding is not judged here: ingest decodes
  the declared charset, then UTF-8, then the likeliest legacy charset (latin-1 text is accepted).
- Any text format accepts HTML-looking bytes (HTML declared as plain text is read as plain text); HTML is
  only sniffed from the bytes when nothing names a format.
- A declared PDF may carry junk before its `%PDF-` header (within the first 1024 bytes), as readers allow;
  an undeclared one must start with it.
- A DOCX is a zip package holding `word/document.xml`; other zip archives are refused.

Pure: standard library only, no I/O (zip packages are read from memory).
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import PurePosixPath
from typing import Literal

TEXT_PLAIN = "text/plain"
TEXT_MARKDOWN = "text/markdown"
TEXT_HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ACCEPTED_TYPES = (TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML, PDF, DOCX)
TEXT_TYPES = frozenset({TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML})

# Other names clients and libraries give the accepted formats.
ALIASES = {
    "text/x-markdown": TEXT_MARKDOWN,
    "application/xhtml+xml": TEXT_HTML,
    "application/x-pdf": PDF,
}
# Types sent by clients that do not know better: the filename, or else the bytes, decide then.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/binary"})
EXTENSIONS = {
    ".txt": TEXT_PLAIN,
    ".text": TEXT_PLAIN,
    ".md": TEXT_MARKDOWN,
    ".markdown": TEXT_MARKDOWN,
    ".html": TEXT_HTML,
    ".htm": TEXT_HTML,
    ".xhtml": TEXT_HTML,
    ".pdf": PDF,
    ".docx": DOCX,
}

Sniffed = Literal["pdf", "docx", "zip", "binary", "html", "text"]
_SNIFFED_FORMAT: dict[Sniffed, str] = {"pdf": PDF, "docx": DOCX, "html": TEXT_HTML, "text": TEXT_PLAIN}
_DESCRIBED: dict[Sniffed, str] = {
    "pdf": "a PDF",
    "docx": "a Word (.docx) document",
    "zip": "a zip archive that is not a Word (.docx) document",
    "binary": "binary data (an image, an archive, a legacy Office file or NUL bytes)",
    "html": "HTML",
    "text": "text",
}
_PDF_MAGIC = b"%PDF-"
_PDF_HEADER_WINDOW = 1024
_ZIP_MAGIC = b"PK\x03\x04"
# PNG, JPEG, GIF, gzip, OLE2 (legacy .doc/.xls), 7z.
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b", b"\xd0\xcf\x11\xe0", b"7z\xbc\xaf")
# UTF-32 first: its little-endian mark starts with UTF-16's.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_HTML_SNIFF = re.compile(rb"^(\xef\xbb\xbf)?\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.I | re.S)


class UnsupportedFormat(ValueError):
    """Not one of the accepted formats, or bytes that contradict the declared format.

    `declared` is the accepted format the content type or filename named (None when none did);
    `sniffed` is what the bytes look like (None when they were not looked at).
    """

    def __init__(self, message: str, *, declared: str | None = None, sniffed: Sniffed | None = None) -> None:
        super().__init__(message)
        self.declared = declared
        self.sniffed = sniffed


def bare_mime(content_type: str | None) -> str:
    """The media type without parameters, lower-cased: 'Text/HTML; charset=utf-8' -> 'text/html'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def extension_format(filename: str | None) -> str | None:
    """The accepted format a filename's extension names, if any."""
    return EXTENSIONS.get(PurePosixPath((filename or "").strip()).suffix.lower())


def declared_format(content_type: str | None, filename: str | None) -> str | None:
    """The accepted format the content type or else the filename names; None when neither names one.

    Raises UnsupportedFormat for a specific content type that is not accepted (image/png, application/zip).
    """
    mime = bare_mime(content_type)
    by_extension = extension_format(filename)
    if mime in GENERIC_TYPES:
        return by_extension
    by_mime = ALIASES.get(mime, mime)
    if by_mime not in ACCEPTED_TYPES:
        if not mime.startswith("text/"):
            raise UnsupportedFormat(
                f"content type {mime!r} is not accepted (accepted: {', '.join(ACCEPTED_TYPES)} "
                "and other text/* types as plain text)"
            )
        by_mime = TEXT_PLAIN
    if by_mime in TEXT_TYPES and by_extension in TEXT_TYPES:
        return by_extension
    return by_mime


def sniff(data: bytes) -> Sniffed:
    """What the bytes look like, judged by their signature (not by their character encoding)."""
    if data.startswith(_PDF_MAGIC):
        return "pdf"
    if data.startswith(_ZIP_MAGIC):
        return _zip_kind(data)
    if data.startswith(_BINARY_MAGIC):
        return "binary"
    if _is_wide_text(data):
        return "text"
    if b"\x00" in data:
        return "binary"
    return "html" if _HTML_SNIFF.match(data[:_PDF_HEADER_WINDOW]) else "text"


def resolve_format(content_type: str | None, filename: str | None, data: bytes) -> str:
    """The canonical MIME type (one of ACCEPTED_TYPES) of a document, or UnsupportedFormat."""
    claimed = declared_format(content_type, filename)
    sniffed = sniff(data)
    if claimed is None:
        sniffed_format = _SNIFFED_FORMAT.get(sniffed)
        if sniffed_format is None:
            raise UnsupportedFormat(
                f"{filename or 'the document'!r} is {_DESCRIBED[sniffed]}; accepted are text, markdown, HTML, "
                "PDF and DOCX (send a content type or a filename ending in .txt, .md, .html, .pdf or .docx)",
                sniffed=sniffed,
            )
        return sniffed_format
    if not _bytes_agree(claimed, sniffed, data):
        raise UnsupportedFormat(
            f"the document is declared {claimed} but its bytes are {_DESCRIBED[sniffed]}",
            declared=claimed,
            sniffed=sniffed,
        )
    return claimed


def _bytes_agree(claimed: str, sniffed: Sniffed, data: bytes) -> bool:
    if claimed == PDF:
        return _PDF_MAGIC in data[:_PDF_HEADER_WINDOW]
    if claimed == DOCX:
        return sniffed == "docx"
    return sniffed in ("text", "html")


def _zip_kind(data: bytes) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "docx" if "word/document.xml" in archive.namelist() else "zip"
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):  # each is raised for some broken archive
        return "binary"


def _is_wide_text(data: bytes) -> bool:
    """UTF-16 or UTF-32 behind a byte order mark: NUL bytes are part of such text."""
    for bom, codec in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                data.decode(codec)
            except UnicodeDecodeError:
                continue
            return True
    return False

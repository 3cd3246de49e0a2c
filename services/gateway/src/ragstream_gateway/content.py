"""Which uploads are accepted: txt, md, html, pdf, docx, judged by declared type, filename and the bytes.

The declared type (or, when it is generic, the filename extension) names the format; the bytes must then
agree with it: PDFs start with `%PDF-`, DOCX files are ZIP packages holding `word/document.xml`, and text
formats are UTF-8 without NUL bytes. Anything else is refused (415) before it reaches the pipeline.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

TEXT_PLAIN = "text/plain"
TEXT_MARKDOWN = "text/markdown"
TEXT_HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_TYPES = frozenset({TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML})
ACCEPTED_TYPES = (TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML, PDF, DOCX)

_BY_MIME = {
    TEXT_PLAIN: TEXT_PLAIN,
    TEXT_MARKDOWN: TEXT_MARKDOWN,
    "text/x-markdown": TEXT_MARKDOWN,
    TEXT_HTML: TEXT_HTML,
    "application/xhtml+xml": TEXT_HTML,
    PDF: PDF,
    "application/x-pdf": PDF,
    DOCX: DOCX,
}
_BY_EXTENSION = {
    ".txt": TEXT_PLAIN,
    ".text": TEXT_PLAIN,
    ".md": TEXT_MARKDOWN,
    ".markdown": TEXT_MARKDOWN,
    ".html": TEXT_HTML,
    ".htm": TEXT_HTML,
    ".pdf": PDF,
    ".docx": DOCX,
}
# Types clients send when they do not know better; the filename decides then.
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/binary"})


class UnsupportedContent(ValueError):
    """The upload is not one of the accepted formats, or its bytes contradict its declared format."""


def bare_mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_type(content_type: str | None, filename: str | None) -> str:
    """The accepted MIME type the client claims, from its content type or else its filename."""
    mime = bare_mime(content_type)
    by_extension = _BY_EXTENSION.get(PurePosixPath(filename or "").suffix.lower())
    if mime in _GENERIC:
        if by_extension is None:
            raise UnsupportedContent(
                f"cannot tell the format of {filename or 'the upload'!r}: send a content type or a filename "
                "ending in .txt, .md, .html, .pdf or .docx"
            )
        return by_extension
    by_mime = _BY_MIME.get(mime)
    if by_mime is None:
        raise UnsupportedContent(f"content type {mime!r} is not accepted (accepted: {', '.join(ACCEPTED_TYPES)})")
    # Browsers label .md files text/plain; among text formats the extension is the better witness.
    if by_extension in TEXT_TYPES and by_mime in TEXT_TYPES:
        return by_extension
    return by_mime


def sniff(data: bytes) -> str:
    """What the bytes are: 'pdf', 'docx', 'zip', 'text' or 'binary'."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return "docx" if "word/document.xml" in archive.namelist() else "zip"
        except zipfile.BadZipFile:
            return "binary"
    if b"\x00" in data:
        return "binary"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "text"


def resolve_content_type(content_type: str | None, filename: str | None, data: bytes) -> str:
    """The canonical MIME type of an upload, or UnsupportedContent."""
    claimed = declared_type(content_type, filename)
    actual = sniff(data)
    expected = "text" if claimed in TEXT_TYPES else ("pdf" if claimed == PDF else "docx")
    if actual != expected:
        raise UnsupportedContent(f"the upload is declared {claimed} but its bytes look like {actual}")
    return claimed

"""Sample documents the tests make themselves, one per supported format."""

from __future__ import annotations

import io

ARTICLE = (
    "Photosynthesis converts light energy into chemical energy in chloroplasts. "
    "The light reactions split water and release oxygen as a by-product. "
    "The Calvin cycle then fixes carbon dioxide into sugars using ATP and NADPH."
)


def text_file(body: str = ARTICLE) -> bytes:
    return body.encode()


def markdown_file(body: str = ARTICLE) -> bytes:
    return f"# Plant biology\n\n## Photosynthesis\n\n{body}\n".encode()


def html_file(body: str = ARTICLE) -> bytes:
    return (
        "<html><head><title>Plant biology</title></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/shop'>Shop the garden catalogue</a></nav>"
        f"<article><h1>Photosynthesis</h1><p>{body}</p><p>{body}</p></article>"
        "<footer>Copyright 2026 Garden Inc. All rights reserved. Subscribe to our newsletter.</footer>"
        "</body></html>"
    ).encode()


def pdf_file(body: str = ARTICLE) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, body)
    return bytes(pdf.output())


def docx_file(body: str = ARTICLE) -> bytes:
    from docx import Document

    document = Document()
    document.add_heading("Photosynthesis", level=1)
    document.add_paragraph(body)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


FORMATS = {
    "txt": ("notes.txt", "text/plain", text_file),
    "md": ("notes.md", "text/markdown", markdown_file),
    "html": ("page.html", "text/html", html_file),
    "pdf": ("paper.pdf", "application/pdf", pdf_file),
    "docx": ("memo.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx_file),
}

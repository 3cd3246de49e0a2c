"""Text normalisation applied to every extracted document before chunking.

The result is what chunk offsets refer to, so the function must be deterministic and idempotent:
normalize_text(normalize_text(x)) == normalize_text(x).
"""

from __future__ import annotations

import re
import unicodedata

# Line and page separators become plain newlines first, so they survive control-char stripping.
_LINE_BREAKS = str.maketrans(
    {
        "\r": "\n",
        "\x0b": "\n",
        "\x85": "\n",
        "\u2028": "\n",
        "\x0c": "\n\n",
        "\u2029": "\n\n",
    }
)

# Invisible format characters that carry no text; ZWJ/ZWNJ stay because some scripts need them.
_INVISIBLE = ("\u00ad", "\u200b", "\u2060", "\ufeff")


def _build_strip_table() -> dict[int, None]:
    table: dict[int, None] = {ord(ch): None for ch in _INVISIBLE}
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)):
        if chr(code) not in "\n\t":
            table[code] = None
    return table


_STRIP_TABLE = _build_strip_table()
_SURROGATES = re.compile("[\ud800-\udfff]")
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_EXTRA_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFKC, no control characters, single spaces inside lines, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    text = _SURROGATES.sub("", text.translate(_STRIP_TABLE))
    text = unicodedata.normalize("NFKC", text)
    text = _INLINE_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _EXTRA_BLANK_LINES.sub("\n\n", text)
    return text.strip()

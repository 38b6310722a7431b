"""The one way a value from the audit records reaches a PDF: ``safe``.

Rows hold whatever the source held. Before a value becomes Paragraph markup it is cut to a
bounded length (with a marker saying how much was cut), every character the standard PDF fonts
cannot show or that could change how text is read is replaced by a visible escape (control
characters, bidirectional overrides, other format characters, characters outside WinAnsi), and
the result is XML-escaped, so no ``<font>``, ``<para>`` or entity in a row can become markup.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from xml.sax.saxutils import escape

#: Default bound of one rendered value; table cells use less (see ``CELL``).
PROSE = 2000
CELL = 400

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) in _HIDDEN:
        return f"[U+{ord(ch):04X}]"
    try:
        ch.encode("cp1252")  # the standard Type 1 fonts draw WinAnsi, nothing else
    except UnicodeEncodeError:
        return f"[U+{ord(ch):04X}]"
    return ch


def plain(value: object, *, limit: int = PROSE) -> str:
    """``value`` as text the standard fonts can draw, bounded; not yet markup-escaped."""
    text = "" if value is None else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    shown = "".join(map(_visible, text))
    if cut > 0:
        shown += f" \u2026[truncated: {cut} more characters]"
    return shown


def safe(value: object, *, limit: int = PROSE) -> str:
    """``value`` as Paragraph markup that renders literally (see the module docstring)."""
    return escape(plain(value, limit=limit), {'"': "&quot;", "'": "&#39;"})


def safe_lines(value: object, *, limit: int = PROSE) -> str:
    """Like ``safe``, but each line break of the value becomes a rendered line break."""
    text = "" if value is None else str(value)
    cut = len(text) - limit
    lines = (text[:limit] if cut > 0 else text).split("\n")
    out = "<br/>".join(_indent(safe(line, limit=limit)) for line in lines)
    return out + (safe(f" \u2026[truncated: {cut} more characters]") if cut > 0 else "")


def _indent(line: str) -> str:
    """Keep a line's indentation: leading spaces would otherwise collapse."""
    stripped = line.lstrip(" ")
    return "&nbsp;" * (len(line) - len(stripped)) + stripped

"""Text as the deny lists and detectors see it: bounded, cleaned and (for word lists) folded.

Evasion by encoding is cheap: ``f\u200buck`` (a zero-width space), ``fսck`` (an Armenian letter),
``ｆｕｃｋ`` (full-width letters) or ``jаne@example.com`` (a Cyrillic ``а``) read the same to a
person and differ to a regex. ``clean`` undoes that before any matching:

1. remove invisible format characters (zero-width spaces and joiners, word joiner and invisible
   operators, BOM, soft hyphen, bidi embeddings/overrides/isolates, Mongolian vowel separator,
   combining grapheme joiner);
2. Unicode NFKC (full-width, mathematical, circled and ligature forms become plain letters);
3. fold common homoglyphs: Cyrillic, Greek and Armenian letters that look like Latin ones.

``fold`` adds ``casefold`` for case-insensitive word matching. ASCII text skips all of it: it
cannot hold any of those characters, so offsets reported on ASCII input are offsets in the input.

Bounds: a text longer than ``MAX_INSPECT_CHARS`` is cut to that length before anything else runs,
and the rule says so in its detail; rows are walked to ``MAX_DEPTH`` levels of lists and mappings
and at most ``MAX_TEXTS`` strings.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

#: Characters of one field inspected by deny lists, detectors and patterns (1 MB of text).
MAX_INSPECT_CHARS = 1_000_000
#: Levels of nested lists/mappings walked inside a field.
MAX_DEPTH = 4
#: Strings read from one row.
MAX_TEXTS = 10_000

_FORMAT_CHARS = (
    [0x00AD, 0x034F, 0x180E, 0xFEFF]
    + list(range(0x200B, 0x2010))      # zero-width space/non-joiner/joiner, LRM, RLM
    + list(range(0x202A, 0x202F))      # bidi embeddings and overrides
    + list(range(0x2060, 0x2065))      # word joiner, invisible operators
    + list(range(0x2066, 0x206A)))     # bidi isolates
_REMOVE_FORMAT = {cp: None for cp in _FORMAT_CHARS}

# Look-alike letters, upper and lower case, folded before casefold so that case distinctions
# that look different (Greek Η is an H, η an n) are kept.
_HOMOGLYPH_PAIRS = {
    # Cyrillic
    "А": "A", "а": "a", "В": "B", "в": "b", "Е": "E", "е": "e", "Ё": "E", "ё": "e", "К": "K",
    "к": "k", "М": "M", "м": "m", "Н": "H", "н": "h", "О": "O", "о": "o", "Р": "P", "р": "p",
    "С": "C", "с": "c", "Т": "T", "т": "t", "У": "Y", "у": "y", "Х": "X", "х": "x", "Ѕ": "S",
    "ѕ": "s", "І": "I", "і": "i", "Ї": "I", "ї": "i", "Ј": "J", "ј": "j", "Ԁ": "D", "ԁ": "d",
    "Һ": "H", "һ": "h", "Ԛ": "Q", "ԛ": "q", "Ԝ": "W", "ԝ": "w", "Ӏ": "I", "ӏ": "l", "Ү": "Y",
    "ү": "y", "Ɡ": "G", "ɡ": "g",
    # Greek
    "Α": "A", "α": "a", "Β": "B", "β": "b", "Ε": "E", "ε": "e", "Ζ": "Z", "Η": "H", "η": "n",
    "Ι": "I", "ι": "i", "Κ": "K", "κ": "k", "Μ": "M", "Ν": "N", "ν": "v", "Ο": "O", "ο": "o",
    "Ρ": "P", "ρ": "p", "Τ": "T", "τ": "t", "Υ": "Y", "υ": "u", "Χ": "X", "χ": "x", "ϲ": "c",
    "Ϲ": "C", "ϳ": "j",
    # Armenian and Latin look-alikes
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ı": "i", "ɑ": "a", "ɩ": "i",
}
HOMOGLYPHS = {ord(src): dst for src, dst in _HOMOGLYPH_PAIRS.items()}
_CLEAN_TABLE = {**_REMOVE_FORMAT, **HOMOGLYPHS}


def bound(text: str) -> tuple[str, bool]:
    """The part of ``text`` that is inspected, and whether it was cut."""
    if len(text) > MAX_INSPECT_CHARS:
        return text[:MAX_INSPECT_CHARS], True
    return text, False


def clean(text: str) -> str:
    """Format characters removed, NFKC, homoglyphs folded (case kept)."""
    if text.isascii():
        return text
    stripped = text.translate(_REMOVE_FORMAT)
    # NFKC may produce look-alikes (e.g. from compatibility forms), so fold after it; a folded
    # base letter may then compose with a following accent, hence the final NFC.
    folded = unicodedata.normalize("NFKC", stripped).translate(_CLEAN_TABLE)
    return unicodedata.normalize("NFC", folded)


def fold(text: str) -> str:
    """``clean`` then casefold: the form deny-list words are compared in."""
    if text.isascii():
        return text.lower()
    return clean(text).casefold()


def fold_term(term: str) -> str:
    """A deny-list term in the same form as the text it is compared with."""
    return " ".join(fold(term).split())


def is_blank(value: Any) -> bool:
    """Missing-like text: only whitespace and invisible format characters."""
    return isinstance(value, str) and not value.translate(_REMOVE_FORMAT).strip()


def iter_texts(row: Mapping[str, Any], fields: Iterable[str] | None = None,
               exclude: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """``(path, text)`` for every string in the chosen fields of ``row``, nested ones included
    (``notes[2]``, ``meta.author``), depth-first, at most ``MAX_TEXTS`` of them."""
    skip = frozenset(exclude)
    names = list(row) if fields is None else [name for name in fields if name in row]
    budget = MAX_TEXTS
    for name in names:
        if name in skip:
            continue
        stack: list[tuple[str, Any, int]] = [(str(name), row[name], 0)]
        while stack:
            path, value, depth = stack.pop()
            if isinstance(value, str):
                yield path, value
                budget -= 1
                if budget <= 0:
                    return
            elif depth < MAX_DEPTH and isinstance(value, Mapping):
                children = [(f"{path}.{key}", item, depth + 1)
                            for key, item in islice(value.items(), budget)]
                stack.extend(reversed(children))
            elif depth < MAX_DEPTH and isinstance(value, (list, tuple)):
                children = [(f"{path}[{i}]", item, depth + 1)
                            for i, item in enumerate(islice(value, budget))]
                stack.extend(reversed(children))

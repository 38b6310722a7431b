"""Rules that read free text: citations, deny_list, pii.

All three read at most ``text.MAX_INSPECT_CHARS`` characters of each field and say in their
detail which fields were cut (``truncated``). Deny lists and detectors read the text cleaned
(``text.clean``/``text.fold``), so offsets in their details are offsets in the cleaned text; for
ASCII input that is the input itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from governance_pipeline.governance.policy.base import PASS, RowRule, RuleVerdict, fail
from governance_pipeline.governance.policy.detectors import MAX_FINDINGS, detect
from governance_pipeline.governance.policy.text import (
    MAX_INSPECT_CHARS, bound, clean, fold, is_blank, iter_texts)

def _clean_pass(truncated: list[str]) -> RuleVerdict:
    """A pass; when part of a field went unread, a pass that says so (and which fields)."""
    if not truncated:
        return PASS
    return RuleVerdict(True, {"truncated": truncated, "max_inspect_chars": MAX_INSPECT_CHARS})


# --- citations ------------------------------------------------------------------------------------
_CITATION_PATTERNS = {
    "numeric": re.compile(r"\[(\d{1,4}(?:, ?\d{1,4}){0,19})\]"),
    "footnote": re.compile(r"\[\^([\w\-]{1,32})\]"),
    "url": re.compile(r"(?<![\w/])https?://[^\s<>\"'\]\)]{1,2048}"),
}
_URL_TRAILER = ".,;:!?"


def _citations(text: str, markers: Iterable[str]) -> set[str]:
    """Distinct citations in ``text``: numbers of ``[1]``/``[1, 2]``, labels of ``[^note]``,
    and URLs (trailing sentence punctuation removed)."""
    found: set[str] = set()
    for marker in markers:
        for m in _CITATION_PATTERNS[marker].finditer(text):
            if marker == "numeric":
                found.update(f"[{int(n)}]" for n in m.group(1).replace(" ", "").split(","))
            elif marker == "footnote":
                found.add(f"[^{m.group(1)}]")
            else:
                found.add(m.group(0).rstrip(_URL_TRAILER))
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class CitationsCheck(RowRule):
    field: str
    min: int
    markers: tuple[str, ...]

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        value = row.get(self.field)
        truncated = False
        if isinstance(value, (list, tuple)):
            found = sum(1 for item in value if item is not None and not is_blank(item))
            source = "list"
        elif isinstance(value, str):
            inspected, truncated = bound(value)
            found = len(_citations(inspected, self.markers))
            source = "text"
        elif value is None:
            found, source = 0, "missing"
        else:
            return fail(field=self.field, reason="not_text_or_list", type=type(value).__name__,
                        min=self.min)
        if found >= self.min:
            return PASS
        return fail(field=self.field, reason="too_few_citations", found=found, min=self.min,
                    source=source, markers=list(self.markers), truncated=truncated)


# --- deny lists -----------------------------------------------------------------------------------
#: A word, as deny lists see words: letters and digits of any script (underscore separates).
WORD = re.compile(r"[^\W_]+")


@lru_cache(maxsize=8)
def shipped_list(name: str) -> tuple[str, ...]:
    """A deny list shipped in ``policy/data/<name>.txt``: one term a line, ``#`` comments."""
    text = (resources.files("governance_pipeline.governance.policy") / "data"
            / f"{name}.txt").read_text(encoding="utf-8")
    terms = (line.strip() for line in text.splitlines())
    return tuple(term for term in terms if term and not term.startswith("#"))


def term_words(term: str) -> tuple[str, ...]:
    """A term as the sequence of folded words it matches (``"F*ck  off"`` → ``("f", "ck",
    "off")``)."""
    return tuple(WORD.findall(fold(term)))


@dataclass(frozen=True, slots=True)
class DenyTerms:
    """Terms by their first word, each with the sequence of words it needs and where it came
    from; matching is one pass over the words of the text."""

    by_first: Mapping[str, tuple[tuple[tuple[str, ...], str, str], ...]]

    @classmethod
    def build(cls, entries: Iterable[tuple[tuple[str, ...], str, str]]) -> DenyTerms:
        grouped: dict[str, dict[tuple[str, ...], tuple[tuple[str, ...], str, str]]] = {}
        for words, source, shown in entries:
            grouped.setdefault(words[0], {}).setdefault(words, (words, source, shown))
        # longest first: "son of a bitch" is reported rather than "son"
        return cls({first: tuple(sorted(terms.values(), key=lambda t: -len(t[0])))
                    for first, terms in grouped.items()})

    def find(self, text: str) -> list[tuple[int, str, str]]:
        """``(offset, source, shown)`` of every whole-word occurrence in folded ``text``."""
        words = [(m.start(), m.group(0)) for m in WORD.finditer(text)]
        hits: list[tuple[int, str, str]] = []
        for index, (offset, word) in enumerate(words):
            for needed, source, shown in self.by_first.get(word, ()):
                if len(needed) == 1 or all(
                        index + k < len(words) and words[index + k][1] == needed[k]
                        for k in range(1, len(needed))):
                    hits.append((offset, source, shown))
                    break
        return hits


def mask_term(term: str) -> str:
    """A deny-list term shown without spelling it out: first letter, then one ``*`` a letter."""
    return term[0] + "*" * (len(term) - 1)


@dataclass(slots=True)
class TextScan:
    findings: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    truncated: list[str] = field(default_factory=list)


def scan_texts(row: Mapping[str, Any], fields: tuple[str, ...] | None,
               exclude: tuple[str, ...],
               find: Callable[[str, int], tuple[list[dict[str, Any]], int]]) -> TextScan:
    """Every text of ``row`` in scope, bounded, through ``find(text, room)`` → (the first
    ``room`` findings, how many in all); findings are kept up to ``MAX_FINDINGS`` in all."""
    scan = TextScan()
    for path, text in iter_texts(row, fields, exclude):
        inspected, cut = bound(text)
        if cut:
            scan.truncated.append(path)
        kept, count = find(inspected, MAX_FINDINGS - len(scan.findings))
        scan.total += count
        scan.findings.extend({"field": path, **f} for f in kept)
    return scan


@dataclass(frozen=True, slots=True, kw_only=True)
class DenyListCheck(RowRule):
    terms: DenyTerms
    fields: tuple[str, ...] | None
    exclude_fields: tuple[str, ...]

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        def find(text: str, room: int) -> tuple[list[dict[str, Any]], int]:
            hits = list(self.terms.find(fold(text)))
            return [{"offset": offset, "list": source, "term": shown}
                    for offset, source, shown in hits[:room]], len(hits)

        scan = scan_texts(row, self.fields, self.exclude_fields, find)
        if not scan.total:
            return _clean_pass(scan.truncated)
        return fail(findings=scan.findings, total=scan.total, truncated=scan.truncated)


# --- PII and secrets ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PiiCheck(RowRule):
    detectors: tuple[str, ...]
    fields: tuple[str, ...] | None
    exclude_fields: tuple[str, ...]

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        def find(text: str, room: int) -> tuple[list[dict[str, Any]], int]:
            kept, count = detect(clean(text), self.detectors, limit=room)
            return [finding.as_dict() for finding in kept], count

        scan = scan_texts(row, self.fields, self.exclude_fields, find)
        if not scan.total:
            return _clean_pass(scan.truncated)
        return fail(findings=scan.findings, total=scan.total,
                    detectors=sorted({f["detector"] for f in scan.findings}),
                    truncated=scan.truncated)

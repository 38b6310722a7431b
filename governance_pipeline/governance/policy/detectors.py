"""PII and secret detectors over cleaned text, each finding redacted before it leaves this module.

Every pattern here runs in linear time on any input. The rules that make that true:

* each pattern starts with a negative look-behind on the characters it consumes, so inside a long
  run (50,000 letters, a megabyte of digits) only the run's first position attempts a match, and
  every later position fails on one character;
* every quantifier is bounded (``{1,64}``, never ``+`` or ``*``) and repeated groups are separated
  by a character the group cannot contain, so a failed attempt backtracks a bounded number of
  steps;
* the caller cuts text to ``text.MAX_INSPECT_CHARS`` first (``text.bound``).

Findings carry a ``redacted`` form (``j***@e***.com``, ``**** **** **** 4242``); the matched
value itself is never returned, so it cannot reach a decision record or a log.
"""

from __future__ import annotations

import math
import re
from collections import Counter as _Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

#: Findings kept per text with their position and redacted form; the rest are only counted.
MAX_FINDINGS = 20


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str          # email, phone, credit_card, national_id, secret
    kind: str              # e.g. us_ssn, uk_nino, aws_access_key_id, visa
    start: int             # character offsets in the cleaned text
    end: int
    redacted: str

    def as_dict(self) -> dict[str, object]:
        return {"detector": self.detector, "kind": self.kind, "offset": self.start,
                "length": self.end - self.start, "redacted": self.redacted}


# (start, end, kind, redacted-form maker) of one accepted match
_Hit = tuple[int, int, str, Callable[[], str]]

# --- email ----------------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![\w.%+\-])([\w.%+\-]{1,64})@"
    r"((?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63})(?![\w\-])")


def _redact_email(local: str, domain: str) -> str:
    head, _, tld = domain.rpartition(".")
    return f"{local[0]}***@{head[0]}***.{tld}"


def _emails(text: str) -> Iterator[_Hit]:
    for m in _EMAIL.finditer(text):
        local, domain = m.group(1), m.group(2)
        if local.startswith(".") or local.endswith(".") or ".." in local:
            continue
        yield m.start(), m.end(), "email", lambda lp=local, d=domain: _redact_email(lp, d)


# --- phone ----------------------------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .\-])"
    r"(?:\+\d{8,15}"
    r"|(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]\d{1,4}){1,5})"
    r"(?![\w+])(?![ .\-]\d)")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _mask_digits(value: str, keep: int) -> str:
    digits = sum(ch.isdigit() for ch in value)
    out, seen = [], 0
    for ch in value:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def _phones(text: str) -> Iterator[_Hit]:
    for m in _PHONE.finditer(text):
        value = m.group(0)
        digits = sum(ch.isdigit() for ch in value)
        international = value.startswith("+")
        if not (10 <= digits <= 15 or (international and 8 <= digits <= 15)):
            continue
        if _IPV4.fullmatch(value):
            continue
        yield m.start(), m.end(), "phone", lambda v=value: _mask_digits(v, 2)


# --- payment cards --------------------------------------------------------------------------------
_CARD = re.compile(r"(?<!\d)(?<!\d[ \-])\d(?:[ \-]?\d){12,18}(?![ \-]?\d)")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a payment card number (any Unicode decimal digits)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    """The card network named by the number's prefix, or ``card`` when none is recognised."""
    ascii_digits = "".join(str(int(ch)) for ch in digits)
    two, four = int(ascii_digits[:2]), int(ascii_digits[:4])
    if ascii_digits[0] == "4":
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if ascii_digits.startswith(("6011", "65")) or 644 <= int(ascii_digits[:3]) <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38) or 300 <= int(ascii_digits[:3]) <= 305:
        return "diners"
    if two == 62:
        return "unionpay"
    return "card"


def _cards(text: str) -> Iterator[_Hit]:
    for m in _CARD.finditer(text):
        digits = "".join(ch for ch in m.group(0) if ch.isdigit())
        if not 13 <= len(digits) <= 19 or len(set(digits)) == 1 or not luhn_valid(digits):
            continue
        last4 = "".join(str(int(ch)) for ch in digits[-4:])
        yield (m.start(), m.end(), card_brand(digits),
               lambda tail=last4: f"**** **** **** {tail}")


# --- national identifiers -------------------------------------------------------------------------
_SSN = re.compile(r"(?<![\d\-])(\d{3})([ \-])(\d{2})\2(\d{4})(?![\d\-])")
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])"
    r"(?![A-Za-z0-9])", re.IGNORECASE)
_NINO_NEVER_ISSUED = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
#: Numbers published in advertising or reserved, never a real person's.
_SSN_PUBLIC = frozenset({"078051120", "219099999", "123456789"})


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    area_n = int(area)
    if area_n == 0 or area_n == 666 or area_n >= 900:
        return False
    if int(group) == 0 or int(serial) == 0:
        return False
    return f"{area}{group}{serial}" not in _SSN_PUBLIC


def _national_ids(text: str) -> Iterator[_Hit]:
    for m in _SSN.finditer(text):
        if _ssn_valid(m.group(1), m.group(3), m.group(4)):
            yield m.start(), m.end(), "us_ssn", lambda: "***-**-****"
    for m in _NINO.finditer(text):
        if m.group(1).upper() not in _NINO_NEVER_ISSUED:
            yield m.start(), m.end(), "uk_nino", lambda: "** ** ** ** *"


# --- secrets --------------------------------------------------------------------------------------
_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[str], str]], ...] = (
    ("aws_access_key_id",
     re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|APKA)"
                r"[A-Z0-9]{16}(?![A-Za-z0-9])"),
     lambda v: v[:4] + "*" * 16),
    ("github_token",
     re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]"
                r"{22,251})(?![A-Za-z0-9_])"),
     lambda v: v[:v.index("_") + 1] + f"***({len(v)} chars)"),
    ("slack_token",
     re.compile(r"(?<![A-Za-z0-9\-])xox[abposr]-[A-Za-z0-9\-]{10,250}(?![A-Za-z0-9\-])"),
     lambda v: v[:5] + f"***({len(v)} chars)"),
    ("slack_webhook",
     re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/\-]{20,200}"),
     lambda v: "https://hooks.slack.com/services/***"),
    ("private_key",
     re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"),
     lambda v: "-----BEGIN *** PRIVATE KEY-----"),
    ("jwt",
     re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,4096}\.eyJ[A-Za-z0-9_\-]{5,8192}"
                r"\.[A-Za-z0-9_\-]{10,4096}(?![A-Za-z0-9_\-])"),
     lambda v: f"eyJ***.eyJ***.***({len(v)} chars)"),
)
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_])(api[_\-]?key|secret[_\-]?key|client[_\-]?secret|access[_\-]?token|"
    r"auth[_\-]?token|private[_\-]?key|token|secret|password|passwd|pwd)"
    r"[\"']?[ \t]{0,5}[:=][ \t]{0,5}[\"']?([A-Za-z0-9_\-+/=.~]{16,512})", re.IGNORECASE)
#: Bits per character above which an assigned value is taken for a generated secret.
MIN_SECRET_ENTROPY = 3.0


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    if not value:
        return 0.0
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in _Tally(value).values())


def _looks_generated(value: str) -> bool:
    has_letter = any(ch.isalpha() for ch in value)
    has_digit = any(ch.isdigit() for ch in value)
    return has_letter and has_digit and shannon_entropy(value) >= MIN_SECRET_ENTROPY


def _secrets(text: str) -> Iterator[_Hit]:
    for kind, pattern, redact in _SECRET_PATTERNS:
        for m in pattern.finditer(text):
            yield m.start(), m.end(), kind, lambda v=m.group(0), r=redact: r(v)
    for m in _ASSIGNMENT.finditer(text):
        name, value = m.group(1), m.group(2)
        if _looks_generated(value):
            yield (m.start(), m.end(), "assigned_secret",
                   lambda n=name, v=value: f"{n}=***({len(v)} chars)")


_DETECTORS: dict[str, Callable[[str], Iterator[_Hit]]] = {
    "secret": _secrets, "credit_card": _cards, "national_id": _national_ids,
    "email": _emails, "phone": _phones}
#: Order of preference when two detectors claim overlapping text.
PRIORITY = tuple(_DETECTORS)


def detect(text: str, detectors: Iterable[str] = PRIORITY,
           limit: int = MAX_FINDINGS) -> tuple[list[Finding], int]:
    """Findings in ``text`` (already ``text.clean``-ed and bounded): the first ``limit`` by
    position, and how many there are in all. Overlapping findings are reported once: the one
    that starts first, and of two starting together the detector earlier in ``PRIORITY``."""
    wanted = set(detectors)
    unknown = wanted - set(_DETECTORS)
    if unknown:
        raise ValueError(f"unknown detectors: {sorted(unknown)}")
    hits: list[tuple[int, int, int, str, str, Callable[[], str]]] = []
    for rank, name in enumerate(PRIORITY):
        if name in wanted:
            hits.extend((start, rank, end, name, kind, redact)
                        for start, end, kind, redact in _DETECTORS[name](text))
    hits.sort(key=lambda hit: (hit[0], hit[1]))
    kept: list[Finding] = []
    total, last_end = 0, -1
    for start, _rank, end, name, kind, redact in hits:
        if start < last_end:
            continue
        last_end = end
        total += 1
        if len(kept) < limit:
            kept.append(Finding(name, kind, start, end, redact()))
    return kept, total

"""Detectors and normalisation: each detector with findings and near misses, Luhn, redaction,
look-alike and invisible-character evasions, and adversarial inputs that must finish quickly
(linear-time patterns, bounded inspection)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance_pipeline.governance.policy.detectors import (
    PRIORITY, card_brand, detect, luhn_valid, shannon_entropy)
from governance_pipeline.governance.policy.model import DETECTOR_NAMES
from governance_pipeline.governance.policy.rules import Counters, Subject, compile_policy
from governance_pipeline.governance.policy.model import parse_policy
from governance_pipeline.governance.policy.text import (
    MAX_INSPECT_CHARS, bound, clean, fold, is_blank, iter_texts)

ZWSP, ZWJ, SHY, BOM, WJ = "\u200b", "\u200d", "\u00ad", "\ufeff", "\u2060"


def kinds(text: str, *detectors: str) -> list[tuple[str, str]]:
    found, _ = detect(clean(text), detectors or PRIORITY)
    return [(f.detector, f.kind) for f in found]


def pii_rule(**options: object):
    data = {"policy": "p", "version": 1,
            "rules": [{"id": "pii", "kind": "pii", "fix": "redact", **options}]}
    return compile_policy(parse_policy(data, origin="t"))[0]


def check(rule, row: dict) -> object:
    return rule.evaluate([Subject("t", 0, row)], Counters(), 0.0)[0]


# --- normalisation --------------------------------------------------------------------------------
def test_clean_removes_invisible_characters_and_folds_lookalikes() -> None:
    assert clean(f"f{ZWSP}u{ZWJ}c{SHY}k{BOM}{WJ}") == "fuck"
    assert clean("ｆｕｃｋ") == "fuck"                       # full-width, NFKC
    assert clean("𝐟𝐮𝐜𝐤") == "fuck"                        # mathematical bold, NFKC
    assert clean("jаne@exаmple.com") == "jane@example.com"  # Cyrillic а
    assert clean("ΒΙΤCΗ") == "BITCH"                      # Greek capitals
    assert clean("е\u0301") == "é"                         # composed after folding the base
    assert fold("ВІТСН") == "bitch"                        # Cyrillic capitals, casefolded
    assert fold("STRASSE") == fold("straße") == "strasse"
    assert clean("plain ascii stays") == "plain ascii stays"


def test_blank_means_whitespace_or_invisible_only() -> None:
    assert is_blank("  \t\n") and is_blank(f"{ZWSP}{BOM} ") and is_blank("")
    assert not is_blank(" x ") and not is_blank(0) and not is_blank(None)


def test_bound_cuts_long_text_and_says_so() -> None:
    assert bound("abc") == ("abc", False)
    text, cut = bound("x" * (MAX_INSPECT_CHARS + 5))
    assert cut and len(text) == MAX_INSPECT_CHARS


def test_iter_texts_walks_nested_values_with_paths_and_respects_fields() -> None:
    row = {"a": "x", "n": 5, "meta": {"note": "y", "deep": [[["z"]]]}, "tags": ["p", None, "q"]}
    assert list(iter_texts(row)) == [("a", "x"), ("meta.note", "y"),
                                     ("meta.deep[0][0][0]", "z"), ("tags[0]", "p"),
                                     ("tags[2]", "q")]
    assert list(iter_texts(row, ["tags", "absent"])) == [("tags[0]", "p"), ("tags[2]", "q")]
    assert [p for p, _ in iter_texts(row, exclude=["meta", "tags"])] == ["a"]
    too_deep = {"x": [[[[["hidden"]]]]]}
    assert list(iter_texts(too_deep)) == []


# --- detectors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe@example.co.uk today", [("email", "email")]),
    ("call +1 (415) 555-2671 now", [("phone", "phone")]),
    ("ring 020 7946 0958", [("phone", "phone")]),
    ("ring +442079460958", [("phone", "phone")]),
    ("card 4242 4242 4242 4242", [("credit_card", "visa")]),
    ("amex 3782-822463-10005", [("credit_card", "amex")]),
    ("mc 5555555555554444.", [("credit_card", "mastercard")]),
    ("ssn 536-22-1234", [("national_id", "us_ssn")]),
    ("ni AB 12 34 56 C", [("national_id", "uk_nino")]),
    ("ni ab123456c", [("national_id", "uk_nino")]),
    ("key AKIAIOSFODNN7EXAMPLE", [("secret", "aws_access_key_id")]),
    ("tok ghp_" + "a1B2" * 9, [("secret", "github_token")]),
    ("tok xoxb-123456789012-abcdefghijkl", [("secret", "slack_token")]),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", [("secret", "private_key")]),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     [("secret", "jwt")]),
    ('{"api_key": "sk9f8d7s6a5d4f3g2h1j0k"}', [("secret", "assigned_secret")]),
    ("password=Xy7pQ2rT9wZ4mN8k", [("secret", "assigned_secret")]),
])
def test_each_detector_finds_its_kind(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


@pytest.mark.parametrize("text", [
    "no at sign here", "a@b", "trailing.dot.@example.com", "version 1.2.3.4",
    "ip 192.168.100.200", "date 2024-01-15 and 12:30", "order 12345",
    "card 4242 4242 4242 4241",                     # fails Luhn
    "zeros 0000 0000 0000 0000",                    # Luhn-valid but one repeated digit
    "twenty digits 1234 5678 9012 3456 7890 1",     # too long for a card, too long for a phone
    "ssn 000-12-3456", "ssn 666-12-3456", "ssn 912-12-3456", "ssn 536-00-1234",
    "ssn 536-22-0000", "ssn 078-05-1120", "ssn 536-22 1234",
    "ni QQ 12 34 56 C", "ni GB 12 34 56 A", "ni AB 12 34 56 E",
    "key AKIAIOSFODNN7EXAMPL", "token: short", "token: aaaaaaaaaaaaaaaaaaaaaa",
    "password = this_is_not_a_secret_value", "api_key=${API_KEY}",
])
def test_near_misses_are_not_findings(text: str) -> None:
    assert kinds(text) == []


def test_luhn_and_card_brands() -> None:
    assert luhn_valid("4242424242424242") and luhn_valid("79927398713")
    assert not luhn_valid("4242424242424241") and not luhn_valid("79927398710")
    assert luhn_valid("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢")           # Arabic-Indic digits
    assert card_brand("4111111111111111") == "visa"
    assert card_brand("2223003122003222") == "mastercard"
    assert card_brand("6011111111111117") == "discover"
    assert card_brand("3530111333300000") == "jcb"
    assert card_brand("9999999999999995") == "card"


def test_card_in_other_digits_and_look_alike_separators() -> None:
    assert kinds("４２４２ ４２４２ ４２４２ ４２４２") == [("credit_card", "visa")]   # full-width
    assert kinds(f"4242{ZWSP}4242{ZWSP}4242{ZWSP}4242") == [("credit_card", "visa")]


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0 and shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


def test_overlapping_findings_are_reported_once_by_priority() -> None:
    found, total = detect("+4242424242424242", PRIORITY)
    assert total == 1 and [(f.detector, f.start) for f in found] == [("credit_card", 1)]
    found, total = detect("+4242424242424242", ["phone"])
    assert total == 0  # 16 digits: too many for a phone
    assert tuple(PRIORITY) == DETECTOR_NAMES


def test_findings_beyond_the_limit_are_counted_not_listed() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(50))
    found, total = detect(text, ["email"], limit=20)
    assert total == 50 and len(found) == 20
    assert [f.start for f in found] == sorted(f.start for f in found)


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown detectors"):
        detect("x", ["iban"])


# --- evasions -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    f"j{ZWSP}ane@exa{ZWJ}mple.com",            # zero-width characters inside an email
    "jаne@ехаmple.com",                      # Cyrillic а, е, х
    "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",               # full-width, including ＠ and ．
    f"jane{SHY}@example{BOM}.com",
])
def test_disguised_emails_are_found(text: str) -> None:
    verdict = check(pii_rule(detectors=["email"]), {"body": text})
    assert not verdict.passed
    assert verdict.detail["findings"][0]["redacted"] == "j***@e***.com"


# --- redaction ------------------------------------------------------------------------------------
RAW_VALUES = {
    "email": "jane.doe@example.com",
    "phone": "+1 (415) 555-2671",
    "credit_card": "4242-4242-4242-4242",
    "national_id": "536-22-1234",
    "secret": "AKIAIOSFODNN7EXAMPLE",
    "assigned": "sk9f8d7s6a5d4f3g2h1j0k",
    "nino": "AB123456C",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
}


def test_raw_values_never_appear_in_details() -> None:
    row = {"body": (f"mail {RAW_VALUES['email']}, phone {RAW_VALUES['phone']}, card "
                    f"{RAW_VALUES['credit_card']}, ssn {RAW_VALUES['national_id']}, aws "
                    f"{RAW_VALUES['secret']}, api_key={RAW_VALUES['assigned']}, ni "
                    f"{RAW_VALUES['nino']}, jwt {RAW_VALUES['jwt']}")}
    verdict = check(pii_rule(), row)
    assert not verdict.passed and verdict.detail["total"] == 8
    dumped = json.dumps(verdict.detail)
    for raw in RAW_VALUES.values():
        assert raw not in dumped
        digits = "".join(ch for ch in raw if ch.isdigit())
        if len(digits) >= 6:
            assert digits not in dumped.replace(" ", "").replace("-", "")
    assert "jane.doe" not in dumped and "example.com" not in dumped
    assert "**** **** **** 4242" in dumped and "j***@e***.com" in dumped
    assert set(verdict.detail["detectors"]) == set(DETECTOR_NAMES)


# --- adversarial inputs ---------------------------------------------------------------------------
ADVERSARIAL = [
    "a" * 50_000 + "!",
    "1" * 1_000_000,
    "4" * 5_000_000,
    "1 " * 500_000,
    "1-" * 500_000,
    "12-" * 300_000,
    "(1)" * 300_000,
    "+1 " * 300_000,
    "a@" * 500_000,
    "a." * 500_000 + "@",
    ("x" * 63 + "@") * 15_000,
    "a@" + "b." * 400_000,
    "eyJ" * 300_000,
    "eyJa." * 200_000,
    "api_key=" * 100_000,
    "token: " + "a1" * 500_000,
    "-----BEGIN " * 90_000,
    "AKIA" * 250_000,
    "[1" * 500_000,
    "http://" * 150_000,
    ZWSP * 1_000_000 + "fuck",
    "а" * 1_000_000,                          # Cyrillic, non-ASCII path
    "é" * 2_000_000,
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: f"{t[:6]!r}x{len(t)}")
def test_adversarial_inputs_finish_without_crashing(text: str) -> None:
    data = {"policy": "p", "version": 1, "rules": [
        {"id": "pii", "kind": "pii", "fix": "f"},
        {"id": "deny", "kind": "deny_list", "lists": ["profanity"], "fix": "f"},
        {"id": "cite", "kind": "citations", "field": "body", "fix": "f"},
        {"id": "pat", "kind": "pattern", "field": "body", "regex": "^(a+)+$", "fix": "f"},
        {"id": "len", "kind": "length", "max_line": 10, "max_record": 10, "fix": "f"}]}
    rules = compile_policy(parse_policy(data, origin="t"))
    for rule in rules:
        verdict = rule.evaluate([Subject("t", 0, {"body": text})], Counters(), 0.0)[0]
        if not verdict.passed:
            json.dumps(verdict.detail)


@pytest.mark.timeout(10)
def test_a_field_over_the_inspection_limit_is_cut_and_named() -> None:
    late_email = "x " * MAX_INSPECT_CHARS + "jane@example.com"
    rule = pii_rule(detectors=["email"])
    verdict = check(rule, {"body": late_email, "short": "ok"})
    assert verdict.passed  # the email is past the inspected part, and the pass says so
    assert verdict.detail == {"truncated": ["body"], "max_inspect_chars": MAX_INSPECT_CHARS}
    deny = compile_policy(parse_policy({"policy": "p", "version": 1, "rules": [
        {"id": "d", "kind": "deny_list", "terms": ["secretword"], "fix": "f"}]}, origin="t"))[0]
    assert check(deny, {"body": "x " * MAX_INSPECT_CHARS + "secretword"}).detail[
        "truncated"] == ["body"]
    assert not check(deny, {"body": "secretword " + "x" * 2 * MAX_INSPECT_CHARS}).passed
    early = "jane@example.com " + "x" * (3 * MAX_INSPECT_CHARS)
    verdict = check(rule, {"body": early})
    assert not verdict.passed and verdict.detail["truncated"] == ["body"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_detectors_and_normalisation_never_crash_on_any_text(text: str) -> None:
    cleaned = clean(text)
    assert isinstance(fold(text), str)
    found, total = detect(cleaned, PRIORITY)
    assert total >= len(found)
    for finding in found:
        assert 0 <= finding.start < finding.end <= len(cleaned)
        json.dumps(finding.as_dict())


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 -+()."), max_size=200))
def test_digit_soup_never_crashes_and_cards_always_pass_luhn(text: str) -> None:
    for finding in detect(text, ["credit_card"], limit=100)[0]:
        digits = "".join(ch for ch in text[finding.start:finding.end] if ch.isdigit())
        assert 13 <= len(digits) <= 19 and luhn_valid(digits)


def test_the_shipped_profanity_list_is_well_formed() -> None:
    from governance_pipeline.governance.policy.text_rules import shipped_list, term_words

    path = (Path(__file__).resolve().parents[1] / "governance_pipeline" / "governance" / "policy"
            / "data" / "profanity.txt")
    assert path.read_text(encoding="utf-8").startswith("# Shipped deny list")
    terms = shipped_list("profanity")
    assert 30 <= len(terms) <= 1000 and len(set(terms)) == len(terms)
    assert all(term_words(term) == tuple(term.split()) for term in terms)  # already folded
    assert "fuck" in terms and "assess" not in terms

"""Every rule kind with passing and failing rows, details that are JSON-safe and say where, budget
and rate state across batches, and Counters' round trips through checkpoints."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import Severity
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.governance.policy.model import parse_policy
from governance_pipeline.governance.policy.rules import (
    PASS, CompiledRule, Counters, RuleVerdict, Subject, compile_policy)

ZWSP = "\u200b"


def make(kind: str, **options: Any) -> CompiledRule:
    data = {"policy": "pol", "version": 1,
            "rules": [{"id": "r1", "kind": kind, "fix": "fix it", **options}]}
    return compile_policy(parse_policy(data, origin="t"))[0]


def subjects(*rows: dict[str, Any], calls: int = 0, cost: float = 0.0) -> list[Subject]:
    return [Subject(f"tok-{i}", i, row, calls, cost) for i, row in enumerate(rows)]


def verdicts(rule: CompiledRule, *rows: dict[str, Any], counters: Counters | None = None,
             now: float = 0.0) -> list[RuleVerdict]:
    result = rule.evaluate(subjects(*rows), counters if counters is not None else Counters(), now)
    assert len(result) == len(rows)
    for verdict in result:
        if not verdict.passed:
            assert verdict.detail
            canonical_json(verdict.detail)  # JSON-safe: canonicalisable for the audit trail
        else:  # a pass says something only when part of a field went unread
            assert verdict.detail is None or set(verdict.detail) == {"truncated",
                                                                     "max_inspect_chars"}
    return result


def one(rule: CompiledRule, row: dict[str, Any]) -> RuleVerdict:
    return verdicts(rule, row)[0]


def test_a_failing_verdict_must_say_what_failed() -> None:
    with pytest.raises(ValueError, match="detail"):
        RuleVerdict(False, None)
    with pytest.raises(ValueError, match="detail"):
        RuleVerdict(False, {})
    assert PASS.passed


def test_compiled_rules_carry_their_identity() -> None:
    rule = make("threshold", field="x", max=1, severity="critical", blocks=False)
    assert (rule.policy_id, rule.rule_id, rule.kind, rule.severity, rule.blocks, rule.fix) == (
        "pol", "r1", "threshold", Severity.CRITICAL, False, "fix it")


# --- expression -----------------------------------------------------------------------------------
def test_expression_passes_fails_and_reports_values_but_not_text() -> None:
    rule = make("expression", expression="amount <= 100 and country != 'XX'")
    assert one(rule, {"amount": 5, "country": "DE"}).passed
    failed = one(rule, {"amount": 500, "country": "jane@example.com"})
    assert failed.detail["reason"] == "condition_false"
    assert failed.detail["values"] == {"amount": 500}
    assert "jane" not in json.dumps(failed.detail)


def test_expression_evaluation_errors_are_failures_not_crashes() -> None:
    rule = make("expression", expression="amount <= 100")
    missing = one(rule, {"other": 1})
    assert missing.detail["reason"] == "evaluation_error"
    assert missing.detail["error_code"] == "GP-EXPR-002" and missing.detail["stage"] == "expression"
    assert one(rule, {"amount": "ten"}).detail["reason"] == "evaluation_error"
    not_bool = make("expression", expression="amount")
    assert one(not_bool, {"amount": 1}).detail["reason"] == "evaluation_error"


def test_expression_on_a_decimal_nan_is_a_failure_not_a_crash() -> None:
    verdict = one(make("expression", expression="amount > 1"), {"amount": Decimal("NaN")})
    assert verdict.detail["reason"] == "evaluation_error"
    assert verdict.detail["error_code"] == "GP-EXPR-002"


def test_expression_when_limits_the_rows_checked() -> None:
    rule = make("expression", expression="approver is not null", when="status == 'approved'")
    assert [v.passed for v in verdicts(rule, {"status": "open", "approver": None},
                                       {"status": "approved", "approver": "ann"},
                                       {"status": "approved", "approver": None})] == [
        True, True, False]
    assert one(rule, {"approver": None}).detail["stage"] == "when"


# --- threshold ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("row", "reason"), [
    ({"amount": 5}, None), ({"amount": 0}, None), ({"amount": 100}, None),
    ({"amount": 100.5}, "above_max"), ({"amount": -1}, "below_min"),
    ({"amount": Decimal("7.5")}, None), ({"amount": Decimal("700")}, "above_max"),
    ({}, "missing"), ({"amount": None}, "missing"), ({"amount": "5"}, "not_a_number"),
    ({"amount": True}, "not_a_number"), ({"amount": float("nan")}, "not_finite"),
    ({"amount": float("inf")}, "not_finite"),
])
def test_threshold(row: dict[str, Any], reason: str | None) -> None:
    verdict = one(make("threshold", field="amount", min=0, max=100), row)
    assert verdict.passed is (reason is None)
    if reason:
        assert verdict.detail["reason"] == reason and verdict.detail["field"] == "amount"


def test_threshold_missing_may_pass() -> None:
    rule = make("threshold", field="amount", min=0, missing="pass")
    assert one(rule, {}).passed and not one(rule, {"amount": -3}).passed


# --- required fields ------------------------------------------------------------------------------
def test_required_fields() -> None:
    rule = make("required_fields", fields=["a", "b", "c", "d"])
    assert one(rule, {"a": 1, "b": "x", "c": [], "d": 0}).passed
    failed = one(rule, {"a": None, "b": "   ", "c": f"{ZWSP}\t"})
    assert failed.detail["missing"] == ["a", "b", "c", "d"]
    assert failed.detail["reasons"] == {"a": "null", "b": "blank", "c": "blank", "d": "absent"}


# --- length ---------------------------------------------------------------------------------------
def test_length_per_field_record_and_line() -> None:
    rule = make("length", fields={"title": {"min": 2, "max": 5}}, max_record=12, max_line=4,
                line_fields=["body"])
    assert one(rule, {"title": "abc", "body": "abcd\nab", "n": 10**9}).passed
    assert one(rule, {"title": None}).passed  # not text: required_fields' concern
    failed = one(rule, {"title": "abcdef", "body": "ab\nabcde\nabcdefg"})
    reasons = [(v.get("field"), v["reason"]) for v in failed.detail["violations"]]
    assert reasons == [("title", "too_long"), (None, "record_too_long"),
                       ("body", "line_too_long"), ("body", "line_too_long")]
    assert failed.detail["violations"][2]["line"] == 2
    assert one(rule, {"title": "a"}).detail["violations"][0]["reason"] == "too_short"


def test_length_counts_nested_text_in_the_record() -> None:
    rule = make("length", max_record=5)
    assert one(rule, {"tags": ["ab", "cd"]}).passed
    assert one(rule, {"tags": ["ab", "cd"], "meta": {"x": "ef"}}).detail["violations"][0][
        "length"] == 6


# --- pattern --------------------------------------------------------------------------------------
def test_pattern_match_and_not_match() -> None:
    rule = make("pattern", field="claim", regex="^CLM-[0-9]{6}$")
    assert one(rule, {"claim": "CLM-000123"}).passed
    failed = one(rule, {"claim": "CLM-12"})
    assert failed.detail["reason"] == "mismatch" and "CLM-12" not in json.dumps(failed.detail)
    assert one(rule, {}).detail["reason"] == "missing"
    assert one(rule, {"claim": "  "}).detail["reason"] == "missing"
    assert one(rule, {"claim": 5.0}).detail["reason"] == "not_text"
    forbid = make("pattern", field="note", regex="(?i)internal only", must="not_match",
                  missing="pass")
    assert one(forbid, {"note": "fine"}).passed and one(forbid, {}).passed
    assert not one(forbid, {"note": "INTERNAL ONLY draft"}).passed
    numbers = make("pattern", field="n", regex="^[0-9]{3}$")
    assert one(numbers, {"n": 123}).passed and not one(numbers, {"n": 12}).passed


def test_pattern_each_line_for_numbering() -> None:
    rule = make("pattern", field="thread", regex=r"^[0-9]{1,2}/ ", each_line=True)
    assert one(rule, {"thread": "1/ intro\n\n2/ body\n3/ end"}).passed
    failed = one(rule, {"thread": "1/ intro\nno number\n3/ end\nnor here"})
    assert failed.detail["lines"] == [2, 4] and failed.detail["total"] == 2


@pytest.mark.timeout(10)
def test_pattern_on_catastrophic_input_finishes() -> None:
    rule = make("pattern", field="s", regex="^(a+)+$")
    assert not one(rule, {"s": "a" * 50_000 + "!"}).passed
    assert one(rule, {"s": "a" * 50_000}).passed
    too_long = one(rule, {"s": "a" * 3_000_000})
    assert too_long.detail["reason"] == "too_long_to_inspect"  # fails closed
    assert "aaaa" not in json.dumps(too_long.detail)
    lines = make("pattern", field="s", regex="^x$", each_line=True)
    assert one(lines, {"s": "x\n" * 400_000}).passed
    assert one(lines, {"s": "x\n" * 400_000 + "y"}).detail["lines"] == [400_001]


# --- citations ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "found"), [
    ("See [1] and [2].", 2), ("See [1] and [1] again.", 1), ("Both [1, 3].", 2),
    ("Footnotes[^a] and [^b].", 2), ("At https://example.org/a. And http://x.io/b)", 2),
    ("Nothing here [x] [^] [12345]", 0), (["https://a", "", None, "b"], 2), ([], 0),
    (None, 0),
])
def test_citations_count_distinct_markers(value: Any, found: int) -> None:
    rule = make("citations", field="answer", min=2)
    verdict = one(rule, {"answer": value})
    assert verdict.passed is (found >= 2)
    if not verdict.passed:
        assert verdict.detail["found"] == found and verdict.detail["min"] == 2


def test_citations_markers_can_be_restricted_and_types_checked() -> None:
    rule = make("citations", field="answer", markers=["url"])
    assert not one(rule, {"answer": "only [1]"}).passed
    assert one(rule, {"answer": "see https://example.org"}).passed
    assert one(rule, {"answer": 5}).detail["reason"] == "not_text_or_list"
    assert one(rule, {}).detail["source"] == "missing"


# --- deny lists -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "what the fuck", "FUCK!", f"f{ZWSP}u{ZWSP}c{ZWSP}k this", "ｆｕｃｋ", "fսck",
    "you bаstаrd",   # Cyrillic а
    "ΒΙΤCΗ",         # Greek capitals
    "son-of-a-bitch", "ass_hat",
])
def test_profanity_is_found_through_disguises(text: str) -> None:
    failed = one(make("deny_list", lists=["profanity"]), {"body": text})
    assert not failed.passed
    finding = failed.detail["findings"][0]
    assert finding["field"] == "body" and finding["list"] == "profanity"
    assert "*" in finding["term"]


@pytest.mark.parametrize("text", [
    "a classic assessment", "Scunthorpe", "shitake? no: shiitake", "cocktail hour", "",
])
def test_whole_words_only(text: str) -> None:
    assert one(make("deny_list", lists=["profanity"]), {"body": text}).passed


def test_inline_terms_fields_and_multiword_terms() -> None:
    rule = make("deny_list", terms=["Project Nightingale", "acme"], fields=["body", "tags"])
    assert one(rule, {"body": "about project nightingales", "other": "acme"}).passed
    failed = one(rule, {"body": "PROJECT\nnightingale launch", "tags": ["x", "ACME"]})
    assert [(f["field"], f["term"]) for f in failed.detail["findings"]] == [
        ("body", "terms[0]"), ("tags[1]", "terms[1]")]
    excluded = make("deny_list", terms=["acme"], exclude_fields=["vendor"])
    assert one(excluded, {"vendor": "acme"}).passed
    assert not one(excluded, {"note": "acme"}).passed


def test_longest_term_wins_at_one_position() -> None:
    rule = make("deny_list", terms=["son", "son of a gun"])
    failed = one(rule, {"t": "son of a gun"})
    assert [f["term"] for f in failed.detail["findings"]] == ["terms[1]"]
    assert one(rule, {"t": "son of mine"}).detail["findings"][0]["term"] == "terms[0]"


# --- pii ------------------------------------------------------------------------------------------
def test_pii_scans_every_text_field_by_default_and_respects_fields() -> None:
    rule = make("pii")
    assert one(rule, {"a": "nothing", "n": 4242424242424242}).passed
    failed = one(rule, {"a": "x", "meta": {"contact": ["mail jane@example.com"]}})
    assert failed.detail["findings"][0]["field"] == "meta.contact[0]"
    only = make("pii", fields=["a"], detectors=["email"])
    assert one(only, {"a": "x", "b": "jane@example.com"}).passed
    assert one(only, {"a": "call +1 415 555 2671"}).passed  # phone not selected


# --- budgets --------------------------------------------------------------------------------------
def test_budget_rows_crossing_inside_one_batch() -> None:
    rule = make("budget", max_rows=3)
    counters = Counters()
    result = verdicts(rule, *({} for _ in range(5)), counters=counters)
    assert [v.passed for v in result] == [True, True, True, False, False]
    assert result[3].detail == {"reason": "budget_exceeded", "budget": "max_rows", "limit": 3,
                                "total": 4, "amount": 1}
    assert counters.budget_total("pol/r1") == 5


def test_budget_crossing_across_two_batches_and_a_resume() -> None:
    rule = make("budget", max_field_sum=100, field="tokens")
    counters = Counters()
    first = verdicts(rule, {"tokens": 40}, {"tokens": 50}, counters=counters)
    assert [v.passed for v in first] == [True, True]
    checkpoint = counters.delta_since(Counters())
    resumed = Counters.merged([checkpoint])
    second = verdicts(rule, {"tokens": 5}, {}, {"tokens": 6}, {"tokens": 1}, counters=resumed)
    assert [v.passed for v in second] == [True, True, False, False]
    assert second[2].detail["total"] == 101 and second[2].detail["field"] == "tokens"


def test_budget_of_calls_and_cost_and_uncountable_values() -> None:
    calls = make("budget", max_calls=4)
    counters = Counters()
    result = calls.evaluate(subjects({}, {}, {}, calls=2), counters, 0.0)
    assert [v.passed for v in result] == [True, True, False]
    cost = make("budget", max_call_cost=1.0)
    result = cost.evaluate(subjects({}, {}, cost=0.4), Counters(), 0.0)
    assert [v.passed for v in result] == [True, True]
    result = cost.evaluate(subjects({}, {}, {}, cost=0.4), Counters(), 0.0)
    assert [v.passed for v in result] == [True, True, False]
    tokens = make("budget", max_field_sum=10, field="tokens")
    bad = verdicts(tokens, {"tokens": "many"}, {"tokens": -5}, {"tokens": float("nan")},
                   {"tokens": Decimal("2.5")})
    assert [v.detail["reason"] if v.detail else None for v in bad] == [
        "uncountable", "uncountable", "uncountable", None]


# --- rates ----------------------------------------------------------------------------------------
def test_rate_window_with_a_manual_clock() -> None:
    clock = ManualClock()
    rule = make("rate", max=3, per_seconds=60)
    counters = Counters()

    def batch(size: int) -> list[bool]:
        rows = [{} for _ in range(size)]
        return [v.passed for v in verdicts(rule, *rows, counters=counters,
                                           now=clock.now().timestamp())]

    assert batch(2) == [True, True]
    clock.advance(30)
    assert batch(2) == [True, False]            # 4 events in the last 60 s
    clock.advance(31)                           # the two at t=0 left the window
    assert batch(2) == [True, False]            # the 2 at t=30 (a failed one too) and these
    clock.advance(60)
    assert batch(3) == [True, True, True]
    assert len(counters.to_json()["rates"]["pol/r1"]["times"]) == 3  # bounded by max


def test_rate_of_calls() -> None:
    rule = make("rate", max=5, per_seconds=10, unit="calls")
    counters = Counters()
    first = rule.evaluate(subjects({}, {}, calls=2), counters, 100.0)
    assert [v.passed for v in first] == [True, True]
    second = rule.evaluate(subjects({}, {}, calls=2), counters, 105.0)
    assert [v.passed for v in second] == [False, False]
    assert second[0].detail["in_window_at_least"] == 6
    idle = rule.evaluate(subjects({}, calls=0), counters, 105.0)
    assert idle[0].passed
    assert [v.passed for v in rule.evaluate(subjects({}, calls=5), counters, 200.0)] == [True]


# --- counters -------------------------------------------------------------------------------------
def run_chunks(chunks: list[list[dict[str, Any]]], times: list[float]) -> tuple[Counters, list]:
    """Evaluate a budget and a rate rule over chunks, checkpointing deltas and resuming from them
    before every chunk; return the final state and every verdict."""
    budget = make("budget", max_field_sum=10, field="tokens")
    rate = make("rate", max=3, per_seconds=5)
    deltas: list[dict[str, Any]] = []
    results: list[bool] = []
    for chunk, now in zip(chunks, times):
        state = Counters.merged(deltas)
        base = state.copy()
        for rule in (budget, rate):
            results.extend(v.passed for v in rule.evaluate(subjects(*chunk), state, now))
        deltas.append(json.loads(json.dumps(state.delta_since(base))))
    return Counters.merged(deltas), results


def test_counters_resumed_from_deltas_equal_an_uninterrupted_run() -> None:
    rows = [{"tokens": n} for n in (3, 4, 1, 2, 5, 1)]
    chunked, chunked_results = run_chunks([rows[:2], rows[2:3], rows[3:]], [0.0, 2.0, 4.0])
    whole_state = Counters()
    budget = make("budget", max_field_sum=10, field="tokens")
    rate = make("rate", max=3, per_seconds=5)
    expected: list[bool] = []
    for chunk, now in ((rows[:2], 0.0), (rows[2:3], 2.0), (rows[3:], 4.0)):
        for rule in (budget, rate):
            expected.extend(v.passed for v in rule.evaluate(subjects(*chunk), whole_state, now))
    assert chunked_results == expected
    assert chunked == whole_state
    assert chunked.budget_total("pol/r1") == 16


def test_counters_json_round_trip_merge_and_delta() -> None:
    counters = Counters()
    counters.add_to_budget("a/b", 5)
    counters.add_to_budget("a/c", 0.25)
    counters.record_events("a/r", 3, 10.0, 2)
    doc = counters.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert Counters.from_json(doc) == counters
    base = counters.copy()
    counters.add_to_budget("a/b", 2)
    counters.record_events("a/r", 3, 11.0, 5)   # keeps the 3 latest: 11, 11, 11
    delta = counters.delta_since(base)
    assert delta["budgets"] == {"a/b": 2}
    assert delta["rates"] == {"a/r": {"max": 3, "times": [11.0, 11.0, 11.0]}}
    assert Counters.merged([base.to_json(), delta]) == counters
    assert Counters.merged([]) == Counters()
    assert counters.to_json()["rates"]["a/r"]["times"] == [11.0, 11.0, 11.0]
    assert counters.delta_since(counters) == {"version": 1, "budgets": {}, "rates": {}}


@pytest.mark.parametrize("doc", [
    {}, {"version": 2}, {"version": 1, "budgets": []},
    {"version": 1, "budgets": {"a/b": "5"}}, {"version": 1, "budgets": {"a/b": float("inf")}},
    {"version": 1, "rates": {"a/r": {"max": 0, "times": []}}},
    {"version": 1, "rates": {"a/r": {"max": 2, "times": "now"}}},
    {"version": 1, "rates": {"a/r": {"max": 2, "times": [None]}}},
])
def test_malformed_counters_are_an_integrity_error(doc: dict[str, Any]) -> None:
    with pytest.raises(AuditIntegrityError):
        Counters.from_json(doc)


# --- any row --------------------------------------------------------------------------------------
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3))
ROWS = st.dictionaries(st.sampled_from(["amount", "claim", "body", "tokens", "x"]), VALUES,
                       max_size=5)
ALL_KINDS = {"policy": "pol", "version": 1, "rules": [
    {"id": "e", "kind": "expression", "expression": "amount > 1", "when": "x != 3", "fix": "f"},
    {"id": "t", "kind": "threshold", "field": "amount", "min": 0, "max": 100, "fix": "f"},
    {"id": "q", "kind": "required_fields", "fields": ["claim", "body"], "fix": "f"},
    {"id": "l", "kind": "length", "fields": {"body": {"max": 5}}, "max_record": 20,
     "max_line": 4, "fix": "f"},
    {"id": "p", "kind": "pattern", "field": "claim", "regex": "^CLM-[0-9]{6}$", "fix": "f"},
    {"id": "c", "kind": "citations", "field": "body", "fix": "f"},
    {"id": "d", "kind": "deny_list", "lists": ["profanity"], "terms": ["x y"], "fix": "f"},
    {"id": "i", "kind": "pii", "fix": "f"},
    {"id": "b", "kind": "budget", "max_field_sum": 50, "field": "tokens", "fix": "f"},
    {"id": "r", "kind": "rate", "max": 2, "per_seconds": 1, "unit": "calls", "fix": "f"}]}
COMPILED_ALL = compile_policy(parse_policy(ALL_KINDS, origin="t"))


@settings(max_examples=200, deadline=None)
@given(st.lists(ROWS, min_size=1, max_size=4), st.integers(min_value=0, max_value=3),
       st.floats(min_value=0, max_value=1e9))
def test_any_row_gets_a_verdict_from_every_kind(rows: list[dict[str, Any]], calls: int,
                                                now: float) -> None:
    counters = Counters()
    for rule in COMPILED_ALL:
        result = rule.evaluate([Subject("t", i, row, calls, 0.5) for i, row in enumerate(rows)],
                               counters, now)
        assert len(result) == len(rows)
        for verdict in result:
            assert verdict.passed or verdict.detail
            if verdict.detail is not None:
                canonical_json(verdict.detail)
    canonical_json(counters.to_json())
    assert Counters.from_json(json.loads(json.dumps(counters.to_json()))) == counters

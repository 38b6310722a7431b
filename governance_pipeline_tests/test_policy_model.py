"""Policy files: parsing every rule kind, refusals with field paths and codes, loading YAML,
compile-time refusals (expressions, unsafe patterns, empty terms) and the effective mode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.contracts.enums import PolicyMode, Severity
from governance_pipeline.contracts.errors import REGISTRY, ConfigError, ExitCode
from governance_pipeline.governance.policy.model import (
    PATTERN_UNSAFE, POLICY_INVALID, RULE_KINDS, BudgetRule, PolicyFile, effective_mode,
    load_policy_file, parse_policy)
from governance_pipeline.governance.policy.rules import compile_policy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "policies"
DOCS = ROOT / "docs" / "policies.md"

FIX = "Do the right thing."
MINIMAL: dict[str, dict[str, Any]] = {
    "expression": {"expression": "amount <= 10"},
    "threshold": {"field": "amount", "max": 10},
    "required_fields": {"fields": ["a"]},
    "length": {"max_record": 100},
    "pattern": {"field": "code", "regex": "^CLM-[0-9]{6}$"},
    "citations": {"field": "body"},
    "deny_list": {"lists": ["profanity"]},
    "pii": {},
    "budget": {"max_rows": 10},
    "rate": {"max": 5, "per_seconds": 60},
}


def policy(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"policy": "p1", "version": 1, "rules": list(rules), **extra}


def rule(kind: str, **options: Any) -> dict[str, Any]:
    return {"id": f"r-{kind}", "kind": kind, "fix": FIX, **MINIMAL[kind], **options}


def problems_of(data: Any) -> list[dict[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_policy(data, origin="test.yaml")
    assert caught.value.code is POLICY_INVALID
    assert caught.value.exit_code is ExitCode.INVALID_INPUT
    return caught.value.details["problems"]


def test_minimal_rule_of_every_kind_parses_compiles_and_fills_defaults() -> None:
    assert set(MINIMAL) == set(RULE_KINDS)
    parsed = parse_policy(policy(*(rule(kind) for kind in RULE_KINDS)), origin="t")
    assert [r.kind for r in parsed.rules] == list(RULE_KINDS)
    assert all(r.severity is Severity.MEDIUM and r.blocks is True for r in parsed.rules)
    assert parsed.mode is None and parsed.description == ""
    compiled = compile_policy(parsed)
    assert [(c.policy_id, c.rule_id, c.kind, c.fix) for c in compiled] == [
        ("p1", f"r-{kind}", kind, FIX) for kind in RULE_KINDS]
    pii = parsed.rules[RULE_KINDS.index("pii")]
    assert set(pii.detectors) == {"email", "phone", "credit_card", "national_id", "secret"}


def test_canonical_form_round_trips() -> None:
    parsed = parse_policy(policy(*(rule(kind) for kind in RULE_KINDS), mode="enforced"),
                          origin="t")
    again = parse_policy(parsed.canonical(), origin="t")
    assert again == parsed
    assert again.canonical()["rules"][0]["severity"] == "medium"


def test_example_policy_files_load_and_compile() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert {f.stem for f in files} >= {"content_safety", "claims_controls"}
    for path in files:
        loaded = load_policy_file(path)
        assert isinstance(loaded, PolicyFile)
        assert compile_policy(loaded)
    kinds = {r.kind for r in load_policy_file(EXAMPLES / "claims_controls.yaml").rules}
    assert {"expression", "threshold", "required_fields", "pattern", "budget"} <= kinds


@pytest.mark.parametrize(("data", "path", "needle"), [
    (policy(rule("threshold", maxx=3)), "rules[0].maxx", "Extra inputs"),
    (policy({"id": "a", "kind": "threshold", "field": "x", "max": 1}), "rules[0].fix", "required"),
    (policy(rule("threshold", fix="   ")), "rules[0].fix", "fix must say"),
    (policy(rule("threshold", max=None)), "rules[0]", "min, max or both"),
    (policy(rule("threshold", min=5, max=1)), "rules[0]", "greater than max"),
    (policy(rule("threshold", max=float("nan"))), "rules[0].max", ""),
    (policy(rule("threshold", min=float("-inf"))), "rules[0].min", ""),
    (policy(rule("budget", max_rows=None, max_call_cost=float("inf"))), "rules[0].max_call_cost",
     ""),
    (policy(rule("threshold", max=True)), "rules[0].max", ""),
    (policy(rule("budget", max_calls=3)), "rules[0]", "exactly one"),
    (policy(rule("budget", max_rows=None, max_field_sum=5)), "rules[0]", "needs field"),
    (policy(rule("length", max_record=None)), "rules[0]", "needs fields"),
    (policy(rule("length", line_fields=["a"])), "rules[0]", "line_fields needs max_line"),
    (policy(rule("deny_list", lists=[])), "rules[0]", "needs lists"),
    (policy(rule("deny_list", lists=["swearing"])), "rules[0].lists[0]", ""),
    (policy(rule("pii", detectors=["email", "email"])), "rules[0].detectors", "more than once"),
    (policy(rule("pii", detectors=["iban"])), "rules[0].detectors[0]", ""),
    (policy(rule("citations", min=0)), "rules[0].min", ""),
    (policy(rule("rate", max=10**6)), "rules[0].max", ""),
    (policy(rule("rate", per_seconds=0)), "rules[0].per_seconds", ""),
    (policy({"id": "x", "kind": "teleport", "fix": FIX}), "rules[0]", "kind"),
    (policy(rule("budget"), rule("budget")), "rules", "more than once"),
    (policy(rule("budget"), policy="9lives"), "policy", "pattern"),
    (policy(rule("budget"), version=0), "version", ""),
    (policy(rule("budget"), mode="strict"), "mode", ""),
    (policy(), "rules", "at least 1"),
    (policy(rule("budget"), owner="me"), "owner", "Extra inputs"),
])
def test_invalid_policies_are_refused_with_the_path(data: dict[str, Any], path: str,
                                                   needle: str) -> None:
    problems = problems_of(data)
    assert any(p["path"] == path and needle in p["problem"] for p in problems), problems


def test_the_message_lists_every_problem_and_names_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(policy(rule("threshold", maxx=1), rule("rate", max=0)), origin="x.yaml")
    message = str(caught.value)
    assert message.startswith("x.yaml: 2 problem(s)")
    assert "rules[0].maxx" in message and "rules[1].max" in message
    assert "rules[0].threshold" not in message


def test_budget_knows_its_limit() -> None:
    parsed = BudgetRule.model_validate({"id": "b", "kind": "budget", "fix": FIX,
                                        "max_field_sum": 1000, "field": "tokens"})
    assert (parsed.limit_name, parsed.limit) == ("max_field_sum", 1000)


def test_load_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy file") as missing:
        load_policy_file(tmp_path / "absent.yaml")
    assert missing.value.code is POLICY_INVALID
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: p\nrules: [\n  - id: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_policy_file(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a policy file is a YAML mapping"):
        load_policy_file(listing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00policy")
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy_file(binary)
    good = tmp_path / "good.yaml"
    good.write_text("policy: p\nversion: 2\nrules:\n  - {id: b, kind: budget, max_rows: 1, "
                    "fix: split}\n", encoding="utf-8")
    assert load_policy_file(good).version == 2


@pytest.mark.parametrize("regex", [r"(a)\1", r"(?<=a)b", r"(?!x)y", r"[unclosed", r"a{2,1}"])
def test_unsafe_or_invalid_patterns_are_refused_at_compile(regex: str) -> None:
    parsed = parse_policy(policy(rule("budget"), rule("pattern", id="claim", regex=regex)),
                          origin="t")
    with pytest.raises(ConfigError) as caught:
        compile_policy(parsed)
    assert caught.value.code is PATTERN_UNSAFE
    assert "policy p1 rules[1] (claim).regex" in str(caught.value)


def test_nested_quantifiers_are_accepted_because_re2_runs_them_in_linear_time() -> None:
    parsed = parse_policy(policy(rule("pattern", regex=r"^(a+)+$")), origin="t")
    assert len(compile_policy(parsed)) == 1


def test_bad_expressions_are_refused_at_compile_with_the_rule_path() -> None:
    for options in ({"expression": "amount >"}, {"when": "__import__('os')"}):
        parsed = parse_policy(policy(rule("expression", id="auth", **options)), origin="t")
        with pytest.raises(ConfigError) as caught:
            compile_policy(parsed)
        assert caught.value.code.code == "GP-EXPR-001"
        assert "policy p1 rules[0] (auth)." in str(caught.value)


def test_a_deny_term_without_letters_is_refused() -> None:
    parsed = parse_policy(policy(rule("deny_list", terms=["ok", "***"])), origin="t")
    with pytest.raises(ConfigError, match=r"rules\[0\] \(r-deny_list\)\.terms\[1\]") as caught:
        compile_policy(parsed)
    assert caught.value.code is POLICY_INVALID


@pytest.mark.parametrize(("own", "default", "kill", "expected"), [
    (None, PolicyMode.ENFORCED, False, PolicyMode.ENFORCED),
    (None, PolicyMode.ADVISORY, False, PolicyMode.ADVISORY),
    (PolicyMode.OFF, PolicyMode.ENFORCED, False, PolicyMode.OFF),
    (PolicyMode.ENFORCED, PolicyMode.OFF, False, PolicyMode.ENFORCED),
    (PolicyMode.ENFORCED, PolicyMode.OFF, True, PolicyMode.ADVISORY),
    (None, PolicyMode.ENFORCED, True, PolicyMode.ADVISORY),
    (PolicyMode.OFF, PolicyMode.ENFORCED, True, PolicyMode.OFF),
    (PolicyMode.ADVISORY, PolicyMode.ENFORCED, True, PolicyMode.ADVISORY),
])
def test_effective_mode(own: PolicyMode | None, default: PolicyMode, kill: bool,
                        expected: PolicyMode) -> None:
    assert effective_mode(own, default=default, kill_switch=kill) is expected


def test_error_codes_are_registered_and_their_fixes_point_at_existing_doc_anchors() -> None:
    page = DOCS.read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', page))
    anchors |= {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", page, flags=re.M)}
    for entry in (POLICY_INVALID, PATTERN_UNSAFE):
        assert REGISTRY[entry.code] is entry
        refs = re.findall(r"docs/policies\.md#([a-z0-9_-]+)", entry.fix)
        assert refs, entry.fix
        assert set(refs) <= anchors, (refs, sorted(anchors))
    for kind in RULE_KINDS:
        assert kind.replace("_", "-") in anchors or kind in anchors, kind

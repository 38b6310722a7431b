"""Compiling a policy into rules the engine evaluates, and the public names of the rule API.

``compile_policy`` runs once per run: it compiles expressions and patterns, folds deny-list
terms and loads shipped lists, so evaluating a row does no parsing at all. Every error names the
policy, the rule's index and id and the option (``claims_controls rules[2] (claim-number).regex``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, get_args

from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine.expressions import ExpressionSyntaxError, compile_expression
from governance_pipeline.governance.policy.base import (
    PASS, CompiledRule, RuleVerdict, Subject, fail)
from governance_pipeline.governance.policy.counters import Counters, counter_key
from governance_pipeline.governance.policy.field_rules import (
    ExpressionCheck, LengthCheck, PatternCheck, RequiredFieldsCheck, ThresholdCheck)
from governance_pipeline.governance.policy.model import (
    POLICY_INVALID, BudgetRule, CitationsRule, DenyListRule, ExpressionRule, LengthRule,
    PatternRule, PiiRule, PolicyFile, RateRule, RequiredFieldsRule, RuleConfig, ThresholdRule)
from governance_pipeline.governance.policy.patterns import compile_user_pattern
from governance_pipeline.governance.policy.run_rules import BudgetCheck, RateCheck
from governance_pipeline.governance.policy.text_rules import (
    CitationsCheck, DenyListCheck, DenyTerms, PiiCheck, mask_term, shipped_list, term_words)

__all__ = ["PASS", "CompiledRule", "Counters", "RuleVerdict", "Subject", "compile_policy",
           "counter_key", "fail"]


def compile_policy(policy: PolicyFile) -> list[CompiledRule]:
    """The policy's rules, compiled, in file order; ``ConfigError`` on a bad pattern,
    expression or term, naming where it is."""
    return [_compile_rule(policy.policy, index, rule) for index, rule in enumerate(policy.rules)]


def _head(policy_id: str, rule: Any) -> dict[str, Any]:
    return {"policy_id": policy_id, "rule_id": rule.id, "kind": rule.kind,
            "severity": rule.severity, "blocks": rule.blocks, "fix": rule.fix}


def _expression(text: str, where: str) -> Any:
    try:
        return compile_expression(text)
    except ExpressionSyntaxError as exc:
        raise exc.with_context(where) from None


def _compile_rule(policy_id: str, index: int, rule: Any) -> CompiledRule:
    where = f"policy {policy_id} rules[{index}] ({rule.id})"
    head = _head(policy_id, rule)
    return _COMPILERS[type(rule)](rule, head, where)


def _expression_rule(rule: ExpressionRule, head: dict[str, Any], where: str) -> CompiledRule:
    when = _expression(rule.when, f"{where}.when") if rule.when is not None else None
    return ExpressionCheck(**head, expression=_expression(rule.expression, f"{where}.expression"),
                           when=when)


def _threshold_rule(rule: ThresholdRule, head: dict[str, Any], where: str) -> CompiledRule:
    return ThresholdCheck(**head, field=rule.field, min=rule.min, max=rule.max,
                          missing_passes=rule.missing == "pass")


def _required_rule(rule: RequiredFieldsRule, head: dict[str, Any], where: str) -> CompiledRule:
    return RequiredFieldsCheck(**head, fields=tuple(rule.fields))


def _length_rule(rule: LengthRule, head: dict[str, Any], where: str) -> CompiledRule:
    return LengthCheck(**head, fields=tuple(rule.fields.items()), max_record=rule.max_record,
                       max_line=rule.max_line,
                       line_fields=None if rule.line_fields is None else tuple(rule.line_fields))


def _pattern_rule(rule: PatternRule, head: dict[str, Any], where: str) -> CompiledRule:
    return PatternCheck(**head, field=rule.field,
                        pattern=compile_user_pattern(rule.regex, where=f"{where}.regex"),
                        must_match=rule.must == "match", each_line=rule.each_line,
                        missing_passes=rule.missing == "pass")


def _citations_rule(rule: CitationsRule, head: dict[str, Any], where: str) -> CompiledRule:
    return CitationsCheck(**head, field=rule.field, min=rule.min, markers=tuple(rule.markers))


def _deny_entries(rule: DenyListRule, where: str) -> Iterable[tuple[tuple[str, ...], str, str]]:
    for name in rule.lists:
        for term in shipped_list(name):
            words = term_words(term)
            if words:
                yield words, name, mask_term(" ".join(words))
    for index, term in enumerate(rule.terms):
        words = term_words(term)
        if not words:
            raise ConfigError(f"{where}.terms[{index}]: term {term!r} has no letters or digits "
                              "to match as a word", code=POLICY_INVALID,
                              details={"path": f"{where}.terms[{index}]"})
        yield words, "terms", f"terms[{index}]"


def _deny_rule(rule: DenyListRule, head: dict[str, Any], where: str) -> CompiledRule:
    return DenyListCheck(**head, terms=DenyTerms.build(_deny_entries(rule, where)),
                         fields=None if rule.fields is None else tuple(rule.fields),
                         exclude_fields=tuple(rule.exclude_fields))


def _pii_rule(rule: PiiRule, head: dict[str, Any], where: str) -> CompiledRule:
    return PiiCheck(**head, detectors=tuple(rule.detectors),
                    fields=None if rule.fields is None else tuple(rule.fields),
                    exclude_fields=tuple(rule.exclude_fields))


def _budget_rule(rule: BudgetRule, head: dict[str, Any], where: str) -> CompiledRule:
    return BudgetCheck(**head, limit_name=rule.limit_name, limit=rule.limit, field=rule.field)


def _rate_rule(rule: RateRule, head: dict[str, Any], where: str) -> CompiledRule:
    return RateCheck(**head, max=rule.max, per_seconds=float(rule.per_seconds), unit=rule.unit)


_COMPILERS: dict[type, Callable[[Any, dict[str, Any], str], CompiledRule]] = {
    ExpressionRule: _expression_rule, ThresholdRule: _threshold_rule,
    RequiredFieldsRule: _required_rule, LengthRule: _length_rule, PatternRule: _pattern_rule,
    CitationsRule: _citations_rule, DenyListRule: _deny_rule, PiiRule: _pii_rule,
    BudgetRule: _budget_rule, RateRule: _rate_rule,
}
if set(get_args(get_args(RuleConfig)[0])) != set(_COMPILERS):
    raise RuntimeError("every rule kind of policy.model needs a compiler in policy.rules")

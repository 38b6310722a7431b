"""Rules over the values of named fields: expression, threshold, required_fields, length, pattern.

A rule never raises on a row: a value of the wrong type, a missing field or an expression that
cannot be evaluated is a failure whose detail says so, because an enforced policy must stop on
the row that broke it, not crash the run around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from governance_pipeline.contracts.errors import EXPRESSION_EVAL
from governance_pipeline.engine.expressions import Expression, ExpressionEvalError
from governance_pipeline.governance.policy.base import PASS, RowRule, RuleVerdict, fail, json_number
from governance_pipeline.governance.policy.model import FieldLength
from governance_pipeline.governance.policy.patterns import UserPattern
from governance_pipeline.governance.policy.text import MAX_INSPECT_CHARS, is_blank, iter_texts

#: Violations listed in one detail; the rest are counted.
MAX_LISTED = 20


def _number(value: Any) -> bool:
    return type(value) in (int, float, Decimal)


def _safe_values(row: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """Numbers, booleans and nulls the expression read: shown to explain a failure. Text is
    left out, because it may be personal data."""
    shown: dict[str, Any] = {}
    for name in sorted(fields):
        value = row.get(name)
        if value is None or type(value) is bool:
            shown[name] = value
        elif type(value) in (int, float, Decimal):
            shown[name] = json_number(value)
    return shown


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpressionCheck(RowRule):
    expression: Expression
    when: Expression | None = None

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        stage = "when"
        try:
            if self.when is not None and not self.when.holds(row):
                return PASS
            stage = "expression"
            if self.expression.holds(row):
                return PASS
        except ExpressionEvalError as exc:
            return fail(reason="evaluation_error", stage=stage, error_code=exc.code.code,
                        error=exc.reason[:200], expression=exc.source[:500])
        except InvalidOperation:
            # Ordering a decimal NaN (SQL and CSV sources yield Decimal) raises this, not
            # TypeError; it is the same kind of per-row failure as any evaluation error.
            return fail(reason="evaluation_error", stage=stage, error_code=EXPRESSION_EVAL.code,
                        error="a decimal NaN cannot be compared",
                        expression=self.expression.source[:500])
        return fail(reason="condition_false", expression=self.expression.source[:500],
                    values=_safe_values(row, self.expression.fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdCheck(RowRule):
    field: str
    min: int | float | None
    max: int | float | None
    missing_passes: bool

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        value = row.get(self.field)
        limits = {"min": self.min, "max": self.max}
        if value is None:
            if self.missing_passes:
                return PASS
            return fail(field=self.field, reason="missing", **limits)
        if not _number(value):
            return fail(field=self.field, reason="not_a_number", type=type(value).__name__,
                        **limits)
        # ints and Decimals compare exactly with the limits; float() of a huge int would overflow
        if (type(value) is float and not math.isfinite(value)) or (
                type(value) is Decimal and not value.is_finite()):
            return fail(field=self.field, reason="not_finite", **limits)
        if self.min is not None and value < self.min:
            return fail(field=self.field, reason="below_min", value=json_number(value), **limits)
        if self.max is not None and value > self.max:
            return fail(field=self.field, reason="above_max", value=json_number(value), **limits)
        return PASS


@dataclass(frozen=True, slots=True, kw_only=True)
class RequiredFieldsCheck(RowRule):
    fields: tuple[str, ...]

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        reasons: dict[str, str] = {}
        for name in self.fields:
            if name not in row:
                reasons[name] = "absent"
            elif row[name] is None:
                reasons[name] = "null"
            elif is_blank(row[name]):
                reasons[name] = "blank"
        if not reasons:
            return PASS
        return fail(missing=list(reasons), reasons=reasons)


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthCheck(RowRule):
    fields: tuple[tuple[str, FieldLength], ...]
    max_record: int | None
    max_line: int | None
    line_fields: tuple[str, ...] | None

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        violations: list[dict[str, Any]] = []
        for name, limit in self.fields:
            value = row.get(name)
            if not isinstance(value, str):
                continue  # absence is required_fields' concern; only text has a length
            size = len(value)
            if limit.max is not None and size > limit.max:
                violations.append({"field": name, "reason": "too_long", "length": size,
                                   "max": limit.max})
            if limit.min is not None and size < limit.min:
                violations.append({"field": name, "reason": "too_short", "length": size,
                                   "min": limit.min})
        if self.max_record is not None:
            total = sum(len(text) for _, text in iter_texts(row))
            if total > self.max_record:
                violations.append({"scope": "record", "reason": "record_too_long",
                                   "length": total, "max": self.max_record})
        if self.max_line is not None:
            violations.extend(self._long_lines(row))
        if not violations:
            return PASS
        return fail(violations=violations[:MAX_LISTED], total=len(violations))

    def _long_lines(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for path, text in iter_texts(row, self.line_fields):
            for number, line in enumerate(text.splitlines(), start=1):
                if len(line) > self.max_line:  # type: ignore[operator]
                    found.append({"field": path, "reason": "line_too_long", "line": number,
                                  "length": len(line), "max_line": self.max_line})
                    if len(found) > MAX_LISTED:
                        return found
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class PatternCheck(RowRule):
    field: str
    pattern: UserPattern
    must_match: bool
    each_line: bool
    missing_passes: bool

    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        value = row.get(self.field)
        head = {"field": self.field, "pattern": self.pattern.source,
                "must": "match" if self.must_match else "not_match"}
        if value is None or (isinstance(value, str) and is_blank(value)):
            return PASS if self.missing_passes else fail(reason="missing", **head)
        if type(value) is int:
            value = str(value)
        if not isinstance(value, str):
            return fail(reason="not_text", type=type(value).__name__, **head)
        if len(value) > MAX_INSPECT_CHARS:
            # A format cannot be vouched for on part of a value: fail closed.
            return fail(reason="too_long_to_inspect", length=len(value),
                        max_inspect_chars=MAX_INSPECT_CHARS, **head)
        if not self.each_line:
            found = self.pattern.search(value)
            if found == self.must_match:
                return PASS
            return fail(reason="mismatch", length=len(value), **head)
        return self._lines(value, head)

    def _lines(self, value: str, head: dict[str, Any]) -> RuleVerdict:
        bad: list[int] = []
        count = 0
        for number, line in enumerate(value.splitlines(), start=1):
            if not line.strip():
                continue
            found = self.pattern.search(line)
            if found != self.must_match:
                count += 1
                if len(bad) < MAX_LISTED:
                    bad.append(number)
        if not count:
            return PASS
        return fail(reason="mismatch", lines=bad, total=count, **head)

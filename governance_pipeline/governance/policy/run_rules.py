"""Rules over the run as a whole: budget (running totals) and rate (events per time window).

Both read and update ``Counters`` in subject order, so within one batch the first subject that
takes a total past its limit is the first that fails, and the same subject fails whether the run
is processed in one chunk or resumed from a checkpoint. Every subject's consumption counts,
including a failing one's: in advisory mode the run goes on and really does spend it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from governance_pipeline.governance.policy.base import (
    PASS, SAFE_INT, RuleHead, RuleVerdict, Subject, fail, json_number)
from governance_pipeline.governance.policy.counters import Counters, counter_key


def _amount(limit_name: str, field: str | None, subject: Subject) -> tuple[int | float, str | None]:
    """What ``subject`` adds to a budget, or a reason it cannot be counted."""
    if limit_name == "max_rows":
        return 1, None
    if limit_name == "max_calls":
        return subject.calls, None
    if limit_name == "max_call_cost":
        return subject.call_cost, None
    value = subject.row.get(field) if field is not None else None
    if value is None:
        return 0, None  # a row without the field (no LLM call made) spends nothing
    if type(value) not in (int, float, Decimal):
        return 0, f"field {field!r} holds {type(value).__name__}, not a number"
    if type(value) is Decimal and not value.is_finite():
        return 0, f"field {field!r} is not a finite number"
    number = value if type(value) is int else float(value)
    if (type(number) is float and not math.isfinite(number)) or number < 0 \
            or number > SAFE_INT:
        return 0, f"field {field!r} is not a finite number between 0 and 2**53"
    return number, None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetCheck(RuleHead):
    limit_name: str
    limit: int | float
    field: str | None

    def evaluate(self, subjects: Sequence[Subject], counters: Counters,
                 now: float) -> list[RuleVerdict]:
        key = counter_key(self.policy_id, self.rule_id)
        verdicts: list[RuleVerdict] = []
        for subject in subjects:
            amount, problem = _amount(self.limit_name, self.field, subject)
            if problem is not None:
                verdicts.append(fail(reason="uncountable", problem=problem,
                                     budget=self.limit_name, field=self.field))
                continue
            total = counters.add_to_budget(key, amount)
            if total > self.limit:
                detail: dict[str, Any] = {"reason": "budget_exceeded", "budget": self.limit_name,
                                          "limit": self.limit, "total": json_number(total),
                                          "amount": json_number(amount)}
                if self.field is not None:
                    detail["field"] = self.field
                verdicts.append(fail(**detail))
            else:
                verdicts.append(PASS)
        return verdicts


@dataclass(frozen=True, slots=True, kw_only=True)
class RateCheck(RuleHead):
    max: int
    per_seconds: float
    unit: str

    def evaluate(self, subjects: Sequence[Subject], counters: Counters,
                 now: float) -> list[RuleVerdict]:
        key = counter_key(self.policy_id, self.rule_id)
        seen = counters.in_window(key, now - self.per_seconds)
        verdicts: list[RuleVerdict] = []
        added = 0
        for subject in subjects:
            count = 1 if self.unit == "subjects" else max(subject.calls, 0)
            added += count
            if count and seen + added > self.max:
                verdicts.append(fail(reason="rate_exceeded", unit=self.unit, max=self.max,
                                     per_seconds=self.per_seconds,
                                     in_window_at_least=seen + added))
            else:
                verdicts.append(PASS)
        if added:
            counters.record_events(key, self.max, now, added)
        return verdicts

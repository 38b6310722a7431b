"""What every compiled rule is: its identity, what it sees (``Subject``), what it says
(``RuleVerdict``), and the one method the engine calls (``evaluate``)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from governance_pipeline.contracts.enums import Severity
from governance_pipeline.engine.policy_hook import PolicySubject

if TYPE_CHECKING:
    from governance_pipeline.governance.policy.counters import Counters


#: What a rule sees of one token at one node: the engine's subject, as the hook hands it over.
Subject = PolicySubject


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """Pass, or fail with a JSON-safe detail saying what failed and where. A detail never holds a
    matched sensitive value: detectors hand over redacted forms only."""

    passed: bool
    detail: dict[str, Any] | None

    def __post_init__(self) -> None:
        if not self.passed and not self.detail:
            raise ValueError("a failing verdict must say what failed (detail)")


PASS = RuleVerdict(True, None)

#: Integers exactly representable as doubles: beyond them canonical JSON (RFC 8785) refuses.
SAFE_INT = 2**53


def json_number(value: Any) -> int | float | str:
    """A number as a detail may hold it: safe integers and finite floats as they are, anything
    else (huge integers, decimals, infinities) as text, so a detail always canonicalises."""
    if type(value) is int and -SAFE_INT <= value <= SAFE_INT:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return str(value)


def fail(**detail: Any) -> RuleVerdict:
    return RuleVerdict(False, detail)


class CompiledRule(Protocol):
    policy_id: str
    rule_id: str
    kind: str
    severity: Severity
    blocks: bool
    fix: str

    def evaluate(self, subjects: Sequence[Subject], counters: Counters,
                 now: float) -> list[RuleVerdict]:
        """One verdict per subject, in order; ``now`` is the injected clock in epoch seconds."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHead:
    """The identity every compiled rule carries into its decisions."""

    policy_id: str
    rule_id: str
    kind: str
    severity: Severity
    blocks: bool
    fix: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RowRule(RuleHead, ABC):
    """A rule that judges each row on its own: no counters, no clock."""

    @abstractmethod
    def check(self, row: Mapping[str, Any]) -> RuleVerdict:
        """The verdict on one row."""

    def evaluate(self, subjects: Sequence[Subject], counters: Counters,
                 now: float) -> list[RuleVerdict]:
        return [self.check(subject.row) for subject in subjects]

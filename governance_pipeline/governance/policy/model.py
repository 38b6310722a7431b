"""Policy files as pydantic models: one versioned policy per YAML file, a list of typed rules.

Each rule kind is its own model with ``kind`` as the discriminator, so a typo in an option is an
error naming the rule and the option (``rules[2].max_record: ...``) instead of a rule that
silently checks nothing. Cross-field checks (a threshold needs ``min`` or ``max``, a budget names
exactly one limit) live on the models too: a policy that loads is a policy that can be compiled,
except for patterns and expressions, which ``rules.compile_policy`` compiles and checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError,
    field_validator, model_validator)

from governance_pipeline.contracts.safe_yaml import load_yaml
from governance_pipeline.contracts.enums import PolicyMode, Severity
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.engine.config import format_validation_error

POLICY_INVALID = register(
    "GP-POLICY-010", "Invalid policy file",
    "Correct the rule and option named in the message; docs/policies.md#policy-files describes "
    "the file format and docs/policies.md#rule-kinds every rule kind with its options.",
    ExitCode.INVALID_INPUT)
PATTERN_UNSAFE = register(
    "GP-POLICY-011", "Unsafe or invalid pattern in a policy rule",
    "Patterns are RE2 syntax (linear time): no backreferences or lookarounds; see "
    "docs/policies.md#pattern for what is accepted and how to rewrite a pattern.",
    ExitCode.INVALID_INPUT)

POLICY_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
PolicyId = Annotated[str, Field(pattern=POLICY_ID_PATTERN)]
RuleId = Annotated[str, Field(pattern=POLICY_ID_PATTERN)]
FieldName = Annotated[str, Field(min_length=1, max_length=256)]
#: Finite (NaN and infinities fail the bounds) and exact in canonical JSON (RFC 8785).
Number = Annotated[StrictInt | StrictFloat, Field(ge=-(2**53), le=2**53)]
Count = Annotated[StrictInt, Field(ge=0, le=2**53)]

#: Detector names of the ``pii`` rule, in the order overlapping findings are preferred.
DETECTOR_NAMES = ("secret", "credit_card", "national_id", "email", "phone")
Detector = Literal["secret", "credit_card", "national_id", "email", "phone"]
CitationMarker = Literal["numeric", "footnote", "url"]
#: Deny lists shipped with the product (``policy/data/<name>.txt``).
SHIPPED_LISTS = ("profanity",)
MAX_TERMS = 10_000
MAX_RATE = 100_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Model):
    id: RuleId
    severity: Severity = Severity.MEDIUM
    #: The suggested fix shown with every failure of this rule.
    fix: str = Field(min_length=1, max_length=2000)
    description: str = Field(default="", max_length=2000)
    #: False: an informational rule; it fails and is recorded but never would_block.
    blocks: StrictBool = True

    @field_validator("fix")
    @classmethod
    def _fix_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("fix must say how to correct a failing row")
        return value


class _TextScope(_Model):
    """Which text of a row a scanning rule reads: the named fields, or every text field."""

    fields: list[FieldName] | None = Field(default=None, min_length=1)
    exclude_fields: list[FieldName] = Field(default_factory=list)


class ExpressionRule(_RuleBase):
    kind: Literal["expression"]
    #: Passes when this condition holds (true); false or an evaluation error fails.
    expression: str = Field(min_length=1)
    #: Optional precondition: rows for which it does not hold pass without evaluation.
    when: str | None = Field(default=None, min_length=1)


class ThresholdRule(_RuleBase):
    kind: Literal["threshold"]
    field: FieldName
    min: Number | None = None
    max: Number | None = None
    #: What a missing or null field does.
    missing: Literal["fail", "pass"] = "fail"

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdRule:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class RequiredFieldsRule(_RuleBase):
    kind: Literal["required_fields"]
    fields: list[FieldName] = Field(min_length=1)


class FieldLength(_Model):
    min: Count | None = None
    max: Count | None = None

    @model_validator(mode="after")
    def _bounds(self) -> FieldLength:
        if self.min is None and self.max is None:
            raise ValueError("a field length needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class LengthRule(_RuleBase):
    kind: Literal["length"]
    #: Per-field limits in characters (Unicode code points).
    fields: dict[FieldName, FieldLength] = Field(default_factory=dict)
    #: Limit on the characters of all text fields of the row together.
    max_record: Count | None = None
    #: Limit on every line of the text fields in ``line_fields`` (default: every text field).
    max_line: Annotated[StrictInt, Field(ge=1)] | None = None
    line_fields: list[FieldName] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _some_limit(self) -> LengthRule:
        if not self.fields and self.max_record is None and self.max_line is None:
            raise ValueError("a length rule needs fields, max_record or max_line")
        if self.line_fields is not None and self.max_line is None:
            raise ValueError("line_fields needs max_line")
        return self


class PatternRule(_RuleBase):
    kind: Literal["pattern"]
    field: FieldName
    #: An RE2 regular expression, searched (anchor it with ^...$ to match the whole value).
    regex: str = Field(min_length=1, max_length=1000)
    must: Literal["match", "not_match"] = "match"
    #: Check every non-blank line of the value instead of the value as a whole.
    each_line: StrictBool = False
    missing: Literal["fail", "pass"] = "fail"


class CitationsRule(_RuleBase):
    kind: Literal["citations"]
    field: FieldName
    min: Annotated[StrictInt, Field(ge=1)] = 1
    markers: list[CitationMarker] = Field(default_factory=lambda: ["numeric", "footnote", "url"],
                                          min_length=1)

    @field_validator("markers")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("markers are listed more than once")
        return value


class DenyListRule(_TextScope, _RuleBase):
    kind: Literal["deny_list"]
    lists: list[Literal["profanity"]] = Field(default_factory=list)
    terms: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=MAX_TERMS)

    @model_validator(mode="after")
    def _some_terms(self) -> DenyListRule:
        if not self.lists and not self.terms:
            raise ValueError("a deny list needs lists (e.g. [profanity]), terms or both")
        return self


class PiiRule(_TextScope, _RuleBase):
    kind: Literal["pii"]
    detectors: list[Detector] = Field(default_factory=lambda: list(DETECTOR_NAMES), min_length=1)

    @field_validator("detectors")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("detectors are listed more than once")
        return value


BUDGET_LIMITS = ("max_rows", "max_calls", "max_call_cost", "max_field_sum")


class BudgetRule(_RuleBase):
    kind: Literal["budget"]
    max_rows: Count | None = None
    max_calls: Count | None = None
    max_call_cost: Annotated[Number, Field(ge=0)] | None = None
    max_field_sum: Annotated[Number, Field(ge=0)] | None = None
    #: The numeric field summed by max_field_sum (e.g. an LLM response's ``tokens``).
    field: FieldName | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> BudgetRule:
        given = [name for name in BUDGET_LIMITS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a budget names exactly one of {', '.join(BUDGET_LIMITS)}")
        if (self.max_field_sum is not None) != (self.field is not None):
            raise ValueError("field goes with max_field_sum, and max_field_sum needs field")
        return self

    @property
    def limit_name(self) -> str:
        return next(name for name in BUDGET_LIMITS if getattr(self, name) is not None)

    @property
    def limit(self) -> int | float:
        return getattr(self, self.limit_name)


class RateRule(_RuleBase):
    kind: Literal["rate"]
    max: Annotated[StrictInt, Field(ge=1, le=MAX_RATE)]
    per_seconds: Annotated[Number, Field(gt=0, le=31 * 86400)]
    unit: Literal["subjects", "calls"] = "subjects"


RuleConfig = Annotated[
    Union[ExpressionRule, ThresholdRule, RequiredFieldsRule, LengthRule, PatternRule,
          CitationsRule, DenyListRule, PiiRule, BudgetRule, RateRule],
    Field(discriminator="kind")]
RULE_KINDS = ("expression", "threshold", "required_fields", "length", "pattern", "citations",
              "deny_list", "pii", "budget", "rate")


class PolicyFile(_Model):
    policy: PolicyId
    version: Annotated[StrictInt, Field(ge=1)]
    description: str = ""
    #: None: the global default mode applies.
    mode: PolicyMode | None = None
    rules: list[RuleConfig] = Field(min_length=1, max_length=1000)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used more than once")
            seen.add(rule.id)
        return rules

    def canonical(self) -> dict[str, Any]:
        """The policy as it is hashed into a snapshot: every default filled in."""
        return self.model_dump(mode="json")


def effective_mode(policy_mode: PolicyMode | None, *, default: PolicyMode,
                   kill_switch: bool = False) -> PolicyMode:
    """The mode a policy runs in: its own, else the global default; the kill switch caps
    ``enforced`` at ``advisory`` (rules are still evaluated and recorded, nothing stops)."""
    mode = policy_mode if policy_mode is not None else default
    if kill_switch and mode is PolicyMode.ENFORCED:
        return PolicyMode.ADVISORY
    return mode


# Pydantic's location of an error names the discriminator's tag and the member of a union
# (``rules[0].threshold.max.int``): noise to someone editing the file, so it is dropped.
_KIND_IN_PATH = re.compile(r"(rules\[\d+\])\.(?:" + "|".join(RULE_KINDS) + r")(?=\.|\[|$)")
_UNION_MEMBER = re.compile(r"\.(?:int|float|constrained-int|constrained-float)$")


def parse_policy(data: Any, *, origin: str) -> PolicyFile:
    """Validate a policy document; ``ConfigError`` (GP-POLICY-010) lists every problem."""
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        for problem in problems:
            problem["path"] = _UNION_MEMBER.sub("", _KIND_IN_PATH.sub(r"\1", problem["path"]))
        lines = "; ".join(f"{p['path']}: {p['problem']}" for p in problems)
        raise ConfigError(f"{origin}: {len(problems)} problem(s): {lines}", code=POLICY_INVALID,
                          details={"problems": problems, "file": origin}) from exc


def load_policy_file(path: Path) -> PolicyFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read policy file {path}: {reason}", code=POLICY_INVALID,
                          details={"file": str(path)}) from exc
    try:
        data = load_yaml(text, source=str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                          code=POLICY_INVALID, details={"file": str(path)}) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a policy file is a YAML mapping with policy, version, rules",
                          code=POLICY_INVALID, details={"file": str(path)})
    return parse_policy(data, origin=str(path))

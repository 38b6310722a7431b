"""Risk tiers 0-3 from declared rules, and the outcome of IR validation: pass, escalate, reject.

Every rule is a named object with its tier and a description (the table in
``docs/approvals.md#risk-tiers-and-ir-validation`` lists the same rules). A step's tier is the
highest tier of the rules it triggers; the pipeline's tier is the highest step tier. Tier 0-1
pass, tier 2 escalates (a run needs an approval), tier 3 rejects (the pipeline may not run).

Only built-in plugins (classes under ``governance_pipeline.plugins``) are classified by name: a
third-party class registered under a built-in's name is *not* trusted to behave like it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.governance.ir.model import IR, IRStep, StepKind, build_ir

IR_REJECTED = register(
    "GP-IR-001", "Pipeline rejected by IR validation",
    "Fix each violation listed (its step and rule are named; docs/approvals.md#risk-tiers-and-"
    "ir-validation explains every rule), then run `governance-pipeline validate` again.",
    ExitCode.INVALID_INPUT)

BUILTIN_PACKAGE = "governance_pipeline.plugins."
MAX_TIER = 3
VIOLATION_SEVERITY = "ERROR"


class Outcome(StrEnum):
    PASS = "pass"
    ESCALATE = "escalate"
    REJECT = "reject"

    @classmethod
    def for_tier(cls, tier: int) -> Outcome:
        if tier >= MAX_TIER:
            return cls.REJECT
        return cls.ESCALATE if tier == 2 else cls.PASS

    @property
    def event_type(self) -> str:
        return f"ir.validated_{self.value}"


@dataclass(frozen=True, slots=True)
class RiskRule:
    id: str
    tier: int
    description: str


def _rule(rule_id: str, tier: int, description: str) -> RiskRule:
    return RiskRule(rule_id, tier, description)


LOCAL_FILE = _rule("LOCAL_FILE", 0, "Source or sink on a local file (csv, jsonl, parquet): "
                   "the data stays on this machine.")
PURE_STEP = _rule("PURE_STEP", 0, "In-process step without I/O: field_map, rename, compute, "
                  "filter, gates, coalesces, aggregations (passthrough or summarize).")
DATABASE_SOURCE = _rule("DATABASE_SOURCE", 1, "The source reads from a database (sql): the "
                        "input is whatever the query returns at run time.")
DATABASE_SINK = _rule("DATABASE_SINK", 1, "A sink writes to a database (sql) inside the "
                      "organisation.")
LOOKUP_FILE = _rule("LOOKUP_FILE", 1, "A lookup transform joins rows with a reference file "
                    "read at run time.")
LOCAL_MODEL_CALL = _rule("LOCAL_MODEL_CALL", 1, "A call transform with provider local: a "
                         "deterministic, simulated model; nothing leaves the machine.")
EXTERNAL_CALL = _rule("EXTERNAL_CALL", 2, "A call transform with provider http: the inputs of "
                      "every row are sent to an external endpoint.")
PII_DECLARED = _rule("PII_DECLARED", 2, "The pipeline declares pii_fields: personal data flows "
                     "through it (attributed to the source step, where it enters).")
EXTERNAL_SINK = _rule("EXTERNAL_SINK", 2, "A sink marked external: true writes outside the "
                      "organisation.")
UNCLASSIFIED_PLUGIN = _rule("UNCLASSIFIED_PLUGIN", 2, "A registered plugin that is not a "
                            "built-in: these rules cannot know what it does, a person reviews it.")
UNKNOWN_PLUGIN = _rule("UNKNOWN_PLUGIN", 3, "A plugin name the registry does not know: what "
                       "would run cannot be determined.")
UNKNOWN_ACTION = _rule("UNKNOWN_ACTION", 3, "A step asks a plugin for an action it does not "
                       "define (a call provider other than local or http).")
PII_LEAVES_UNGOVERNED = _rule("PII_LEAVES_UNGOVERNED", 3, "A sink marked external: true in a "
                              "pipeline that declares pii_fields but attaches no output-boundary "
                              "policy (policies): personal data would leave unchecked.")

RULES: tuple[RiskRule, ...] = (
    LOCAL_FILE, PURE_STEP, DATABASE_SOURCE, DATABASE_SINK, LOOKUP_FILE, LOCAL_MODEL_CALL,
    EXTERNAL_CALL, PII_DECLARED, EXTERNAL_SINK, UNCLASSIFIED_PLUGIN, UNKNOWN_PLUGIN,
    UNKNOWN_ACTION, PII_LEAVES_UNGOVERNED)

_FILE_PLUGINS = frozenset({"csv", "jsonl", "parquet"})
_PURE_TRANSFORMS = frozenset({"field_map", "rename", "compute", "filter"})
_CALL_PROVIDERS = frozenset({"local", "http"})


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule: RiskRule
    reason: str


@dataclass(frozen=True, slots=True)
class StepAssessment:
    step_index: int
    step_id: str
    kind: StepKind
    action: str
    provider: str
    hits: tuple[RuleHit, ...]

    @property
    def risk_tier(self) -> int:
        return max(hit.rule.tier for hit in self.hits)

    def as_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "step_id": self.step_id, "kind": self.kind.value,
                "action": self.action, "provider": self.provider, "risk_tier": self.risk_tier,
                "reasons": [{"rule": h.rule.id, "tier": h.rule.tier, "reason": h.reason}
                            for h in self.hits]}


@dataclass(frozen=True, slots=True)
class HighRiskStep:
    step_index: int
    action: str
    provider: str
    risk_tier: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "action": self.action, "provider": self.provider,
                "risk_tier": self.risk_tier, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Violation:
    step_index: int
    code: str
    message: str
    severity: str = VIOLATION_SEVERITY

    def as_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "code": self.code, "message": self.message,
                "severity": self.severity}


@dataclass(frozen=True, slots=True)
class Validation:
    pipeline: str
    tenant: str
    ir_hash: str
    risk_tier: int
    outcome: Outcome
    requires_approval: bool
    high_risk_steps: tuple[HighRiskStep, ...]
    violations: tuple[Violation, ...]
    step_count: int
    steps: tuple[StepAssessment, ...]

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.for_tier(self.risk_tier):
            raise ValueError(f"outcome {self.outcome} contradicts risk tier {self.risk_tier}")
        if self.requires_approval != (self.outcome is Outcome.ESCALATE):
            raise ValueError("requires_approval holds exactly when the outcome is escalate")
        if bool(self.violations) != (self.outcome is Outcome.REJECT):
            raise ValueError("violations are present exactly when the outcome is reject")

    def as_dict(self) -> dict[str, Any]:
        return {"ir_hash": self.ir_hash, "risk_tier": self.risk_tier,
                "outcome": self.outcome.value, "requires_approval": self.requires_approval,
                "step_count": self.step_count,
                "high_risk_steps": [h.as_dict() for h in self.high_risk_steps],
                "violations": [v.as_dict() for v in self.violations],
                "steps": [s.as_dict() for s in self.steps]}


class IRRejectedError(ConfigError):
    default_code = IR_REJECTED


def rejection(validation: Validation) -> IRRejectedError:
    """The GP-IR-001 error of a rejected validation (raise it; exit 2)."""
    listed = "; ".join(f"step {v.step_index}: {v.code}" for v in validation.violations)
    return IRRejectedError(
        f"pipeline {validation.pipeline} rejected by IR validation (risk tier "
        f"{validation.risk_tier}): {listed}",
        details={"ir_hash": validation.ir_hash,
                 "violations": [v.as_dict() for v in validation.violations]})


# --- classification of one step -------------------------------------------------------------
def _sql_provider(options: dict[str, Any]) -> str:
    url = options.get("url")
    if isinstance(url, str) and ":" in url:
        return url.split(":", 1)[0].split("+", 1)[0].lower() or "database"
    return "database"


def _classify_builtin(step: IRStep) -> tuple[str, list[RuleHit]]:
    """(provider, rule hits) of a step whose plugin is a built-in (or that has no plugin)."""
    kind, plugin, options = step.kind, step.plugin, step.options
    if kind in (StepKind.SOURCE, StepKind.SINK):
        if plugin in _FILE_PLUGINS:
            return "file", [RuleHit(LOCAL_FILE, f"local {plugin} file")]
        rule = DATABASE_SOURCE if kind is StepKind.SOURCE else DATABASE_SINK
        provider = _sql_provider(options)
        verb = "reads from" if kind is StepKind.SOURCE else "writes to"
        return provider, [RuleHit(rule, f"{verb} a {provider} database")]
    if plugin == "lookup":
        return "file", [RuleHit(LOOKUP_FILE, f"joins with reference file {options.get('path')!r}")]
    if plugin == "call":
        provider = str(options.get("provider"))
        if provider == "http":
            return "http", [RuleHit(EXTERNAL_CALL, f"sends row inputs to {options.get('url')!r}")]
        if provider == "local":
            return "local", [RuleHit(LOCAL_MODEL_CALL,
                                     f"local model {options.get('model', 'local-classifier-v1')}")]
        return provider, [RuleHit(UNKNOWN_ACTION, f"unknown call provider {provider!r} (known: "
                                                  f"{', '.join(sorted(_CALL_PROVIDERS))})")]
    what = f"{kind.value} ({plugin})" if plugin else kind.value
    return "engine", [RuleHit(PURE_STEP, f"{what}: in process, no I/O")]


def _is_builtin(step: IRStep) -> bool:
    if step.plugin is None:
        return True
    return bool(step.implementation and step.implementation.startswith(BUILTIN_PACKAGE))


def _pipeline_hits(ir: IR, step: IRStep) -> list[RuleHit]:
    """Rules that depend on pipeline-level settings (pii_fields, boundary policies)."""
    hits: list[RuleHit] = []
    pii = ", ".join(ir.pii_fields)
    if ir.pii_fields and step.kind is StepKind.SOURCE:
        hits.append(RuleHit(PII_DECLARED, f"personal data enters here: {pii}"))
    if step.kind is StepKind.SINK and step.config.get("external"):
        hits.append(RuleHit(EXTERNAL_SINK, f"sink {step.id} writes outside the organisation"))
        if ir.pii_fields and not ir.boundary_policies:
            hits.append(RuleHit(PII_LEAVES_UNGOVERNED,
                                f"external sink {step.id} receives personal data ({pii}) and "
                                "the pipeline attaches no output-boundary policy"))
    return hits


def assess_step(ir: IR, step: IRStep) -> StepAssessment:
    action = f"{step.kind.value}.{step.plugin}" if step.plugin else step.kind.value
    if step.plugin is not None and step.implementation is None:
        provider, hits = "unknown", [RuleHit(UNKNOWN_PLUGIN, f"no {step.kind.value} plugin named "
                                                             f"{step.plugin!r} is registered")]
    elif not _is_builtin(step):
        provider = step.implementation.split(":", 1)[0]  # type: ignore[union-attr]
        hits = [RuleHit(UNCLASSIFIED_PLUGIN, f"{step.plugin!r} resolves to "
                                             f"{step.implementation}, not a built-in")]
    else:
        provider, hits = _classify_builtin(step)
    return StepAssessment(step.index, step.id, step.kind, action, provider,
                          tuple(hits + _pipeline_hits(ir, step)))


# --- the validation ---------------------------------------------------------------------------
def _findings(assessments: list[StepAssessment], keep: Callable[[RuleHit], bool]
              ) -> list[tuple[StepAssessment, RuleHit]]:
    return [(a, hit) for a in assessments for hit in a.hits if keep(hit)]


def validate_ir(config: PipelineConfig) -> Validation:
    """Build the IR of ``config`` and apply the rules to every step (wiring errors raise)."""
    return assess(build_ir(config))


def assess(ir: IR) -> Validation:
    """Apply the rules to every step of ``ir``."""
    assessments = [assess_step(ir, step) for step in ir.steps]
    tier = max((a.risk_tier for a in assessments), default=0)
    outcome = Outcome.for_tier(tier)
    high = tuple(HighRiskStep(a.step_index, a.action, a.provider, hit.rule.tier,
                              f"{hit.rule.id}: {hit.reason}")
                 for a, hit in _findings(assessments, lambda h: h.rule.tier >= 2))
    violations = tuple(Violation(a.step_index, hit.rule.id, f"{a.step_id}: {hit.reason}")
                       for a, hit in _findings(assessments, lambda h: h.rule.tier >= MAX_TIER))
    return Validation(ir.pipeline, ir.tenant, ir.ir_hash, tier, outcome,
                      outcome is Outcome.ESCALATE, high, violations, ir.step_count,
                      tuple(assessments))

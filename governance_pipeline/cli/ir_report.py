"""What ``validate`` says about the IR: risk tier, outcome, ir_hash and the reason per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.governance.ir.risk import Outcome, Validation, validate_ir

_OUTCOME_TEXT = {
    Outcome.PASS: "pass: no approval needed",
    Outcome.ESCALATE: "escalate: a run needs an approval",
    Outcome.REJECT: "reject: this pipeline may not run",
}


def validation_report(config: PipelineConfig, path: Path,
                      validation: Validation | None = None) -> dict[str, Any]:
    """The IR part of ``validate --json`` (validated here unless ``validation`` is given)."""
    validation = validation or validate_ir(config)
    return {"file": str(path), "pipeline": config.name, **validation.as_dict()}


def report_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"risk tier {report['risk_tier']} ({_OUTCOME_TEXT[Outcome(report['outcome'])]})",
             f"ir hash {report['ir_hash']}", "steps:"]
    for step in report["steps"]:
        reasons = "; ".join(f"{r['rule']}: {r['reason']}" for r in step["reasons"])
        lines.append(f"  [{step['step_index']}] {step['step_id']} ({step['action']}, "
                     f"{step['provider']}): tier {step['risk_tier']} — {reasons}")
    for violation in report["violations"]:
        lines.append(f"violation: step {violation['step_index']} {violation['code']}: "
                     f"{violation['message']}")
    return lines

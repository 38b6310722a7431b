"""The run gate: a run of a pipeline of risk tier 2 or more needs a consumed approval bound to
its tenant and IR hash. Without one the run does not start (exit 4) and the attempt is recorded
(``run.blocked``) whatever the reason."""

from __future__ import annotations

import dataclasses
import shlex

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.errors import BlockedError
from governance_pipeline.contracts.records import Approval
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

from governance_pipeline.governance.approvals import emit
from governance_pipeline.governance.approvals.codes import APPROVAL_REQUIRED, TokenRefused
from governance_pipeline.governance.approvals.service import ApprovalService

#: Runs of pipelines at or above this risk tier need an approval.
GATED_TIER = 2
RUN_GATE_SOURCE = "run_gate"


def request_command(pipeline_ref: str | None) -> str:
    """The exact command that requests the approval a blocked run needs."""
    target = shlex.quote(pipeline_ref) if pipeline_ref else "PIPELINE.yaml"
    return f"governance-pipeline approvals request {target}"


def require_run_approval(landscape: Landscape, *, tenant_id: str, ir_hash: str, risk_tier: int,
                         token: str | None, actor: str, run_id: str,
                         pipeline_ref: str | None = None,
                         clock: Clock | None = None) -> Approval | None:
    """``None`` below tier 2; else consume ``token`` for this run and return its approval, or
    record ``run.blocked`` and raise ``BlockedError`` (exit 4) naming the command to run."""
    if risk_tier < GATED_TIER:
        return None
    if clock is not None and clock is not landscape.clock:
        landscape = dataclasses.replace(landscape, clock=clock)
    command = request_command(pipeline_ref)
    if not token:
        _record_block(landscape, tenant_id=tenant_id, ir_hash=ir_hash, risk_tier=risk_tier,
                      actor=actor, run_id=run_id, reason="approval_required", approval_id=None,
                      command=command)
        raise BlockedError(
            f"risk tier {risk_tier} pipeline needs an approval: run `{command}`, have it "
            "approved, then run with --approval-token TOKEN", code=APPROVAL_REQUIRED,
            details={"tenant_id": tenant_id, "ir_hash": ir_hash, "risk_tier": risk_tier,
                     "run_id": run_id, "request_command": command})
    try:
        return ApprovalService(landscape).consume(token, tenant_id=tenant_id,
                                                  subject_hash=ir_hash, actor=actor,
                                                  consumed_for=run_id)
    except TokenRefused as exc:
        _record_block(landscape, tenant_id=tenant_id, ir_hash=ir_hash, risk_tier=risk_tier,
                      actor=actor, run_id=run_id, reason=exc.reason.value,
                      approval_id=exc.approval_id, command=command)
        exc.message = f"{exc.message}; the run was not started (to request a new approval: " \
                      f"`{command}`)"
        exc.details = {**exc.details, "run_id": run_id, "request_command": command}
        raise


def _record_block(landscape: Landscape, *, tenant_id: str, ir_hash: str, risk_tier: int,
                  actor: str, run_id: str, reason: str, approval_id: str | None,
                  command: str) -> None:
    with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
        uow.add(emit.event(emit.RUN_BLOCKED, {
            "run_id": run_id, "tenant_id": tenant_id, "ir_hash": ir_hash,
            "risk_tier": risk_tier, "reason": reason, "approval_id": approval_id,
            "attempted_by": actor, "attempted_at": uow.now, "request_command": command,
        }, now=uow.now, tenant_id=tenant_id, source=RUN_GATE_SOURCE))

"""SLA escalation: an active stage past its due time is escalated exactly once.

The escalation is a compare-and-set on the stage (``escalated_at IS NULL``) in the same unit as
its ``approval.stage_escalated`` event, so two sensor ticks (or two daemons) racing over the same
overdue stage record one escalation between them. For an export request the escalation also
re-checks the export guard's view of the request and records it in the event: an operator
acting on the escalation sees that the export is still blocked and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governance_pipeline.contracts.clock import from_iso
from governance_pipeline.contracts.enums import StageStatus
from governance_pipeline.contracts.errors import StaleStateError
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE

from governance_pipeline.governance.approvals import emit
from governance_pipeline.governance.approvals.views import load_view, overdue_stages


@dataclass(frozen=True, slots=True)
class Escalation:
    approval_id: str
    stage_id: str
    stage: str
    role: str
    approvers: tuple[str, ...]
    due_at: str
    escalated_at: str
    overdue_seconds: int
    export_guard: dict[str, Any] | None  # the guard's verdict for export requests

    def as_dict(self) -> dict[str, Any]:
        return {"approval_id": self.approval_id, "stage_id": self.stage_id,
                "stage": self.stage, "role": self.role, "approvers": list(self.approvers),
                "due_at": self.due_at, "escalated_at": self.escalated_at,
                "overdue_seconds": self.overdue_seconds, "export_guard": self.export_guard}


def escalate_overdue(recorder: Recorder) -> list[Escalation]:
    """Escalate every overdue active stage not escalated yet; returns what this call escalated."""
    done: list[Escalation] = []
    for approval, stage in overdue_stages(recorder.landscape, recorder.now()):
        view = load_view(recorder.landscape, approval.approval_id)
        try:
            with recorder.unit(GLOBAL_SCOPE) as uow:
                assert stage.due_at is not None
                guard = (view.clearance_state(uow.now) if approval.subject_type == "export"
                         else None)
                esc = Escalation(
                    approval.approval_id, stage.stage_id, stage.name, stage.approver_role,
                    tuple(view.approvers(stage)), stage.due_at, uow.now,
                    int((from_iso(uow.now) - from_iso(stage.due_at)).total_seconds()), guard)
                uow.update("approval_stages", {"stage_id": stage.stage_id},
                           {"escalated_at": uow.now},
                           expect={"escalated_at": None, "status": StageStatus.ACTIVE.value,
                                   "due_at": stage.due_at})
                uow.add(emit.event(emit.ESCALATED, {
                    "tenant_id": approval.tenant_id, "subject_hash": approval.subject_hash,
                    "subject_type": approval.subject_type, "subject_ref": approval.subject_ref,
                    "round": approval.round, **esc.as_dict()},
                    now=uow.now, tenant_id=approval.tenant_id))
        except StaleStateError:
            continue  # escalated (or decided) by another process first
        done.append(esc)
    return done

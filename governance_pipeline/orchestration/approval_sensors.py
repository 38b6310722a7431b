"""The approval SLA sensor: escalates overdue ladder stages and expires run-out tokens.

Each tick calls the approval service (``escalate_overdue``, ``expire_due``); both are
compare-and-set writes, so overlapping ticks, a second daemon or a manual run record each
escalation and expiry once. Escalating an export request re-checks its export guard and records
the verdict in the ``approval.stage_escalated`` event. The cursor keeps the last tick's counts,
for the UI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from governance_pipeline.governance.approvals import ApprovalService, Escalation
from governance_pipeline.contracts.records import Approval
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.resources import LandscapeResource

#: How often the SLA sensor looks (seconds).
APPROVAL_SLA_INTERVAL_S = 60


@dataclass(frozen=True, slots=True)
class SlaTick:
    escalated: list[Escalation]
    expired: list[Approval]

    def summary(self) -> str:
        if not self.escalated and not self.expired:
            return "no overdue approval stages, no expired tokens"
        parts = [f"escalated {len(self.escalated)} stage(s)"]
        parts += [f"{e.approval_id}/{e.stage} (role {e.role}, due {e.due_at})"
                  for e in self.escalated]
        parts.append(f"expired {len(self.expired)} request(s)")
        return "; ".join(parts)

    def cursor(self) -> str:
        return json.dumps({"escalated": len(self.escalated), "expired": len(self.expired)})


def sla_tick(landscape: Landscape) -> SlaTick:
    """One pass of the SLA monitor on ``landscape`` (its clock decides what is overdue)."""
    service = ApprovalService(landscape)
    return SlaTick(escalated=service.escalate_overdue(), expired=service.expire_due())


@sensor(name="approval_sla", minimum_interval_seconds=APPROVAL_SLA_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Escalates approval ladder stages past their SLA (once per stage, with an "
                    "approval.stage_escalated event) and expires approvals whose token TTL ran "
                    "out (ir.approval_expired).")
def approval_sla_sensor(context: SensorEvaluationContext,
                        landscape: LandscapeResource) -> SkipReason:
    with landscape.open() as ls:
        tick = sla_tick(ls)
    for esc in tick.escalated:
        context.log.warning(f"approval {esc.approval_id}: stage {esc.stage} overdue since "
                            f"{esc.due_at}; approvers {', '.join(esc.approvers)}")
    context.update_cursor(tick.cursor())
    return SkipReason(tick.summary())

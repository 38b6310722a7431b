"""Events of approvals, the run gate and the export guard (all in the global ledger scope).

``ir.*`` events keep the contract of the IR-governance producer (source ``ir_governance``);
the others name their producer: ``approvals``, ``run_gate``, ``export_guard``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.landscape.schema import GLOBAL_SCOPE

IR_SOURCE = "ir_governance"
APPROVALS_SOURCE = "approvals"

CREATED = "ir.approval_created"
CONSUMED = "ir.approval_consumed"
EXPIRED = "ir.approval_expired"
INVALID = "ir.approval_invalid"
DECIDED = "approval.decided"
DECISION_REFUSED = "approval.decision_refused"
STAGE_COMPLETED = "approval.stage_completed"
APPROVED = "approval.approved"
REJECTED = "approval.rejected"
DELEGATED = "approval.delegated"
RESET = "approval.reset"
ESCALATED = "approval.stage_escalated"
RUN_BLOCKED = "run.blocked"
EXPORT_BLOCKED = "export.blocked"
EXPORT_WRITTEN = "export.written"


def event(event_type: str, payload: Mapping[str, Any], *, now: str, tenant_id: str | None,
          source: str | None = None, correlation_id: str | None = None,
          target: str | None = None) -> EventRecord:
    src = source or (IR_SOURCE if event_type.startswith("ir.") else APPROVALS_SOURCE)
    return make_event(event_type, scope=GLOBAL_SCOPE, source=src, payload=payload,
                      timestamp=now, tenant_id=tenant_id, target=target,
                      correlation_id=correlation_id,
                      source_module="governance_pipeline.governance.approvals")

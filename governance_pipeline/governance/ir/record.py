"""Recording IR validations and IR↔DAG diffs: one audit unit, one event, each.

Payloads are exactly those of the IR governance event specification (``ir.validated_pass``,
``ir.validated_escalate``, ``ir.validated_reject``, ``ir.dag_diff_ok``, ``ir.dag_diff_failed``);
``validated_at`` / ``verified_at`` come from the Landscape's clock. Outside a run the scope is
``GLOBAL_SCOPE``; a run passes its run id so the event sits in that run's chain.
"""

from __future__ import annotations

from typing import Any

from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.governance.ir.dag import (
    BuiltDag,
    DagDiff,
    diff,
    mismatch_error,
)
from governance_pipeline.governance.ir.model import IR
from governance_pipeline.governance.ir.risk import Outcome, Validation
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

EVENT_SOURCE = "ir_governance"


def validation_payload(validation: Validation, *, tenant_id: str, request_id: str,
                       validated_at: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "tenant_id": tenant_id, "request_id": request_id, "ir_hash": validation.ir_hash,
        "risk_tier": validation.risk_tier, "requires_approval": validation.requires_approval,
        "violations": [v.as_dict() for v in validation.violations],
    }
    if validation.outcome is Outcome.ESCALATE:
        payload["high_risk_steps"] = [h.as_dict() for h in validation.high_risk_steps]
    payload["validated_at"] = validated_at
    payload["step_count"] = validation.step_count
    return payload


def dag_diff_payload(result: DagDiff, *, tenant_id: str, request_id: str,
                     verified_at: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "tenant_id": tenant_id, "request_id": request_id, "ir_hash": result.ir_hash,
        "dag_hash": result.dag_hash, "step_count": result.step_count,
        "dag_node_count": result.dag_node_count, "all_hashes_match": result.all_hashes_match,
    }
    if not result.all_hashes_match:
        payload["mismatch_details"] = result.mismatch_details()
    payload["verified_at"] = verified_at
    return payload


def _record(landscape: Landscape, scope: str, event_type: str, tenant_id: str,
            request_id: str, payload_for: Any) -> EventRecord:
    recorder = Recorder(landscape)
    with recorder.unit(scope) as uow:
        event = make_event(event_type, scope=scope, source=EVENT_SOURCE, tenant_id=tenant_id,
                           correlation_id=request_id, payload=payload_for(uow.now),
                           timestamp=uow.now)
        uow.add(event)
    return event


def record_validation(landscape: Landscape, validation: Validation, *, tenant_id: str,
                      request_id: str | None = None, scope: str = GLOBAL_SCOPE) -> EventRecord:
    """Write the ``ir.validated_<outcome>`` event; returns it."""
    request_id = request_id or new_id("req_")
    return _record(landscape, scope, validation.outcome.event_type, tenant_id, request_id,
                   lambda now: validation_payload(validation, tenant_id=tenant_id,
                                                  request_id=request_id, validated_at=now))


def record_dag_diff(landscape: Landscape, result: DagDiff, *, tenant_id: str,
                    request_id: str | None = None, scope: str = GLOBAL_SCOPE) -> EventRecord:
    """Write ``ir.dag_diff_ok`` or ``ir.dag_diff_failed``; returns the event."""
    request_id = request_id or new_id("req_")
    return _record(landscape, scope, result.event_type, tenant_id, request_id,
                   lambda now: dag_diff_payload(result, tenant_id=tenant_id,
                                                request_id=request_id, verified_at=now))


def check_diff(landscape: Landscape, result: DagDiff, *, tenant_id: str,
               request_id: str | None = None, scope: str = GLOBAL_SCOPE) -> DagDiff:
    """Record ``result``; a failed diff then raises ``DagMismatchError`` (GP-IR-002, exit 5)."""
    record_dag_diff(landscape, result, tenant_id=tenant_id, request_id=request_id, scope=scope)
    if not result.all_hashes_match:
        raise mismatch_error(result)
    return result


def check_dag(landscape: Landscape, ir: IR, dag: BuiltDag, *, tenant_id: str,
              request_id: str | None = None, scope: str = GLOBAL_SCOPE) -> DagDiff:
    """Diff ``ir`` against the built ``dag``, record the outcome, block (raise) on a mismatch."""
    return check_diff(landscape, diff(ir, dag), tenant_id=tenant_id, request_id=request_id,
                      scope=scope)

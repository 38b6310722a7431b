"""A governed month for the bundle tests: real pipeline runs plus governance records.

Runs are real: the shipped linear claims example, run by the engine on the test's Landscape.
The governance records a policy stop leaves (snapshot, decisions, inflection point, incident)
and the approval ladder records are written directly with the recorder, as the policy and
approval services will write them; when the engine records real policy stops, ``stopped_run``
becomes a pipeline run with a policy and nothing else here changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, text

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    CallStatus,
    Decision,
    IncidentSeverity,
    IncidentStatus,
    PolicyMode,
    RuleResult,
    Severity,
    StageStatus,
)
from governance_pipeline.contracts.hashing import CANONICAL_VERSION, canonical_json, stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import (
    Approval,
    ApprovalDecisionRecord,
    ApprovalStage,
    Call,
    Incident,
    InflectionPoint,
    PolicyDecision,
    PolicySnapshotRecord,
)
from governance_pipeline.contracts.operator_records import OperatorAction
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner, config_hash
from governance_pipeline.governance.operator_log import build_event, record_operator_action
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, node_states, rows, tokens
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.engine_fixtures import EXAMPLES, write_claims

POLICIES: list[dict[str, Any]] = [{
    "id": "claims-guard", "mode": "enforced",
    "rules": [{"id": "max-amount", "kind": "expression", "severity": "high",
               "when": "amount > 40000",
               "fix": "Route claims above 40,000 to manual review before the automated sinks."}],
}, {
    "id": "region-watch", "mode": "advisory",
    "rules": [{"id": "known-region", "kind": "expression", "severity": "low",
               "fix": "Add the region to the reference list."}],
}]


@dataclass(frozen=True)
class GovernedPeriod:
    period: str
    approved_run: str      # high-risk (PII) run that consumed an approval
    stopped_run: str       # run stopped by an enforced policy, with its incident
    plain_run: str         # ordinary run with no policy snapshot
    incident_id: str
    approval_id: str
    snapshot_id: str


def run_claims(landscape: Landscape, clock: ManualClock, workdir: Path, name: str, *,
               rows_count: int = 30, pii: bool = False, doc_edit: Any = None) -> str:
    """Run the linear claims example on ``rows_count`` generated rows; returns the run id."""
    data = write_claims(workdir / name / "claims.csv", rows_count, seed=11, malformed=False)
    doc = yaml.safe_load((EXAMPLES / "pipelines" / "claims_linear.yaml").read_text())
    doc["source"]["options"]["path"] = str(data)
    doc["chunk_size"] = 10
    if pii:
        doc["pii_fields"] = ["customer"]
    if doc_edit is not None:
        doc_edit(doc)
    path = workdir / name / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    config = load_pipeline(path, env={"GOVERNANCE_HOME": str(workdir / name / "home")})
    run_id = new_id("run_")
    started = build_event(scope=run_id, now=Recorder(landscape).now(), action=OperatorAction.RUN,
                          actor="ci", subject=run_id, inputs={"config_hash": config_hash(config)})
    runner = Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path, clock=clock,
                          run_id=run_id, records=[started])
    return runner.execute().run_id


def record_snapshot(landscape: Landscape, tenant: str = "acme") -> PolicySnapshotRecord:
    recorder = Recorder(landscape)
    body = canonical_json(POLICIES).decode()
    snap = PolicySnapshotRecord(new_id("snap_"), tenant, stable_hash(POLICIES), CANONICAL_VERSION,
                                body, len(POLICIES), recorder.now())
    with recorder.unit(GLOBAL_SCOPE) as uow:
        uow.add(snap)
    return snap


def _states(landscape: Landscape, run_id: str, node_id: str) -> list[Any]:
    """(token_id, row_index, state_id, step_index) of the node's states, by row index."""
    q = (select(tokens.c.token_id, rows.c.row_index, node_states.c.state_id,
                node_states.c.step_index)
         .join(rows, rows.c.row_id == tokens.c.row_id)
         .join(node_states, node_states.c.token_id == tokens.c.token_id)
         .where(tokens.c.run_id == run_id, node_states.c.node_id == node_id)
         .order_by(rows.c.row_index))
    with landscape.engine.connect() as conn:
        return list(conn.execute(q))


def record_decisions(landscape: Landscape, clock: ManualClock, run_id: str,
                     snap: PolicySnapshotRecord, *, stop_at_row: int | None = None,
                     cost: float = 0.0) -> str | None:
    """Policy decisions on every row at ``normalize`` (one advisory would_block violation);
    with ``stop_at_row``, an enforced violation there stops the run: inflection point, incident,
    run failed_policy. Returns the incident id, if any."""
    clock.advance(2.5)  # the stop is recorded after the rows it concerns entered the run
    recorder = Recorder(landscape)
    states = _states(landscape, run_id, "normalize")
    incident_id = None
    with recorder.unit(run_id, seal=True) as uow:
        for i, s in enumerate(states):
            stop = s.row_index == stop_at_row
            advisory_fail = i == 1
            for policy, rule, mode, sev, fail in (
                    ("claims-guard", "max-amount", PolicyMode.ENFORCED, Severity.HIGH, stop),
                    ("region-watch", "known-region", PolicyMode.ADVISORY, Severity.LOW,
                     advisory_fail)):
                decision = PolicyDecision(
                    new_id("pd_"), run_id, s.token_id, "normalize", s.step_index, s.state_id,
                    snap.snapshot_id, snap.content_hash, policy, rule, "expression", sev, mode,
                    RuleResult.FAIL if fail else RuleResult.PASS, fail,
                    '{"amount": 48200.0, "limit": 40000}' if fail else None, uow.now)
                uow.add(decision)
                if stop and mode is PolicyMode.ENFORCED:
                    point = InflectionPoint(
                        new_id("inf_"), run_id, s.token_id, s.row_index, "normalize",
                        s.step_index, decision.decision_id, snap.snapshot_id, policy, rule,
                        "claim amount 48200.0 exceeds the limit of 40000", uow.now)
                    incident_id = new_id("inc_")
                    uow.add(point)
                    uow.add(Incident(
                        incident_id, run_id, IncidentSeverity.HIGH, IncidentStatus.OPEN,
                        "Enforced policy claims-guard stopped the run", snap.snapshot_id,
                        policy, rule, s.token_id, "normalize", s.step_index, point.reason,
                        None, uow.now, point.inflection_id))
        if cost and states:
            uow.add(Call(new_id("call_"), run_id, states[0].state_id, None, 0, "llm",
                         CallStatus.SUCCESS, "a" * 64, "b" * 64, None, 120.0, cost, uow.now))
        values: dict[str, Any] = {"policy_snapshot_id": snap.snapshot_id}
        if incident_id is not None:
            values |= {"status": "failed_policy", "termination_reason": "policy_block",
                       "ended_at": uow.now}
        uow.update("runs", {"run_id": run_id}, values)
    clock.advance(5)
    return incident_id


def record_approval(landscape: Landscape, clock: ManualClock, subject_hash: str, *,
                    consumed_for: str | None, requester: str = "dev.alice",
                    approver: str = "risk.bob", role: str = "risk_officer",
                    tenant: str = "acme") -> str:
    """A one-stage approval ladder, decided by ``approver`` in ``role`` (and consumed)."""
    recorder = Recorder(landscape)
    now = recorder.now()
    approval_id, stage_id = new_id("apr_"), new_id("stg_")
    consumed = consumed_for is not None
    with recorder.unit(GLOBAL_SCOPE) as uow:
        uow.add(Approval(approval_id, tenant, "ir", subject_hash, "claims_linear", requester,
                         ApprovalStatus.CONSUMED if consumed else ApprovalStatus.APPROVED,
                         '[{"name": "risk review", "role": "risk_officer"}]', None, 0,
                         stable_hash(approval_id), None, now if consumed else None,
                         "engine" if consumed else None, consumed_for, now))
        uow.add(ApprovalStage(stage_id, approval_id, 0, "risk review", "risk_officer", 1, 3600,
                              StageStatus.APPROVED, now, now, None, now))
        uow.add(ApprovalDecisionRecord(new_id("apd_"), approval_id, stage_id, 0, approver, role,
                                       Decision.APPROVE, "reviewed the change", None, now))
        record_operator_action(uow, action=OperatorAction.APPROVAL_APPROVE, actor=approver,
                               subject=approval_id, inputs={"approval_id": approval_id,
                                                            "round": 0})
        if consumed:
            record_operator_action(uow, action=OperatorAction.TOKEN_CONSUME, actor="engine",
                                   subject=approval_id, inputs={"approval_id": approval_id})
    clock.advance(5)
    return approval_id


def governed_period(landscape: Landscape, clock: ManualClock, workdir: Path) -> GovernedPeriod:
    """Three runs in January 2026: approved (PII, approval consumed), stopped by policy (with
    an incident), and plain (no snapshot)."""
    snap = record_snapshot(landscape)
    approved = run_claims(landscape, clock, workdir, "approved", pii=True)
    from governance_pipeline.landscape.queries import get_run
    approval_id = record_approval(landscape, clock, f"sha256:{get_run(landscape, approved).config_hash}",
                                  consumed_for=approved)
    record_decisions(landscape, clock, approved, snap)
    stopped = run_claims(landscape, clock, workdir, "stopped", rows_count=25)
    incident_id = record_decisions(landscape, clock, stopped, snap, stop_at_row=12, cost=0.75)
    assert incident_id is not None
    plain = run_claims(landscape, clock, workdir, "plain", rows_count=12)
    return GovernedPeriod("2026-01", approved, stopped, plain, incident_id, approval_id,
                          snap.snapshot_id)


# --- a sealed run for the inclusion-proof tests (the bundle directory's side) --------------------
@dataclass(frozen=True)
class SealedRun:
    run_id: str
    snapshot_id: str
    samples: list[tuple[str, str, str]]   # (table, key, scope), as a bundle's sampled_records


def query(landscape: Landscape, statement: str, **params: Any) -> list[Any]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(text(statement), params))


def record_policy_snapshot(landscape: Landscape, *, seal: bool = False) -> str:
    """A policy snapshot in the global scope (unsealed unless ``seal``); returns its id."""
    recorder = Recorder(landscape)
    body = canonical_json(POLICIES).decode()
    snap = PolicySnapshotRecord(new_id("snap_"), "acme", stable_hash(POLICIES), CANONICAL_VERSION,
                                body, len(POLICIES), recorder.now())
    with recorder.unit(GLOBAL_SCOPE, seal=seal) as uow:
        uow.add(snap)
    return snap.snapshot_id


def sealed_run(landscape: Landscape, clock: ManualClock, workdir: Path) -> SealedRun:
    """A completed, sealed run of several chunks and a sealed global scope holding a snapshot.

    Samples: the run record (re-committed by the sealing entry), the first and the last node
    state, one source row and the snapshot."""
    snapshot_id = record_policy_snapshot(landscape, seal=True)
    run_id = run_claims(landscape, clock, workdir, "sealed", rows_count=30)
    states = [r[0] for r in query(landscape, "SELECT state_id FROM node_states WHERE run_id = :r "
                                  "ORDER BY started_at, state_id", r=run_id)]
    row_id = query(landscape, "SELECT row_id FROM rows WHERE run_id = :r ORDER BY row_index",
                   r=run_id)[5][0]
    return SealedRun(run_id, snapshot_id, [
        ("runs", run_id, run_id), ("node_states", states[0], run_id),
        ("node_states", states[-1], run_id), ("rows", row_id, run_id),
        ("policy_snapshots", snapshot_id, GLOBAL_SCOPE)])

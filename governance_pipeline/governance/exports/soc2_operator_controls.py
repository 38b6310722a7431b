"""SOC 2 controls over the operator audit log: logical access (CC6) and change management (CC8).

Populations are the ``operator_events`` of the period (query and digest in the bundle like every
other control); each sampled entry is tested against the state it claims to have changed, so a
log that disagrees with the Landscape is an exception, not a pass.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import String, literal, or_, select

from governance_pipeline.contracts.enums import ApprovalStatus, ExportStatus
from governance_pipeline.contracts.operator_records import (
    OperatorAction,
    OperatorEvent,
    OperatorResult,
)
from governance_pipeline.governance.exports.soc2_controls import (
    FAIL,
    PASS,
    CheckContext,
    Control,
    Period,
    Verdict,
)
from governance_pipeline.landscape.schema import (
    approval_decisions,
    approvals,
    exports,
    operator_events,
    policy_snapshots,
    runs,
)

_ACCESS = [a.value for a in OperatorAction if a.is_access]
_CHANGE = [a.value for a in OperatorAction if a.is_change]


def _events(actions: list[str]) -> Any:
    def population(p: Period) -> Any:
        t = operator_events.c
        q = (select(t.event_id.label("key"), t.scope.label("scope"))
             .where(t.occurred_at >= p.start, t.occurred_at < p.end, t.action.in_(actions)))
        if p.tenant_id:
            # Run-scoped entries belong to their run's tenant; global ones name it in their
            # inputs (canonical JSON: no spaces, so the pattern is exact).
            in_tenant = select(runs.c.run_id).where(runs.c.tenant_id == p.tenant_id)
            named = literal(f'%"tenant_id":"{p.tenant_id}"%', String)
            q = q.where(or_(t.scope.in_(in_tenant), t.inputs_json.like(named)))
        return q
    return population


def _event(ctx: CheckContext, key: str) -> tuple[OperatorEvent, dict[str, Any]]:
    e = OperatorEvent.from_row(ctx.conn.execute(
        select(operator_events).where(operator_events.c.event_id == key)).mappings().one())
    return e, orjson.loads(e.inputs_json)


def _who(e: OperatorEvent) -> str:
    return f"{e.action.value} by {e.actor} via {e.surface.value} at {e.occurred_at}"


def _refusal(e: OperatorEvent) -> Verdict | None:
    if e.result is OperatorResult.OK:
        return None
    return PASS, f"{_who(e)}: {e.result.value} with {e.code} (nothing changed)"


def _test_access(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    e, inputs = _event(ctx, key)
    refused = _refusal(e)
    if refused:
        return refused
    c = ctx.conn
    if e.action is OperatorAction.TOKEN_CONSUME:
        row = c.execute(select(approvals.c.status, approvals.c.consumed_by).where(
            approvals.c.approval_id == inputs.get("approval_id"))).first()
        if row is None or row.status != ApprovalStatus.CONSUMED.value or row.consumed_by != e.actor:
            return FAIL, f"{_who(e)}: approval {inputs.get('approval_id')} is not consumed by them"
    elif e.action is OperatorAction.EXPORT:
        row = c.execute(select(exports.c.status, exports.c.bundle_digest).where(
            exports.c.export_id == inputs.get("export_id"))).first()
        if row is None or row.status != ExportStatus.WRITTEN.value \
                or row.bundle_digest != inputs.get("bundle_digest"):
            return FAIL, f"{_who(e)}: no written export {inputs.get('export_id')} with that digest"
    elif e.action in (OperatorAction.APPROVAL_APPROVE, OperatorAction.APPROVAL_REJECT):
        vote = c.execute(select(approval_decisions.c.decision).where(
            approval_decisions.c.approval_id == e.subject, approval_decisions.c.actor == e.actor,
            approval_decisions.c.round == inputs.get("round"))).first()
        want = "approve" if e.action is OperatorAction.APPROVAL_APPROVE else "reject"
        if vote is None or vote.decision != want:
            return FAIL, f"{_who(e)}: no recorded {want} vote of theirs on {e.subject}"
    return PASS, f"{_who(e)}: ok, {e.subject or '-'}"


def _test_change(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    e, inputs = _event(ctx, key)
    refused = _refusal(e)
    if refused:
        return refused
    if e.action is OperatorAction.RUN:
        run = ctx.conn.execute(select(runs.c.config_hash, runs.c.policy_snapshot_id).where(
            runs.c.run_id == e.subject)).first()
        if run is None or run.config_hash != inputs.get("config_hash"):
            return FAIL, f"{_who(e)}: run {e.subject} missing or of another configuration"
        snap = ctx.conn.execute(select(policy_snapshots.c.content_hash).where(
            policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).scalar()
        if snap != inputs.get("policy_snapshot_hash"):
            return FAIL, f"{_who(e)}: run {e.subject} ran under another policy snapshot"
        return PASS, (f"{_who(e)}: run {e.subject}, pipeline sha256 "
                      f"{str(inputs.get('pipeline_sha256'))[:12]}…, mode "
                      f"{inputs.get('policy_mode')}, kill switch "
                      f"{'on' if inputs.get('kill_switch') else 'off'}")
    return PASS, f"{_who(e)}: ok, {e.subject or '-'}"


OPERATOR_CONTROLS: tuple[Control, ...] = (
    Control("GP-CC6.1-OPS", ("CC6.1",), "Access actions attributed in the operator log",
            "Every approval request, vote, delegation, reset, token use and export attempt in "
            "the period is an operator-log entry with its actor; a granted one matches the "
            "state it changed (the consumed approval, the written export, the recorded vote), "
            "a refused one names its GP code.",
            "operator_events", _events(_ACCESS), _test_access,
            "no access action was taken in the period"),
    Control("GP-CC8.1-OPS", ("CC8.1",), "Changes attributed in the operator log",
            "Every run start, resume, incident acknowledgement or resolution, purge, erasure "
            "and key rotation in the period is an operator-log entry with its actor; a started "
            "run matches its configuration hash and the policy snapshot (mode, kill switch) "
            "it ran under.",
            "operator_events", _events(_CHANGE), _test_change,
            "no change action was taken in the period"),
)

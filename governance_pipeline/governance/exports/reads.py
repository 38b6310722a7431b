"""Reads the bundle builders share: ledger heads, and Tier-1 records turned into bundle models.

Every row is read back through its record's ``from_row`` (Tier-1), so a bundle is never built
from a value the audit model does not allow.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from sqlalchemy import Connection, and_, select

from governance_pipeline.contracts.records import (
    Approval,
    ApprovalDecisionRecord,
    ApprovalStage,
    Incident,
    InflectionPoint,
)
from governance_pipeline.governance.exports.models import (
    ApprovalDecisionInfo,
    ApprovalInfo,
    DecisionSignatureInfo,
    IncidentInfo,
    InflectionInfo,
    LedgerHead,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.schema import (
    approval_decisions,
    approval_signatures,
    approval_stages,
    approvals,
    ledger_seals,
)


def ledger_heads(conn: Connection, scopes: Iterable[str]) -> list[LedgerHead]:
    """The head of each scope's chain, sorted by scope, and whether a seal covers it."""
    heads = []
    for scope in sorted(set(scopes)):
        head = ledger.read_head(conn, scope)
        sealed = conn.execute(select(ledger_seals.c.seal_id).where(
            and_(ledger_seals.c.scope == scope, ledger_seals.c.seq == head.seq,
                 ledger_seals.c.head_hash == head.entry_hash)).limit(1)).first() is not None
        heads.append(LedgerHead(scope=scope, seq=head.seq, entry_hash=head.entry_hash,
                                sealed=sealed))
    return heads


def inflection_info(p: InflectionPoint) -> InflectionInfo:
    return InflectionInfo(
        inflection_id=p.inflection_id, token_id=p.token_id, row_index=p.row_index,
        node_id=p.node_id, step_index=p.step_index, decision_id=p.decision_id,
        snapshot_id=p.snapshot_id, policy_id=p.policy_id, rule_id=p.rule_id, reason=p.reason,
        occurred_at=p.occurred_at)


def incident_info(i: Incident) -> IncidentInfo:
    return IncidentInfo(
        incident_id=i.incident_id, severity=i.severity.value, status=i.status.value,
        summary=i.summary, policy_id=i.policy_id, rule_id=i.rule_id,
        inflection_id=i.inflection_id, detected_at=i.detected_at, resolved_at=i.resolved_at,
        resolution=i.resolution)


def approvals_for_run(conn: Connection, run_id: str) -> list[ApprovalInfo]:
    """Approvals consumed by the run or whose subject reference is the run, with their votes."""
    found = [Approval.from_row(r) for r in conn.execute(
        select(approvals).where((approvals.c.consumed_for == run_id)
                                | (approvals.c.subject_ref == run_id))
        .order_by(approvals.c.created_at, approvals.c.approval_id)).mappings()]
    return [approval_info(conn, a) for a in found]


def approval_info(conn: Connection, a: Approval) -> ApprovalInfo:
    stages = {s.stage_id: s for s in (ApprovalStage.from_row(r) for r in conn.execute(
        select(approval_stages).where(approval_stages.c.approval_id == a.approval_id)).mappings())}
    votes = [ApprovalDecisionRecord.from_row(r) for r in conn.execute(
        select(approval_decisions).where(approval_decisions.c.approval_id == a.approval_id)
        .order_by(approval_decisions.c.decided_at, approval_decisions.c.decision_id)).mappings()]
    signatures = {r["decision_id"]: DecisionSignatureInfo(
        statement_json=r["statement_json"], signature=r["signature"],
        key_fingerprint=r["key_fingerprint"]) for r in conn.execute(
        select(approval_signatures).where(approval_signatures.c.approval_id == a.approval_id)
    ).mappings()}
    ladder = orjson.loads(a.ladder_json)
    mode = (ladder.get("signatures") if isinstance(ladder, dict) else None) or "unsigned"
    return ApprovalInfo(
        signatures=mode, ladder_json=a.ladder_json,
        approval_id=a.approval_id, subject_type=a.subject_type, subject_hash=a.subject_hash,
        subject_ref=a.subject_ref, requested_by=a.requested_by, status=a.status.value,
        consumed_at=a.consumed_at, consumed_by=a.consumed_by, consumed_for=a.consumed_for,
        decisions=[ApprovalDecisionInfo(
            decision_id=v.decision_id,
            stage_name=stages[v.stage_id].name if v.stage_id in stages else v.stage_id,
            round=v.round, actor=v.actor, role=v.role, decision=v.decision.value,
            delegated_from=v.delegated_from, decided_at=v.decided_at,
            signature=signatures.get(v.decision_id)) for v in votes])


def approvals_decided_in(conn: Connection, start: str, end: str,
                         tenant_id: str | None) -> list[ApprovalInfo]:
    """Approvals with at least one decision in [start, end), optionally of one tenant."""
    ids = select(approval_decisions.c.approval_id).where(
        approval_decisions.c.decided_at >= start, approval_decisions.c.decided_at < end)
    query = select(approvals).where(approvals.c.approval_id.in_(ids))
    if tenant_id is not None:
        query = query.where(approvals.c.tenant_id == tenant_id)
    found = [Approval.from_row(r) for r in conn.execute(
        query.order_by(approvals.c.created_at, approvals.c.approval_id)).mappings()]
    return [approval_info(conn, a) for a in found]

"""Read models of approvals: a request with its stages, decisions and delegations (Tier-1 reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from governance_pipeline.contracts.enums import ApprovalStatus, Decision, StageStatus
from governance_pipeline.contracts.records import (
    Approval,
    ApprovalDecisionRecord,
    ApprovalDelegation,
    ApprovalSignature,
    ApprovalStage,
)
from governance_pipeline.landscape.schema import (
    approval_decisions,
    approval_delegations,
    approval_signatures,
    approval_stages,
    approvals,
)
from governance_pipeline.landscape.store import Landscape

from governance_pipeline.governance.approvals.codes import APPROVAL_NOT_FOUND
from governance_pipeline.contracts.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class ApprovalView:
    approval: Approval
    stages: tuple[ApprovalStage, ...]
    decisions: tuple[ApprovalDecisionRecord, ...]
    delegations: tuple[ApprovalDelegation, ...]
    signatures: tuple[ApprovalSignature, ...] = ()

    @property
    def approval_id(self) -> str:
        return self.approval.approval_id

    def signature_of(self, decision_id: str) -> ApprovalSignature | None:
        return next((s for s in self.signatures if s.decision_id == decision_id), None)

    @property
    def ladder(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.approval.ladder_json)
        return doc

    def approvers(self, stage: ApprovalStage) -> list[str]:
        for spec in self.ladder["stages"]:
            if spec["name"] == stage.name:
                return list(spec["approvers"])
        return []

    @property
    def active_stage(self) -> ApprovalStage | None:
        return next((s for s in self.stages if s.status is StageStatus.ACTIVE), None)

    def round_decisions(self, stage: ApprovalStage) -> list[ApprovalDecisionRecord]:
        return [d for d in self.decisions
                if d.stage_id == stage.stage_id and d.round == self.approval.round]

    def round_delegations(self, stage: ApprovalStage) -> list[ApprovalDelegation]:
        return [d for d in self.delegations
                if d.stage_id == stage.stage_id and d.round == self.approval.round]

    def approvals_count(self, stage: ApprovalStage) -> int:
        return sum(1 for d in self.round_decisions(stage) if d.decision is Decision.APPROVE)

    def clearance_state(self, now_iso: str) -> dict[str, Any]:
        """Whether this request would let its subject through now, and if not why."""
        a = self.approval
        if a.status is ApprovalStatus.APPROVED and (a.token_expires_at is None
                                                    or a.token_expires_at > now_iso):
            clear = all(s.status is StageStatus.APPROVED for s in self.stages)
            return {"clear": clear, "reason": None if clear else "not_approved"}
        if a.status is ApprovalStatus.PENDING:
            active = self.active_stage
            return {"clear": False, "reason": "not_approved",
                    "waiting_for": active.name if active else None}
        reason = {ApprovalStatus.CONSUMED: "already_consumed",
                  ApprovalStatus.REJECTED: "rejected"}.get(a.status, "expired")
        return {"clear": False, "reason": reason}

    def as_dict(self) -> dict[str, Any]:
        a = self.approval
        return {
            "approval_id": a.approval_id, "tenant_id": a.tenant_id,
            "subject_type": a.subject_type, "subject_hash": a.subject_hash,
            "subject_ref": a.subject_ref, "requested_by": a.requested_by,
            "status": a.status.value, "round": a.round, "reason": a.reason,
            "token_expires_at": a.token_expires_at, "consumed_at": a.consumed_at,
            "consumed_by": a.consumed_by, "consumed_for": a.consumed_for,
            "created_at": a.created_at, "ladder": self.ladder.get("name"),
            "stages": [{"stage_id": s.stage_id, "ordinal": s.ordinal, "name": s.name,
                        "role": s.approver_role, "approvers": self.approvers(s),
                        "quorum": s.quorum, "approvals": self.approvals_count(s),
                        "sla_seconds": s.sla_seconds, "status": s.status.value,
                        "activated_at": s.activated_at, "due_at": s.due_at,
                        "escalated_at": s.escalated_at, "completed_at": s.completed_at}
                       for s in self.stages],
            "signatures": self.ladder.get("signatures") or "unsigned",
            "decisions": [{"stage_id": d.stage_id, "round": d.round, "actor": d.actor,
                           "role": d.role, "decision": d.decision.value, "reason": d.reason,
                           "delegated_from": d.delegated_from, "decided_at": d.decided_at,
                           "key_fingerprint": sig.key_fingerprint if sig else None}
                          for d in self.decisions for sig in [self.signature_of(d.decision_id)]],
            "delegations": [{"stage_id": d.stage_id, "round": d.round,
                             "from_actor": d.from_actor, "to_actor": d.to_actor,
                             "role": d.role, "reason": d.reason, "created_at": d.created_at}
                            for d in self.delegations],
        }


def _view(conn: Connection, approval: Approval) -> ApprovalView:
    aid = approval.approval_id
    stages = conn.execute(select(approval_stages).where(approval_stages.c.approval_id == aid)
                          .order_by(approval_stages.c.ordinal)).mappings().all()
    decisions = conn.execute(select(approval_decisions)
                             .where(approval_decisions.c.approval_id == aid)
                             .order_by(approval_decisions.c.decided_at,
                                       approval_decisions.c.decision_id)).mappings().all()
    delegations = conn.execute(select(approval_delegations)
                               .where(approval_delegations.c.approval_id == aid)
                               .order_by(approval_delegations.c.created_at,
                                         approval_delegations.c.delegation_id)).mappings().all()
    signatures = conn.execute(select(approval_signatures)
                              .where(approval_signatures.c.approval_id == aid)
                              .order_by(approval_signatures.c.decision_id)).mappings().all()
    return ApprovalView(approval, tuple(ApprovalStage.from_row(r) for r in stages),
                        tuple(ApprovalDecisionRecord.from_row(r) for r in decisions),
                        tuple(ApprovalDelegation.from_row(r) for r in delegations),
                        tuple(ApprovalSignature.from_row(r) for r in signatures))


def load_view(landscape: Landscape, approval_id: str) -> ApprovalView:
    with landscape.engine.connect() as conn:
        row = conn.execute(select(approvals).where(approvals.c.approval_id == approval_id)
                           ).mappings().first()
        if row is None:
            raise NotFoundError(f"no approval request {approval_id}", code=APPROVAL_NOT_FOUND,
                                details={"approval_id": approval_id})
        return _view(conn, Approval.from_row(row))


def find_by_token_hash(landscape: Landscape, token_hash: str) -> Approval | None:
    with landscape.engine.connect() as conn:
        row = conn.execute(select(approvals).where(approvals.c.token_hash == token_hash)
                           ).mappings().first()
    return None if row is None else Approval.from_row(row)


def list_views(landscape: Landscape, *, tenant_id: str | None = None,
               status: ApprovalStatus | None = None, subject_hash: str | None = None,
               limit: int | None = None) -> list[ApprovalView]:
    query = select(approvals).order_by(approvals.c.created_at.desc(),
                                       approvals.c.approval_id.desc())
    if tenant_id is not None:
        query = query.where(approvals.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(approvals.c.status == status.value)
    if subject_hash is not None:
        query = query.where(approvals.c.subject_hash == subject_hash)
    if limit is not None:
        query = query.limit(limit)
    with landscape.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        return [_view(conn, Approval.from_row(r)) for r in rows]


def overdue_stages(landscape: Landscape, now_iso: str) -> list[tuple[Approval, ApprovalStage]]:
    """Active, not yet escalated stages of pending requests whose SLA has run out."""
    query = (select(approvals, approval_stages)
             .join(approval_stages, approval_stages.c.approval_id == approvals.c.approval_id)
             .where(approvals.c.status == ApprovalStatus.PENDING.value,
                    approval_stages.c.status == StageStatus.ACTIVE.value,
                    approval_stages.c.escalated_at.is_(None),
                    approval_stages.c.due_at <= now_iso)
             .order_by(approval_stages.c.due_at, approval_stages.c.stage_id))
    a_cols = [c.name for c in approvals.columns]
    s_cols = [c.name for c in approval_stages.columns]
    with landscape.engine.connect() as conn:
        result = conn.execute(query).all()
    out = []
    for row in result:
        values = list(row)
        a_row = dict(zip(a_cols, values[:len(a_cols)], strict=True))
        s_row = dict(zip(s_cols, values[len(a_cols):], strict=True))
        out.append((Approval.from_row(a_row), ApprovalStage.from_row(s_row)))
    return out


def due_for_expiry(landscape: Landscape, now_iso: str) -> list[Approval]:
    """Open requests (pending or approved, not consumed) whose token TTL has run out."""
    query = (select(approvals)
             .where(approvals.c.status.in_([ApprovalStatus.PENDING.value,
                                            ApprovalStatus.APPROVED.value]),
                    approvals.c.token_expires_at <= now_iso)
             .order_by(approvals.c.token_expires_at, approvals.c.approval_id))
    with landscape.engine.connect() as conn:
        return [Approval.from_row(r) for r in conn.execute(query).mappings().all()]

"""The approval service: requests, ladder decisions, delegation and reset.

Every action is one recorder unit in the global scope holding the state change and its events,
so the audit trail and the ledger can never disagree with the approval tables. Units that act
on a request guard its ``round`` and ``status``: a decision racing a reset, or two votes racing
for the last place in a quorum, lose with ``StaleStateError`` (or are settled right after)
instead of leaving a half-applied ladder.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, Literal

from governance_pipeline.contracts.clock import Clock, from_iso, to_iso
from governance_pipeline.contracts.enums import ApprovalStatus, Decision, StageStatus
from governance_pipeline.contracts.errors import ConfigError, GovernanceError, StaleStateError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import (
    Approval,
    ApprovalDecisionRecord,
    ApprovalDelegation,
    ApprovalSignature,
    ApprovalStage,
)
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)
from governance_pipeline.governance.approvals import emit, redemption, sla, tokens
from governance_pipeline.governance.approvals.codes import (
    DECISION_REFUSED,
    DELEGATION_REFUSED,
    NOT_OPEN,
)
from governance_pipeline.governance.approvals.decision_keys import SignedDecision
from governance_pipeline.governance.approvals.ladders import LadderCatalog, load_ladders
from governance_pipeline.governance.approvals.signature_check import (
    check_signature,
    expected_statement,
)
from governance_pipeline.governance.approvals.views import ApprovalView, list_views, load_view

SubjectType = Literal["pipeline", "export"]
SUBJECT_TYPES: tuple[str, ...] = ("pipeline", "export")
DEFAULT_TTL_SECONDS = 24 * 3600


class ApprovalService:
    def __init__(self, landscape: Landscape, *, clock: Clock | None = None,
                 ladders: LadderCatalog | None = None) -> None:
        if clock is not None and clock is not landscape.clock:
            landscape = dataclasses.replace(landscape, clock=clock)
        self.landscape = landscape
        self.clock = landscape.clock
        self.recorder = Recorder(landscape)
        self._ladders = ladders

    @property
    def ladders(self) -> LadderCatalog:
        if self._ladders is None:
            self._ladders = load_ladders()
        return self._ladders

    def now(self) -> str:
        return to_iso(self.clock.now())

    # -- reads -------------------------------------------------------------------------------------
    def get(self, approval_id: str) -> ApprovalView:
        return load_view(self.landscape, approval_id)

    def list(self, *, tenant_id: str | None = None, status: ApprovalStatus | None = None,
             subject_hash: str | None = None, limit: int | None = None) -> list[ApprovalView]:
        return list_views(self.landscape, tenant_id=tenant_id, status=status,
                          subject_hash=subject_hash, limit=limit)

    # -- request -----------------------------------------------------------------------------------
    def request(self, *, tenant_id: str, subject_type: SubjectType, subject_hash: str,
                subject_ref: str, requested_by: str, ladder: str | None = None,
                ttl_seconds: int | None = None, reason: str | None = None,
                correlation_id: str | None = None,
                risk_tier: int | None = None) -> tuple[Approval, str]:
        """Open a request under ``ladder``; returns it and the raw token (shown once, never
        stored: only its SHA-256 is). Recorded in the operator log, refused or not."""
        with operator_action(self.recorder, action=OperatorAction.APPROVAL_REQUEST,
                             actor=requested_by, inputs={
                                 "tenant_id": tenant_id, "subject_type": subject_type,
                                 "subject_hash": subject_hash, "ladder": ladder,
                                 "ttl_seconds": ttl_seconds, "risk_tier": risk_tier}) as act:
            return self._request(act, tenant_id=tenant_id, subject_type=subject_type,
                                 subject_hash=subject_hash, subject_ref=subject_ref,
                                 requested_by=requested_by, ladder=ladder,
                                 ttl_seconds=ttl_seconds, reason=reason,
                                 correlation_id=correlation_id, risk_tier=risk_tier)

    def _request(self, act: OperatorActionScope, *, tenant_id: str, subject_type: SubjectType,
                 subject_hash: str, subject_ref: str, requested_by: str, ladder: str | None,
                 ttl_seconds: int | None, reason: str | None, correlation_id: str | None,
                 risk_tier: int | None) -> tuple[Approval, str]:
        if subject_type not in SUBJECT_TYPES:
            raise ConfigError(f"subject_type must be one of {SUBJECT_TYPES}, not {subject_type!r}")
        if not subject_hash.startswith("sha256:") or len(subject_hash) != 71:
            raise ConfigError(f"subject_hash must be 'sha256:' + 64 hex digits: {subject_hash!r}")
        ttl = DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ConfigError(f"ttl_seconds must be positive, not {ttl}")
        ladder_name = ladder or LadderCatalog.default_for(subject_type, risk_tier)
        spec = self.ladders.get(ladder_name)
        moment = self.clock.now()
        now = to_iso(moment)
        expires = to_iso(moment + timedelta(seconds=ttl))
        raw = tokens.new_token()
        ladder_doc = spec.stored(ladder_name)
        approval = Approval(
            approval_id=new_id("appr_"), tenant_id=tenant_id, subject_type=subject_type,
            subject_hash=subject_hash, subject_ref=subject_ref, requested_by=requested_by,
            status=ApprovalStatus.PENDING, ladder_json=canonical_json(ladder_doc).decode(),
            reason=reason, round=0, token_hash=tokens.hash_token(raw), token_expires_at=expires,
            consumed_at=None, consumed_by=None, consumed_for=None, created_at=now)
        stages = [ApprovalStage(
            stage_id=new_id("stg_"), approval_id=approval.approval_id, ordinal=i, name=s.name,
            approver_role=s.role, quorum=s.quorum, sla_seconds=s.sla_seconds,
            status=StageStatus.ACTIVE if i == 0 else StageStatus.WAITING,
            activated_at=now if i == 0 else None,
            due_at=to_iso(moment + timedelta(seconds=s.sla_seconds)) if i == 0 else None,
            escalated_at=None, completed_at=None) for i, s in enumerate(spec.stages)]
        with self.recorder.unit(GLOBAL_SCOPE) as uow:
            uow.add(approval)
            uow.add_all(stages)
            act.subject = approval.approval_id
            act.inputs["ladder"] = ladder_name
            act.record_in(uow)
            uow.add(emit.event(emit.CREATED, {
                "approval_id": approval.approval_id, "tenant_id": tenant_id,
                "ir_hash": subject_hash, "subject_type": subject_type,
                "subject_ref": subject_ref, "ladder": ladder_name,
                "stages": [s.name for s in spec.stages], "ttl_seconds": ttl,
                "expires_at": expires, "created_by": requested_by, "created_at": now,
            }, now=now, tenant_id=tenant_id, correlation_id=correlation_id))
        return approval, raw

    # -- decide ------------------------------------------------------------------------------------
    def decision_statement(self, approval_id: str, *, actor: str, role: str,
                           decision: Decision) -> dict[str, Any]:
        """What ``actor`` signs to take ``decision`` on the active stage now."""
        view = self.get(approval_id)
        stage = self._decidable_stage(view, role)
        return expected_statement(view, stage, actor=actor, role=role, decision=decision,
                                  signed_at=self.now())

    def decide(self, approval_id: str, *, actor: str, role: str, decision: Decision,
               reason: str | None = None, signed: SignedDecision | None = None) -> ApprovalView:
        """Record ``actor``'s decision on the active stage; a quorum of approvals completes it
        and activates the next, a rejection rejects the whole request. Under a signed ladder
        ``signed`` must be the actor's signature over this decision's statement; a missing or
        wrong one is refused (GP-SIGN-*), recorded as an ``approval.decision_refused`` event."""
        decision = Decision(decision)
        action = OperatorAction.APPROVAL_APPROVE if decision is Decision.APPROVE \
            else OperatorAction.APPROVAL_REJECT
        with operator_action(self.recorder, action=action, actor=actor, subject=approval_id,
                             inputs={"approval_id": approval_id, "role": role}) as act:
            return self._decide(act, approval_id, actor=actor, role=role, decision=decision,
                                reason=reason, signed=signed)

    def _decide(self, act: OperatorActionScope, approval_id: str, *, actor: str, role: str,
                decision: Decision, reason: str | None,
                signed: SignedDecision | None) -> ApprovalView:
        view = self.get(approval_id)
        act.inputs.update(subject_hash=view.approval.subject_hash, round=view.approval.round)
        stage = self._decidable_stage(view, role)
        delegated_from = self._eligibility(view, stage, actor, decision)
        try:
            check_signature(view, stage, actor=actor, role=role, decision=decision,
                            delegated=delegated_from is not None, signed=signed)
        except GovernanceError as exc:
            self._record_refusal(view, stage, exc, actor=actor, role=role, decision=decision,
                                 signed=signed)
            raise
        a = view.approval
        with self.recorder.unit(GLOBAL_SCOPE) as uow:
            _guard_open(uow, a)
            uow.guard("approval_stages", {"stage_id": stage.stage_id},
                      {"status": StageStatus.ACTIVE.value})
            record = ApprovalDecisionRecord(
                decision_id=new_id("dec_"), approval_id=a.approval_id, stage_id=stage.stage_id,
                round=a.round, actor=actor, role=role, decision=decision, reason=reason,
                delegated_from=delegated_from, decided_at=uow.now)
            uow.add(record)
            if signed is not None:
                uow.add(ApprovalSignature(
                    decision_id=record.decision_id, approval_id=a.approval_id,
                    statement_json=signed.message.decode("utf-8"), signature=signed.signature,
                    key_fingerprint=signed.key_fingerprint,
                    signed_at=str(signed.statement["signed_at"])))
            act.inputs["stage"] = stage.name
            act.record_in(uow)
            uow.add(self._event(emit.DECIDED, a, uow.now, stage=stage.name, role=role,
                                actor=actor, decision=decision.value, reason=reason,
                                delegated_from=delegated_from, round=a.round))
            if decision is Decision.REJECT:
                self._complete(uow, view, stage, StageStatus.REJECTED)
            elif view.approvals_count(stage) + 1 >= stage.quorum:
                self._complete(uow, view, stage, StageStatus.APPROVED)
        self._settle(approval_id)
        return self.get(approval_id)

    def _record_refusal(self, view: ApprovalView, stage: ApprovalStage, exc: GovernanceError,
                        *, actor: str, role: str, decision: Decision,
                        signed: SignedDecision | None) -> None:
        """The refused attempt goes into the trail; the request itself is not touched."""
        with self.recorder.unit(GLOBAL_SCOPE) as uow:
            uow.add(self._event(emit.DECISION_REFUSED, view.approval, uow.now, stage=stage.name,
                                role=role, actor=actor, decision=decision.value,
                                round=view.approval.round, code=exc.code.code,
                                reason=str(exc), key_fingerprint=signed.key_fingerprint
                                if signed else None))

    def _decidable_stage(self, view: ApprovalView, role: str) -> ApprovalStage:
        if view.approval.status is not ApprovalStatus.PENDING:
            raise GovernanceError(f"approval {view.approval_id} is {view.approval.status.value}; "
                                  "only pending requests take decisions", code=NOT_OPEN)
        stage = view.active_stage
        if stage is None:
            raise GovernanceError(f"approval {view.approval_id} has no active stage",
                                  code=NOT_OPEN)
        if stage.approver_role != role:
            raise GovernanceError(
                f"the active stage '{stage.name}' of {view.approval_id} is decided by role "
                f"'{stage.approver_role}', not '{role}'", code=DECISION_REFUSED,
                details={"stage": stage.name, "role": stage.approver_role})
        return stage

    def _eligibility(self, view: ApprovalView, stage: ApprovalStage, actor: str,
                     decision: Decision) -> str | None:
        """``None`` when ``actor`` votes as a listed approver, the delegator when as a delegate."""
        if actor == view.approval.requested_by and decision is Decision.APPROVE:
            raise GovernanceError(f"{actor} requested {view.approval_id} and cannot approve it",
                                  code=DECISION_REFUSED, details={"actor": actor})
        if any(d.actor == actor for d in view.round_decisions(stage)):
            raise GovernanceError(f"{actor} already decided stage '{stage.name}' in this round",
                                  code=DECISION_REFUSED, details={"actor": actor})
        delegations = view.round_delegations(stage)
        if any(d.from_actor == actor for d in delegations):
            raise GovernanceError(f"{actor} delegated their vote on stage '{stage.name}'",
                                  code=DECISION_REFUSED, details={"actor": actor})
        if actor in view.approvers(stage):
            return None
        held = [d for d in delegations if d.to_actor == actor]
        if held:
            delegator = held[0].from_actor
            if any(d.actor == delegator for d in view.round_decisions(stage)):
                raise GovernanceError(f"{delegator} already voted on stage '{stage.name}'",
                                      code=DECISION_REFUSED, details={"actor": actor})
            return delegator
        raise GovernanceError(
            f"{actor} is not an approver of role '{stage.approver_role}' for stage "
            f"'{stage.name}' (approvers: {', '.join(view.approvers(stage))})",
            code=DECISION_REFUSED, details={"actor": actor, "stage": stage.name})

    def _complete(self, uow: UnitOfWork, view: ApprovalView, stage: ApprovalStage,
                  status: StageStatus) -> None:
        a = view.approval
        uow.update("approval_stages", {"stage_id": stage.stage_id},
                   {"status": status.value, "completed_at": uow.now},
                   expect={"status": StageStatus.ACTIVE.value})
        uow.add(self._event(emit.STAGE_COMPLETED, a, uow.now, stage=stage.name,
                            status=status.value, round=a.round))
        following = [s for s in view.stages if s.ordinal > stage.ordinal]
        if status is StageStatus.APPROVED and following:
            nxt = following[0]
            due = to_iso(from_iso(uow.now) + timedelta(seconds=nxt.sla_seconds))
            uow.update("approval_stages", {"stage_id": nxt.stage_id},
                       {"status": StageStatus.ACTIVE.value, "activated_at": uow.now,
                        "due_at": due, "escalated_at": None, "completed_at": None},
                       expect={"status": StageStatus.WAITING.value})
            return
        final = ApprovalStatus.APPROVED if status is StageStatus.APPROVED \
            else ApprovalStatus.REJECTED
        uow.update("approvals", {"approval_id": a.approval_id}, {"status": final.value},
                   expect={"status": ApprovalStatus.PENDING.value, "round": a.round})
        uow.add(self._event(emit.APPROVED if final is ApprovalStatus.APPROVED else emit.REJECTED,
                            a, uow.now, round=a.round, stage=stage.name))

    def _settle(self, approval_id: str) -> None:
        """Complete an active stage whose quorum was reached by votes that raced each other
        (each saw the other missing); the stage's compare-and-set makes this happen once."""
        for _ in range(8):
            view = self.get(approval_id)
            stage = view.active_stage
            if (view.approval.status is not ApprovalStatus.PENDING or stage is None
                    or view.approvals_count(stage) < stage.quorum):
                return
            try:
                with self.recorder.unit(GLOBAL_SCOPE) as uow:
                    _guard_open(uow, view.approval)
                    self._complete(uow, view, stage, StageStatus.APPROVED)
            except StaleStateError:
                continue

    # -- delegate / reset --------------------------------------------------------------------------
    def delegate(self, approval_id: str, *, from_actor: str, to_actor: str, role: str,
                 reason: str | None = None) -> ApprovalView:
        with operator_action(self.recorder, action=OperatorAction.APPROVAL_DELEGATE,
                             actor=from_actor, subject=approval_id,
                             inputs={"approval_id": approval_id, "role": role,
                                     "to_actor": to_actor}) as act:
            return self._delegate(act, approval_id, from_actor=from_actor, to_actor=to_actor,
                                  role=role, reason=reason)

    def _delegate(self, act: OperatorActionScope, approval_id: str, *, from_actor: str,
                  to_actor: str, role: str, reason: str | None) -> ApprovalView:
        view = self.get(approval_id)
        a = view.approval
        act.inputs.update(subject_hash=a.subject_hash, round=a.round)
        if a.status is not ApprovalStatus.PENDING:
            raise GovernanceError(f"approval {approval_id} is {a.status.value}; only pending "
                                  "requests take delegations", code=NOT_OPEN)
        stage = next((s for s in view.stages if s.approver_role == role
                      and s.status in (StageStatus.ACTIVE, StageStatus.WAITING)), None)
        problem = _delegation_problem(view, stage, from_actor, to_actor, role)
        if problem or stage is None:
            raise GovernanceError(problem or f"no unfinished stage of role '{role}'",
                                  code=DELEGATION_REFUSED,
                                  details={"from_actor": from_actor, "to_actor": to_actor})
        with self.recorder.unit(GLOBAL_SCOPE) as uow:
            _guard_open(uow, a)
            uow.guard("approval_stages", {"stage_id": stage.stage_id}, {"status": stage.status})
            uow.add(ApprovalDelegation(
                delegation_id=new_id("dlg_"), approval_id=a.approval_id, stage_id=stage.stage_id,
                round=a.round, from_actor=from_actor, to_actor=to_actor, role=role,
                reason=reason, created_at=uow.now))
            act.record_in(uow)
            uow.add(self._event(emit.DELEGATED, a, uow.now, stage=stage.name, role=role,
                                from_actor=from_actor, to_actor=to_actor, reason=reason,
                                round=a.round))
        return self.get(approval_id)

    def reset(self, approval_id: str, *, actor: str, reason: str) -> ApprovalView:
        """Start a new round: every stage waits again and the first is active; earlier
        decisions and delegations stay in the trail under their round."""
        with operator_action(self.recorder, action=OperatorAction.APPROVAL_RESET, actor=actor,
                             subject=approval_id, inputs={"approval_id": approval_id}) as act:
            return self._reset(act, approval_id, actor=actor, reason=reason)

    def _reset(self, act: OperatorActionScope, approval_id: str, *, actor: str,
               reason: str) -> ApprovalView:
        view = self.get(approval_id)
        a = view.approval
        act.inputs.update(subject_hash=a.subject_hash, round=a.round,
                          previous_status=a.status.value)
        if a.status not in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED,
                            ApprovalStatus.REJECTED):
            raise GovernanceError(f"approval {approval_id} is {a.status.value} and cannot be "
                                  "reset", code=NOT_OPEN)
        everyone = {n for s in view.stages for n in view.approvers(s)} | {a.requested_by}
        if actor not in everyone:
            raise GovernanceError(f"{actor} is neither the requester nor an approver of "
                                  f"{approval_id}", code=DECISION_REFUSED,
                                  details={"actor": actor})
        with self.recorder.unit(GLOBAL_SCOPE) as uow:
            moment = from_iso(uow.now)
            uow.update("approvals", {"approval_id": a.approval_id},
                       {"status": ApprovalStatus.PENDING.value, "round": a.round + 1},
                       expect={"status": a.status.value, "round": a.round})
            for s in view.stages:
                first = s.ordinal == view.stages[0].ordinal
                uow.update("approval_stages", {"stage_id": s.stage_id}, {
                    "status": (StageStatus.ACTIVE if first else StageStatus.WAITING).value,
                    "activated_at": uow.now if first else None,
                    "due_at": to_iso(moment + timedelta(seconds=s.sla_seconds)) if first
                    else None, "escalated_at": None, "completed_at": None})
            act.record_in(uow)
            uow.add(self._event(emit.RESET, a, uow.now, actor=actor, reason=reason,
                                previous_status=a.status.value, round=a.round + 1))
        return self.get(approval_id)

    # -- tokens and time ---------------------------------------------------------------------------
    def consume(self, token: str, *, tenant_id: str, subject_hash: str, actor: str,
                consumed_for: str | None = None) -> Approval:
        return redemption.consume(self.recorder, token, tenant_id=tenant_id,
                                  subject_hash=subject_hash, actor=actor,
                                  consumed_for=consumed_for)

    def expire_due(self) -> list[Approval]:
        return redemption.expire_due(self.recorder)

    def escalate_overdue(self) -> list[sla.Escalation]:
        return sla.escalate_overdue(self.recorder)

    def _event(self, event_type: str, a: Approval, now: str, **payload: Any) -> Any:
        return emit.event(event_type, {"approval_id": a.approval_id, "tenant_id": a.tenant_id,
                                       "subject_hash": a.subject_hash, **payload},
                          now=now, tenant_id=a.tenant_id)


def _guard_open(uow: UnitOfWork, a: Approval) -> None:
    uow.guard("approvals", {"approval_id": a.approval_id},
              {"status": ApprovalStatus.PENDING.value, "round": a.round})


def _delegation_problem(view: ApprovalView, stage: ApprovalStage | None, from_actor: str,
                        to_actor: str, role: str) -> str | None:
    if stage is None:
        return f"no unfinished stage of role '{role}' in {view.approval_id}"
    approvers = view.approvers(stage)
    delegations = view.round_delegations(stage)
    if from_actor not in approvers:
        return f"{from_actor} is not an approver of stage '{stage.name}'"
    if to_actor == from_actor:
        return "an actor cannot delegate to themselves"
    if to_actor == view.approval.requested_by:
        return f"{to_actor} requested {view.approval_id} and cannot hold a vote on it"
    if to_actor in approvers:
        return f"{to_actor} already holds a vote on stage '{stage.name}'"
    if any(d.from_actor == from_actor or d.to_actor == to_actor for d in delegations):
        return f"a delegation from {from_actor} or to {to_actor} exists in this round"
    if any(d.actor == from_actor for d in view.round_decisions(stage)):
        return f"{from_actor} already voted on stage '{stage.name}'"
    return None

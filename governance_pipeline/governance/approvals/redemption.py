"""Redeeming a token: single-use consumption, refusals that are recorded, and expiry.

Consumption is a compare-and-set on the request (``status = approved AND consumed_at IS NULL``)
in the same transaction as the ``ir.approval_consumed`` event and a re-check that every stage of
the current round is still approved. Of any number of processes presenting the same token at
once, exactly one commits; the others find the row changed, and are refused as
``already_consumed`` with an ``ir.approval_invalid`` event of their own.
"""

from __future__ import annotations

from governance_pipeline.contracts.clock import from_iso
from governance_pipeline.contracts.enums import ApprovalStatus, StageStatus
from governance_pipeline.contracts.errors import StaleStateError
from governance_pipeline.contracts.records import Approval
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import GLOBAL_SCOPE

from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)
from governance_pipeline.governance.approvals import emit, tokens
from governance_pipeline.governance.approvals.codes import InvalidReason, TokenRefused
from governance_pipeline.governance.approvals.views import (
    due_for_expiry,
    find_by_token_hash,
    load_view,
)

_MAX_ATTEMPTS = 8


def _refusal(approval: Approval | None, tenant_id: str, subject_hash: str,
             now: str) -> InvalidReason | None:
    if approval is None:
        return InvalidReason.TOKEN_NOT_FOUND
    if approval.tenant_id != tenant_id:
        return InvalidReason.TENANT_MISMATCH
    if approval.subject_hash != subject_hash:
        return InvalidReason.IR_HASH_MISMATCH
    if approval.status is ApprovalStatus.CONSUMED:
        return InvalidReason.ALREADY_CONSUMED
    if approval.status is ApprovalStatus.EXPIRED or (
            approval.token_expires_at is not None and approval.token_expires_at <= now):
        return InvalidReason.EXPIRED
    if approval.status is ApprovalStatus.REJECTED:
        return InvalidReason.REJECTED
    if approval.status is ApprovalStatus.PENDING:
        return InvalidReason.NOT_APPROVED
    return None


def _lookup(recorder: Recorder, token: str) -> Approval | None:
    if not tokens.looks_like_token(token):
        return None
    found = find_by_token_hash(recorder.landscape, tokens.hash_token(token))
    if found is None or found.token_hash is None or not tokens.token_matches(token,
                                                                              found.token_hash):
        return None
    return found


def consume(recorder: Recorder, token: str, *, tenant_id: str, subject_hash: str, actor: str,
            consumed_for: str | None = None) -> Approval:
    """Consume ``token`` for ``tenant_id`` and ``subject_hash``; raises ``TokenRefused`` (exit 4)
    after recording why. The operator log names the approval and subject, never the token."""
    with operator_action(recorder, action=OperatorAction.TOKEN_CONSUME, actor=actor,
                         inputs={"tenant_id": tenant_id, "subject_hash": subject_hash,
                                 "consumed_for": consumed_for}) as act:
        return _consume(act, recorder, token, tenant_id=tenant_id, subject_hash=subject_hash,
                        actor=actor, consumed_for=consumed_for)


def _consume(act: OperatorActionScope, recorder: Recorder, token: str, *, tenant_id: str,
             subject_hash: str, actor: str, consumed_for: str | None) -> Approval:
    for _ in range(_MAX_ATTEMPTS):
        approval = _lookup(recorder, token)
        now = recorder.now()
        reason = _refusal(approval, tenant_id, subject_hash, now)
        if approval is not None:
            act.subject = approval.approval_id
            act.inputs["approval_id"] = approval.approval_id
        if reason is not None:
            _refuse(recorder, approval, reason, tenant_id=tenant_id, subject_hash=subject_hash,
                    actor=actor, act=act)
        assert approval is not None
        stages = load_view(recorder.landscape, approval.approval_id).stages
        try:
            with recorder.unit(GLOBAL_SCOPE) as uow:
                for stage in stages:
                    uow.guard("approval_stages", {"stage_id": stage.stage_id},
                              {"status": StageStatus.APPROVED.value})
                uow.update("approvals", {"approval_id": approval.approval_id},
                           {"status": ApprovalStatus.CONSUMED.value, "consumed_at": uow.now,
                            "consumed_by": actor, "consumed_for": consumed_for},
                           expect={"status": ApprovalStatus.APPROVED.value,
                                   "consumed_at": None, "round": approval.round})
                act.record_in(uow)
                waited = (from_iso(uow.now) - from_iso(approval.created_at)).total_seconds()
                uow.add(emit.event(emit.CONSUMED, {
                    "approval_id": approval.approval_id, "tenant_id": tenant_id,
                    "ir_hash": subject_hash, "subject_type": approval.subject_type,
                    "consumed_by": actor, "consumed_at": uow.now, "consumed_for": consumed_for,
                    "time_to_consume_seconds": int(waited), "was_expired": False,
                }, now=uow.now, tenant_id=tenant_id))
        except StaleStateError:
            continue  # another process changed the request first: judge it again as it is now
        return load_view(recorder.landscape, approval.approval_id).approval
    raise StaleStateError(f"the approval of this token kept changing during {_MAX_ATTEMPTS} "
                          "attempts to consume it")


def _refuse(recorder: Recorder, approval: Approval | None, reason: InvalidReason, *,
            tenant_id: str, subject_hash: str, actor: str, act: OperatorActionScope) -> None:
    """Record the refused attempt (and, for a token that has just run out, its expiry), with
    its operator-log entry, then raise."""
    approval_id = approval.approval_id if approval else None
    refused = TokenRefused(reason, _MESSAGES[reason].format(id=approval_id or "-"),
                           approval_id=approval_id)
    try:
        with recorder.unit(GLOBAL_SCOPE) as uow:
            if (reason is InvalidReason.EXPIRED and approval is not None
                    and approval.status is not ApprovalStatus.EXPIRED):
                _expire(uow, approval)
            act.refusal_in(uow, refused)
            uow.add(emit.event(emit.INVALID, {
                "tenant_id": tenant_id, "ir_hash": subject_hash, "reason": reason.value,
                "attempted_by": actor, "attempted_at": uow.now, "approval_id": approval_id,
            }, now=uow.now, tenant_id=tenant_id))
    except StaleStateError:
        # The request was expired (or consumed) by someone else meanwhile: record the refusal
        # on its own; the reason stands either way.
        with recorder.unit(GLOBAL_SCOPE) as uow:
            act.refusal_in(uow, refused)
            uow.add(emit.event(emit.INVALID, {
                "tenant_id": tenant_id, "ir_hash": subject_hash, "reason": reason.value,
                "attempted_by": actor, "attempted_at": uow.now, "approval_id": approval_id,
            }, now=uow.now, tenant_id=tenant_id))
    raise refused


_MESSAGES: dict[InvalidReason, str] = {
    InvalidReason.TOKEN_NOT_FOUND: "no approval holds this token",
    InvalidReason.TENANT_MISMATCH: "approval {id} was requested for another tenant",
    InvalidReason.IR_HASH_MISMATCH: "approval {id} was requested for another subject (its "
                                    "IR hash or export subject differs)",
    InvalidReason.ALREADY_CONSUMED: "approval {id} has already been used",
    InvalidReason.EXPIRED: "approval {id} has expired",
    InvalidReason.NOT_APPROVED: "approval {id} has not passed every stage of its ladder yet",
    InvalidReason.REJECTED: "approval {id} was rejected",
}


def _expire(uow: UnitOfWork, approval: Approval) -> None:
    uow.update("approvals", {"approval_id": approval.approval_id},
               {"status": ApprovalStatus.EXPIRED.value},
               expect={"status": approval.status.value, "consumed_at": None})
    ttl = None
    if approval.token_expires_at is not None:
        ttl = int((from_iso(approval.token_expires_at)
                   - from_iso(approval.created_at)).total_seconds())
    uow.add(emit.event(emit.EXPIRED, {
        "approval_id": approval.approval_id, "tenant_id": approval.tenant_id,
        "ir_hash": approval.subject_hash, "expired_at": approval.token_expires_at,
        "created_at": approval.created_at, "ttl_seconds": ttl, "was_consumed": False,
        "previous_status": approval.status.value, "recorded_at": uow.now,
    }, now=uow.now, tenant_id=approval.tenant_id))


def expire_due(recorder: Recorder) -> list[Approval]:
    """Mark every open request whose token has run out expired (once, whoever else tries)."""
    expired = []
    for approval in due_for_expiry(recorder.landscape, recorder.now()):
        try:
            with recorder.unit(GLOBAL_SCOPE) as uow:
                _expire(uow, approval)
        except StaleStateError:
            continue
        expired.append(load_view(recorder.landscape, approval.approval_id).approval)
    return expired

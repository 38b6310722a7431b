"""Whether a decision carries the signature its ladder asks for (docs/approvals.md#signed-decisions).

Under ``signatures: required`` every decision must be signed; a signature, whatever the mode,
must be by a key the stored ladder lists for the actor (in the stage, or anywhere in the ladder
for a delegate), over a statement naming exactly this approval, round, stage, decision, subject
and actor. Each failure raises ``GovernanceError`` with its GP-SIGN code.
"""

from __future__ import annotations

from governance_pipeline.contracts.enums import Decision
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.records import ApprovalStage

from governance_pipeline.governance.approvals.codes import (
    SIGNATURE_INVALID,
    SIGNATURE_REPLAYED,
    SIGNING_KEY_NOT_LISTED,
    UNSIGNED_DECISION,
)
from governance_pipeline.governance.approvals.decision_keys import (
    SignedDecision,
    decision_statement,
    ladder_keys,
    mismatched_fields,
)
from governance_pipeline.governance.approvals.views import ApprovalView


def signature_mode(view: ApprovalView) -> str:
    """``required`` or ``unsigned``; a request stored before signed ladders existed is unsigned."""
    return str(view.ladder.get("signatures") or "unsigned")


def expected_statement(view: ApprovalView, stage: ApprovalStage, *, actor: str, role: str,
                       decision: Decision, signed_at: str) -> dict[str, object]:
    a = view.approval
    return decision_statement(approval_id=a.approval_id, round=a.round, stage=stage.name,
                              decision=Decision(decision).value, subject_hash=a.subject_hash,
                              actor=actor, role=role, signed_at=signed_at)


def check_signature(view: ApprovalView, stage: ApprovalStage, *, actor: str, role: str,
                    decision: Decision, delegated: bool, signed: SignedDecision | None) -> None:
    details = {"approval_id": view.approval_id, "stage": stage.name, "actor": actor}
    if signed is None:
        if signature_mode(view) == "required":
            raise GovernanceError(
                f"ladder '{view.ladder.get('name')}' of {view.approval_id} requires signed "
                f"decisions; {actor}'s decision on stage '{stage.name}' is unsigned",
                code=UNSIGNED_DECISION, details=details)
        return
    expected = expected_statement(view, stage, actor=actor, role=role, decision=decision,
                                  signed_at=str(signed.statement.get("signed_at")))
    wrong = mismatched_fields(signed.statement, expected)
    if wrong:
        raise GovernanceError(
            f"the signed statement does not match this decision ({', '.join(wrong)} differ): "
            f"it was made for another approval, round, stage or decision",
            code=SIGNATURE_REPLAYED, details={**details, "fields": wrong})
    keys = ladder_keys(view.ladder, actor, None if delegated else stage.name)
    key = keys.get(signed.key_fingerprint)
    if key is None:
        raise GovernanceError(
            f"key {signed.key_fingerprint} is not listed for {actor} in stage '{stage.name}' "
            f"(listed: {', '.join(sorted(keys)) or 'none'})", code=SIGNING_KEY_NOT_LISTED,
            details={**details, "key_fingerprint": signed.key_fingerprint})
    if not signed.verifies_with(key):
        raise GovernanceError(f"the signature of {actor}'s decision does not verify with key "
                              f"{signed.key_fingerprint}", code=SIGNATURE_INVALID,
                              details={**details, "key_fingerprint": signed.key_fingerprint})

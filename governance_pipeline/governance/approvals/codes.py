"""Error codes of approvals, the run gate and the export guard, and why a token was refused."""

from __future__ import annotations

from enum import StrEnum

from governance_pipeline.contracts.errors import BlockedError, ErrorCode, ExitCode, register

_REQUEST = "governance-pipeline approvals request"

APPROVAL_REQUIRED = register(
    "GP-APPROVAL-001", "Approval required: this pipeline's risk tier needs an approved ladder",
    f"Run `{_REQUEST} PIPELINE.yaml`, have each stage approve it (`approvals decide`), then "
    "run again with --approval-token TOKEN (the token printed by the request).",
    ExitCode.BLOCKED)
TOKEN_NOT_FOUND = register(
    "GP-APPROVAL-002", "Approval token not recognised",
    f"Use the token printed by `{_REQUEST}` exactly as shown (it starts with gpa_); tokens are "
    "shown once and cannot be recovered: request a new approval if it is lost.",
    ExitCode.BLOCKED)
TENANT_MISMATCH = register(
    "GP-APPROVAL-003", "Approval token belongs to another tenant",
    f"A token is valid only for the tenant it was requested for: run `{_REQUEST}` for this "
    "tenant.", ExitCode.BLOCKED)
SUBJECT_MISMATCH = register(
    "GP-APPROVAL-004", "Approval token was issued for another pipeline IR or export",
    f"The pipeline (or export subject) changed since the approval was requested, or the token "
    f"is for another one: run `{_REQUEST}` for the current version and have it approved.",
    ExitCode.BLOCKED)
ALREADY_CONSUMED = register(
    "GP-APPROVAL-005", "Approval token already used",
    f"Tokens are single-use: run `{_REQUEST}` again for another run or export.",
    ExitCode.BLOCKED)
TOKEN_EXPIRED = register(
    "GP-APPROVAL-006", "Approval token expired",
    f"Run `{_REQUEST}` again (optionally with a longer --ttl) and have it approved before it "
    "expires.", ExitCode.BLOCKED)
NOT_APPROVED = register(
    "GP-APPROVAL-007", "Approval ladder not complete yet",
    "`governance-pipeline approvals show APPROVAL_ID` names the active stage and its approvers; "
    "they approve with `approvals decide APPROVAL_ID approve --role ROLE`.",
    ExitCode.BLOCKED)
REJECTED = register(
    "GP-APPROVAL-008", "Approval request was rejected",
    "Read the rejection reason with `governance-pipeline approvals show APPROVAL_ID`; fix the "
    "cause, then `approvals reset APPROVAL_ID --reason ...` or request a new approval.",
    ExitCode.BLOCKED)
DECISION_REFUSED = register(
    "GP-APPROVAL-010", "This actor may not take this decision",
    "Only an approver listed for the active stage's role (or their delegate) may decide, and "
    "never on their own request: `approvals show APPROVAL_ID` lists the approvers; set --actor "
    "(or GOVERNANCE_ACTOR) and --role accordingly.",
    ExitCode.INVALID_INPUT)
NOT_OPEN = register(
    "GP-APPROVAL-011", "Approval request is not open for this action",
    "Decisions and delegations apply to pending requests only; a consumed or expired request "
    "cannot be reset: request a new approval.", ExitCode.INVALID_INPUT)
APPROVAL_NOT_FOUND = register(
    "GP-APPROVAL-012", "Approval request not found",
    "Check the id; `governance-pipeline approvals list` lists the requests.",
    ExitCode.INVALID_INPUT)
DELEGATION_REFUSED = register(
    "GP-APPROVAL-013", "Delegation not allowed",
    "Only a listed approver of an unfinished stage may delegate their vote, once per round, to "
    "someone who is neither the requester nor already an approver or delegate of that stage.",
    ExitCode.INVALID_INPUT)
EXPORT_APPROVAL_REQUIRED = register(
    "GP-APPROVAL-020", "Export gated: an approved export ladder is required",
    f"Run `{_REQUEST} --export KIND --subject SUBJECT --tenant TENANT`, have each stage approve "
    "it, then repeat the export with --approval-token TOKEN.",
    ExitCode.BLOCKED)

# Signed decisions (docs/approvals.md#signed-decisions). Each refusal is recorded as an
# ``approval.decision_refused`` event; the request itself is left as it was.
UNSIGNED_DECISION = register(
    "GP-SIGN-001", "This ladder requires signed decisions and the decision is unsigned",
    "Sign it with your private key: `approvals decide APPROVAL_ID approve --role ROLE --key "
    "~/.ssh/id_ed25519` (the key whose public half the ladder lists for you).",
    ExitCode.INVALID_INPUT)
SIGNING_KEY_NOT_LISTED = register(
    "GP-SIGN-002", "The decision is signed by a key the ladder does not list for this approver",
    "Sign with the key the ladder file lists for you in this stage (`approvals show "
    "APPROVAL_ID --json` shows the stored ladder; `ssh-keygen -lf KEY.pub` prints a key's "
    "fingerprint); a new key must be added to the ladder file and the approval requested again.",
    ExitCode.INVALID_INPUT)
SIGNATURE_REPLAYED = register(
    "GP-SIGN-003", "The signed statement is for another approval, round, stage or decision",
    "A signature is valid only for the approval, round, stage, decision, subject and actor it "
    "names: sign this decision afresh (`approvals decide ... --key FILE`) instead of reusing "
    "an earlier one.", ExitCode.INVALID_INPUT)
SIGNATURE_INVALID = register(
    "GP-SIGN-004", "The decision's signature does not verify",
    "The statement was changed after signing or the signature is corrupt: sign the decision "
    "again with `approvals decide ... --key FILE`.", ExitCode.INVALID_INPUT)


class InvalidReason(StrEnum):
    """Why a token could not be consumed (payload ``reason`` of ``ir.approval_invalid``)."""

    TOKEN_NOT_FOUND = "token_not_found"
    TENANT_MISMATCH = "tenant_mismatch"
    IR_HASH_MISMATCH = "ir_hash_mismatch"
    ALREADY_CONSUMED = "already_consumed"
    EXPIRED = "expired"
    NOT_APPROVED = "not_approved"
    REJECTED = "rejected"

    @property
    def code(self) -> ErrorCode:
        return _REASON_CODES[self]


_REASON_CODES: dict[InvalidReason, ErrorCode] = {
    InvalidReason.TOKEN_NOT_FOUND: TOKEN_NOT_FOUND,
    InvalidReason.TENANT_MISMATCH: TENANT_MISMATCH,
    InvalidReason.IR_HASH_MISMATCH: SUBJECT_MISMATCH,
    InvalidReason.ALREADY_CONSUMED: ALREADY_CONSUMED,
    InvalidReason.EXPIRED: TOKEN_EXPIRED,
    InvalidReason.NOT_APPROVED: NOT_APPROVED,
    InvalidReason.REJECTED: REJECTED,
}


class TokenRefused(BlockedError):
    """A token could not be consumed (exit 4); ``reason`` says why, ``approval_id`` if known."""

    def __init__(self, reason: InvalidReason, message: str, *,
                 approval_id: str | None = None) -> None:
        super().__init__(message, code=reason.code,
                         details={"reason": reason.value, "approval_id": approval_id})
        self.reason = reason
        self.approval_id = approval_id

"""Frozen audit records of governance: policy decisions, inflection points, incidents,
approvals and exports (``records`` re-exports them with the token-model records)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    Decision,
    ExportKind,
    ExportStatus,
    IncidentSeverity,
    IncidentStatus,
    PolicyMode,
    RuleResult,
    Severity,
    StageStatus,
)
from governance_pipeline.contracts.record_base import AuditRecord, _require

@dataclass(frozen=True, slots=True)
class PolicyDecision(AuditRecord):
    """One rule evaluated on one token at one node, under the run's policy snapshot."""

    TABLE: ClassVar[str] = "policy_decisions"
    decision_id: str
    run_id: str
    token_id: str
    node_id: str
    step_index: int
    state_id: str | None
    snapshot_id: str
    snapshot_hash: str
    policy_id: str
    rule_id: str
    rule_kind: str
    severity: Severity
    mode: PolicyMode
    result: RuleResult
    would_block: bool
    detail_json: str | None
    created_at: str

    def __post_init__(self) -> None:
        _require(self.mode.evaluates, "PolicyDecision", "an 'off' policy records no decisions")
        _require(not self.would_block or self.result is RuleResult.FAIL, "PolicyDecision",
                 "would_block without a failed rule")
        _require(self.result is RuleResult.PASS or self.detail_json is not None, "PolicyDecision",
                 "a failed rule must say why (detail_json)")

    @property
    def blocks(self) -> bool:
        """Whether this decision stops the run (not merely would)."""
        return self.would_block and self.mode.stops


@dataclass(frozen=True, slots=True)
class InflectionPoint(AuditRecord):
    """Where an enforced policy stopped a run: the first violating token, node and rule."""

    TABLE: ClassVar[str] = "inflection_points"
    inflection_id: str
    run_id: str
    token_id: str
    row_index: int
    node_id: str
    step_index: int
    decision_id: str
    snapshot_id: str
    policy_id: str
    rule_id: str
    reason: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class Incident(AuditRecord):
    TABLE: ClassVar[str] = "incidents"
    incident_id: str
    run_id: str
    severity: IncidentSeverity
    status: IncidentStatus
    summary: str
    policy_snapshot_id: str | None
    policy_id: str | None
    rule_id: str | None
    token_id: str | None
    node_id: str | None
    step_index: int | None
    reason: str | None
    context_json: str | None
    detected_at: str
    inflection_id: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None

    def __post_init__(self) -> None:
        _require((self.status is IncidentStatus.RESOLVED) == (self.resolved_at is not None),
                 "Incident", "resolved_at must be set exactly when the incident is resolved")


@dataclass(frozen=True, slots=True)
class Approval(AuditRecord):
    """A request for approval of one subject (a pipeline's IR, an export), bound to its tenant."""

    TABLE: ClassVar[str] = "approvals"
    approval_id: str
    tenant_id: str
    subject_type: str
    subject_hash: str
    subject_ref: str
    requested_by: str
    status: ApprovalStatus
    ladder_json: str
    reason: str | None
    round: int
    token_hash: str | None
    token_expires_at: str | None
    consumed_at: str | None
    consumed_by: str | None
    consumed_for: str | None
    created_at: str

    def __post_init__(self) -> None:
        _require((self.status is ApprovalStatus.CONSUMED) == (self.consumed_at is not None),
                 "Approval", "consumed_at must be set exactly when the approval is consumed")
        _require(self.consumed_at is None or self.consumed_by is not None, "Approval",
                 "a consumed approval names who consumed it")
        _require(self.round >= 0, "Approval", "round must not be negative")


@dataclass(frozen=True, slots=True)
class ApprovalStage(AuditRecord):
    TABLE: ClassVar[str] = "approval_stages"
    stage_id: str
    approval_id: str
    ordinal: int
    name: str
    approver_role: str
    quorum: int
    sla_seconds: int
    status: StageStatus
    activated_at: str | None
    due_at: str | None
    escalated_at: str | None
    completed_at: str | None

    def __post_init__(self) -> None:
        _require(self.quorum >= 1 and self.sla_seconds > 0, "ApprovalStage",
                 "quorum must be at least 1 and the SLA positive")


@dataclass(frozen=True, slots=True)
class ApprovalDecisionRecord(AuditRecord):
    TABLE: ClassVar[str] = "approval_decisions"
    decision_id: str
    approval_id: str
    stage_id: str
    round: int
    actor: str
    role: str
    decision: Decision
    reason: str | None
    delegated_from: str | None
    decided_at: str


@dataclass(frozen=True, slots=True)
class ApprovalSignature(AuditRecord):
    """The signed statement behind one decision (docs/approvals.md#signed-decisions)."""

    TABLE: ClassVar[str] = "approval_signatures"
    decision_id: str
    approval_id: str
    statement_json: str  # RFC 8785 canonical JSON: exactly the signed bytes
    signature: str       # base64 Ed25519 signature over statement_json
    key_fingerprint: str  # OpenSSH SHA256 fingerprint of the approver's key
    signed_at: str


@dataclass(frozen=True, slots=True)
class ApprovalDelegation(AuditRecord):
    TABLE: ClassVar[str] = "approval_delegations"
    delegation_id: str
    approval_id: str
    stage_id: str
    round: int
    from_actor: str
    to_actor: str
    role: str
    reason: str | None
    created_at: str

    def __post_init__(self) -> None:
        _require(self.from_actor != self.to_actor, "ApprovalDelegation",
                 "an actor cannot delegate to themselves")


@dataclass(frozen=True, slots=True)
class ExportRecord(AuditRecord):
    """One attempt to write an export bundle, whether written or blocked by its guard."""

    TABLE: ClassVar[str] = "exports"
    export_id: str
    tenant_id: str
    kind: ExportKind
    subject: str
    subject_hash: str
    surface: str
    status: ExportStatus
    approval_id: str | None
    bundle_digest: str | None
    path: str | None
    requested_by: str
    reason: str | None
    created_at: str

    def __post_init__(self) -> None:
        written = self.status is ExportStatus.WRITTEN
        _require(not written or (self.bundle_digest is not None and self.path is not None),
                 "ExportRecord", "a written export has a bundle digest and a path")
        _require(written or self.reason is not None, "ExportRecord",
                 "a blocked export says why")

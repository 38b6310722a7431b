"""Landscape tables of governance: policy decisions, inflection points, incidents, approvals,
exports and the event outbox (see ``schema.py`` for the token model and the ledger).

Importing this module registers the tables on the shared ``metadata``; ``schema`` re-exports
them, so code imports every table from ``governance_pipeline.landscape.schema``.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    Decision,
    DeliveryStatus,
    ExportKind,
    ExportStatus,
    IncidentSeverity,
    IncidentStatus,
    RuleResult,
    Severity,
    StageStatus,
)
from governance_pipeline.landscape.schema_base import _flag, _in, _key, _ts, metadata

# --- runtime governance: every rule evaluation, the point a run was stopped, incidents ----------
policy_decisions = Table(
    "policy_decisions", metadata,
    _key("decision_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("step_index", Integer, nullable=False),
    _key("state_id", ForeignKey("node_states.state_id"), nullable=True),
    _key("snapshot_id", ForeignKey("policy_snapshots.snapshot_id"), nullable=False),
    Column("snapshot_hash", String(64), nullable=False),
    Column("policy_id", String(128), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("rule_kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("result", String(8), nullable=False),
    Column("would_block", Integer, nullable=False),
    Column("detail_json", Text, nullable=True),
    _ts("created_at"),
    _in("severity", Severity),
    _in("result", RuleResult),
    _flag("would_block"),
    # An 'off' policy is not evaluated, so no decision ever carries that mode.
    CheckConstraint("mode IN ('advisory', 'enforced')", name="mode_valid"),
    CheckConstraint("would_block = 0 OR result = 'fail'", name="block_needs_failure"),
    CheckConstraint("result = 'pass' OR detail_json IS NOT NULL", name="failure_says_why"),
    CheckConstraint("step_index >= 0", name="step_nonneg"),
)
Index(None, policy_decisions.c.run_id, policy_decisions.c.would_block)
Index(None, policy_decisions.c.token_id)

inflection_points = Table(
    "inflection_points", metadata,
    _key("inflection_id", primary_key=True),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False, unique=True),
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("step_index", Integer, nullable=False),
    _key("decision_id", ForeignKey("policy_decisions.decision_id"), nullable=False),
    _key("snapshot_id", ForeignKey("policy_snapshots.snapshot_id"), nullable=False),
    Column("policy_id", String(128), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    _ts("occurred_at"),
    CheckConstraint("row_index >= 0 AND step_index >= 0", name="counters_nonneg"),
)

incidents = Table(
    "incidents", metadata,
    _key("incident_id", primary_key=True),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    _key("policy_snapshot_id", nullable=True),
    Column("policy_id", String(128), nullable=True),
    Column("rule_id", String(128), nullable=True),
    _key("token_id", nullable=True),
    Column("node_id", String(128), nullable=True),
    Column("step_index", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("context_json", Text, nullable=True),
    _ts("detected_at"),
    _key("inflection_id", nullable=True),
    _ts("resolved_at", nullable=True),
    Column("resolution", Text, nullable=True),
    _in("severity", IncidentSeverity),
    _in("status", IncidentStatus),
)
Index(None, incidents.c.run_id)

# --- approvals: ladders of stages, decisions per round, delegations, single-use tokens ---------
approvals = Table(
    "approvals", metadata,
    _key("approval_id", primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_hash", String(71), nullable=False),
    Column("subject_ref", Text, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ladder_json", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("round", Integer, nullable=False),
    Column("token_hash", String(64), nullable=True, unique=True),
    _ts("token_expires_at", nullable=True),
    _ts("consumed_at", nullable=True),
    Column("consumed_by", String(128), nullable=True),
    Column("consumed_for", String(128), nullable=True),
    _ts("created_at"),
    _in("status", ApprovalStatus),
    CheckConstraint("(status = 'consumed') = (consumed_at IS NOT NULL)", name="consumed"),
    CheckConstraint("consumed_at IS NULL OR consumed_by IS NOT NULL", name="consumer"),
    CheckConstraint("round >= 0", name="round_nonneg"),
)
Index(None, approvals.c.tenant_id, approvals.c.subject_hash)

approval_stages = Table(
    "approval_stages", metadata,
    _key("stage_id", primary_key=True),
    _key("approval_id", ForeignKey("approvals.approval_id"), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("name", String(128), nullable=False),
    Column("approver_role", String(128), nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("sla_seconds", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    _ts("activated_at", nullable=True),
    _ts("due_at", nullable=True),
    _ts("escalated_at", nullable=True),
    _ts("completed_at", nullable=True),
    UniqueConstraint("approval_id", "ordinal"),
    _in("status", StageStatus),
    CheckConstraint("quorum >= 1 AND sla_seconds > 0", name="quorum_sla"),
)

approval_decisions = Table(
    "approval_decisions", metadata,
    _key("decision_id", primary_key=True),
    _key("approval_id", ForeignKey("approvals.approval_id"), nullable=False),
    _key("stage_id", ForeignKey("approval_stages.stage_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(128), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("delegated_from", String(128), nullable=True),
    _ts("decided_at"),
    # One vote per actor per stage per round: a reset starts a new round, old votes stay.
    UniqueConstraint("stage_id", "actor", "round"),
    _in("decision", Decision),
)

# One signed statement per signed decision (migration 0007); unsigned decisions have no row.
approval_signatures = Table(
    "approval_signatures", metadata,
    _key("decision_id", ForeignKey("approval_decisions.decision_id"), primary_key=True),
    _key("approval_id", ForeignKey("approvals.approval_id"), nullable=False),
    Column("statement_json", Text, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("key_fingerprint", String(64), nullable=False),
    _ts("signed_at"),
)
Index(None, approval_signatures.c.approval_id)

approval_delegations = Table(
    "approval_delegations", metadata,
    _key("delegation_id", primary_key=True),
    _key("approval_id", ForeignKey("approvals.approval_id"), nullable=False),
    _key("stage_id", ForeignKey("approval_stages.stage_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("from_actor", String(128), nullable=False),
    Column("to_actor", String(128), nullable=False),
    Column("role", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    _ts("created_at"),
    CheckConstraint("from_actor <> to_actor", name="not_self"),
)
Index(None, approval_delegations.c.approval_id)

# --- exports: every attempt to write a bundle, written or blocked ------------------------------
exports = Table(
    "exports", metadata,
    _key("export_id", primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("subject_hash", String(71), nullable=False),
    Column("surface", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    _key("approval_id", ForeignKey("approvals.approval_id"), nullable=True),
    Column("bundle_digest", String(64), nullable=True),
    Column("path", Text, nullable=True),
    Column("requested_by", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    _ts("created_at"),
    _in("kind", ExportKind),
    _in("status", ExportStatus),
    CheckConstraint("status <> 'written' OR (bundle_digest IS NOT NULL AND path IS NOT NULL)",
                    name="written_has_digest"),
    CheckConstraint("status <> 'blocked' OR reason IS NOT NULL", name="blocked_says_why"),
)
Index(None, exports.c.kind, exports.c.subject)

events = Table(
    "events", metadata,
    _key("event_id", primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("target", String(128), nullable=True),
    Column("tenant_id", String(128), nullable=True),
    Column("correlation_id", String(128), nullable=True),
    Column("payload_json", Text, nullable=False),
    Column("meta_json", Text, nullable=False),
    _ts("timestamp"),
)
Index(None, events.c.type, events.c.event_id)
Index(None, events.c.scope)

# Delivery state of the outbox: operational, not audit facts (retries change it), so not ledgered.
event_deliveries = Table(
    "event_deliveries", metadata,
    Column("subscriber", String(128), nullable=False),
    _key("event_id", ForeignKey("events.event_id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    _ts("next_attempt_at", nullable=True),
    _ts("delivered_at", nullable=True),
    _ts("updated_at"),
    PrimaryKeyConstraint("subscriber", "event_id"),
    _in("status", DeliveryStatus),
    CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    CheckConstraint("(status = 'delivered') = (delivered_at IS NOT NULL)", name="delivered"),
)
Index(None, event_deliveries.c.status, event_deliveries.c.next_attempt_at)

"""The Landscape schema in SQLAlchemy Core: the token model, the ledger, and what the ledger
hashes of every table (``LEDGERED``). The governance tables are in ``schema_governance`` (and
re-exported here), the shared metadata and column helpers in ``schema_base``.

Invariants live here as constraints as well as in code: enum values, 0/1 flags, required
fields per outcome, node-state lifecycle columns, the call-parent XOR, and one terminal outcome
per token (a partial unique index). The schema is created only by Alembic migrations;
``test_migrations.py`` checks the migrated database against this metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)

from governance_pipeline.contracts.enums import (
    BatchStatus,
    CallStatus,
    Determinism,
    NodeStateStatus,
    NodeType,
    OperationStatus,
    OperationType,
    Outcome,
    RoutingMode,
    RunStatus,
    TerminationReason,
    TriggerType,
)

from governance_pipeline.landscape.schema_base import (
    _closed_lifecycle,
    _flag,
    _in,
    _key,
    _ts,
    metadata,
)

# --- content-addressed payloads (self-verifying: the key is the SHA-256 of the data) ------------
payloads = Table(
    "payloads", metadata,
    Column("content_hash", String(64), primary_key=True),
    Column("size_bytes", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    _ts("created_at"),
    # Set when ``data`` is AES-GCM ciphertext under this subject key (schema_data_protection);
    # NULL: stored in clear, as every payload before revision 0006.
    _key("key_id", nullable=True),
    CheckConstraint("size_bytes >= 0", name="size_nonneg"),
)
# Partial: payloads in clear (most, and all without subject_fields) add no index entry.
Index("ix_payloads_key_id", payloads.c.key_id, sqlite_where=payloads.c.key_id.is_not(None),
      postgresql_where=payloads.c.key_id.is_not(None))

policy_snapshots = Table(
    "policy_snapshots", metadata,
    _key("snapshot_id", primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("canonical_version", String(32), nullable=False),
    Column("policies_json", Text, nullable=False),
    Column("policy_count", Integer, nullable=False),
    _ts("created_at"),
    CheckConstraint("policy_count >= 0", name="count_nonneg"),
)

runs = Table(
    "runs", metadata,
    _key("run_id", primary_key=True),
    Column("pipeline_name", String(200), nullable=False),
    Column("tenant_id", String(128), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("canonical_version", String(32), nullable=False),
    _key("policy_snapshot_id", ForeignKey("policy_snapshots.snapshot_id"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("termination_reason", String(32), nullable=True),
    _ts("started_at"),
    _ts("ended_at", nullable=True),
    Column("pipeline_path", Text, nullable=True),
    _ts("heartbeat_at", nullable=True),
    Column("worker", String(200), nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
    Column("resume_count", Integer, nullable=False, server_default="0"),
    _ts("last_resumed_at", nullable=True),
    _in("status", RunStatus),
    _in("termination_reason", TerminationReason, nullable=True),
    CheckConstraint("status = 'running' OR ended_at IS NOT NULL", name="ended"),
    CheckConstraint("status <> 'completed' OR termination_reason IS NOT NULL", name="reason"),
    CheckConstraint("resume_count >= 0", name="resume_count_nonneg"),
)
Index(None, runs.c.pipeline_name, runs.c.started_at)
Index(None, runs.c.status)

nodes = Table(
    "nodes", metadata,
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("node_type", String(16), nullable=False),
    Column("plugin_name", String(128), nullable=False),
    Column("plugin_version", String(32), nullable=False),
    Column("determinism", String(32), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("position", Integer, nullable=False),
    _ts("registered_at"),
    PrimaryKeyConstraint("run_id", "node_id"),
    _in("node_type", NodeType),
    _in("determinism", Determinism),
)

edges = Table(
    "edges", metadata,
    _key("edge_id", primary_key=True),
    _key("run_id", nullable=False),
    Column("from_node_id", String(128), nullable=False),
    Column("to_node_id", String(128), nullable=False),
    Column("label", String(128), nullable=False),
    Column("default_mode", String(8), nullable=False),
    ForeignKeyConstraint(["run_id", "from_node_id"], ["nodes.run_id", "nodes.node_id"]),
    ForeignKeyConstraint(["run_id", "to_node_id"], ["nodes.run_id", "nodes.node_id"]),
    UniqueConstraint("run_id", "from_node_id", "label"),
    _in("default_mode", RoutingMode),
)

rows = Table(
    "rows", metadata,
    _key("row_id", primary_key=True),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("source_node_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("source_data_hash", String(64), ForeignKey("payloads.content_hash"), nullable=False),
    _ts("created_at"),
    UniqueConstraint("run_id", "row_index"),
    CheckConstraint("row_index >= 0", name="row_index_nonneg"),
)

tokens = Table(
    "tokens", metadata,
    _key("token_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("row_id", ForeignKey("rows.row_id"), nullable=False),
    Column("branch_name", String(128), nullable=True),
    _key("fork_group_id", nullable=True),
    _key("join_group_id", nullable=True),
    _key("expand_group_id", nullable=True),
    _ts("created_at"),
)
Index(None, tokens.c.run_id, tokens.c.row_id)

token_parents = Table(
    "token_parents", metadata,
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    _key("parent_token_id", ForeignKey("tokens.token_id"), nullable=False),
    _key("run_id", nullable=False),
    Column("ordinal", Integer, nullable=False),
    PrimaryKeyConstraint("token_id", "parent_token_id"),
    CheckConstraint("token_id <> parent_token_id", name="not_self"),
)
Index(None, token_parents.c.parent_token_id)
Index(None, token_parents.c.run_id)

node_states = Table(
    "node_states", metadata,
    _key("state_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("output_hash", String(64), nullable=True),
    Column("context_before", Text, nullable=True),
    Column("context_after", Text, nullable=True),
    Column("error_json", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
    _key("policy_snapshot_id", nullable=True),
    _ts("started_at"),
    _ts("completed_at", nullable=True),
    ForeignKeyConstraint(["run_id", "node_id"], ["nodes.run_id", "nodes.node_id"]),
    UniqueConstraint("token_id", "node_id", "attempt"),
    _in("status", NodeStateStatus),
    _closed_lifecycle("status", NodeStateStatus.OPEN.value, "output_hash"),
    CheckConstraint("attempt >= 0 AND step_index >= 0", name="counters_nonneg"),
)
Index(None, node_states.c.run_id, node_states.c.status)


def _outcome_requirements() -> CheckConstraint:
    clauses = []
    for outcome in Outcome:
        needs = " AND ".join(f"{f} IS NOT NULL" for f in outcome.required_fields)
        clauses.append(f"(outcome <> '{outcome.value}' OR ({needs}))")
    return CheckConstraint(" AND ".join(clauses), name="required_fields")


token_outcomes = Table(
    "token_outcomes", metadata,
    _key("outcome_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("is_terminal", Integer, nullable=False),
    Column("sink_name", String(128), nullable=True),
    _key("batch_id", nullable=True),
    _key("fork_group_id", nullable=True),
    _key("join_group_id", nullable=True),
    _key("expand_group_id", nullable=True),
    Column("error_hash", String(64), nullable=True),
    Column("context_json", Text, nullable=True),
    _ts("recorded_at"),
    _in("outcome", Outcome),
    _flag("is_terminal"),
    CheckConstraint(
        "(outcome = 'buffered' AND is_terminal = 0) OR (outcome <> 'buffered' AND is_terminal = 1)",
        name="terminal_matches_outcome",
    ),
    _outcome_requirements(),
)
Index("uq_token_terminal_outcome", token_outcomes.c.token_id, unique=True,
      sqlite_where=token_outcomes.c.is_terminal == literal_column("1"),
      postgresql_where=token_outcomes.c.is_terminal == literal_column("1"))
Index(None, token_outcomes.c.run_id, token_outcomes.c.outcome)
# Lookups by token that must not depend on is_terminal (the sweep distrusts the flag), and
# that the partial unique index cannot serve.
Index(None, token_outcomes.c.token_id, token_outcomes.c.outcome)

operations = Table(
    "operations", metadata,
    _key("operation_id", primary_key=True),
    _key("run_id", nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("operation_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_ref", Text, nullable=True),
    Column("output_ref", Text, nullable=True),
    Column("error_json", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
    _ts("started_at"),
    _ts("completed_at", nullable=True),
    ForeignKeyConstraint(["run_id", "node_id"], ["nodes.run_id", "nodes.node_id"]),
    _in("operation_type", OperationType),
    _in("status", OperationStatus),
    _closed_lifecycle("status", OperationStatus.OPEN.value, None),
)
Index(None, operations.c.run_id)

calls = Table(
    "calls", metadata,
    _key("call_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("state_id", ForeignKey("node_states.state_id"), nullable=True),
    _key("operation_id", ForeignKey("operations.operation_id"), nullable=True),
    Column("call_index", Integer, nullable=False),
    Column("call_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response_hash", String(64), nullable=True),
    Column("error_json", Text, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("cost", Float, nullable=True),
    _ts("created_at"),
    UniqueConstraint("state_id", "call_index"),
    UniqueConstraint("operation_id", "call_index"),
    CheckConstraint("(state_id IS NULL) <> (operation_id IS NULL)", name="one_parent"),
    CheckConstraint(
        "(status = 'success' AND response_hash IS NOT NULL) OR (status = 'error' AND error_json IS NOT NULL)",
        name="result",
    ),
    _in("status", CallStatus),
)
Index(None, calls.c.run_id)

routing_events = Table(
    "routing_events", metadata,
    _key("event_id", primary_key=True),
    _key("run_id", nullable=False),
    _key("state_id", ForeignKey("node_states.state_id"), nullable=False),
    _key("edge_id", ForeignKey("edges.edge_id"), nullable=False),
    _key("routing_group_id", nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("mode", String(8), nullable=False),
    Column("reason_hash", String(64), nullable=True),
    Column("reason_json", Text, nullable=True),
    _ts("created_at"),
    UniqueConstraint("routing_group_id", "ordinal"),
    _in("mode", RoutingMode),
)
Index(None, routing_events.c.run_id)
Index(None, routing_events.c.state_id)

batches = Table(
    "batches", metadata,
    _key("batch_id", primary_key=True),
    _key("run_id", nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger_type", String(16), nullable=True),
    Column("trigger_reason", Text, nullable=True),
    _key("state_id", nullable=True),
    _ts("created_at"),
    _ts("completed_at", nullable=True),
    ForeignKeyConstraint(["run_id", "node_id"], ["nodes.run_id", "nodes.node_id"]),
    _in("status", BatchStatus),
    _in("trigger_type", TriggerType, nullable=True),
    CheckConstraint("status = 'draft' OR trigger_type IS NOT NULL", name="triggered"),
    CheckConstraint(
        "(status IN ('completed', 'failed')) = (completed_at IS NOT NULL)", name="completion"),
)
Index(None, batches.c.run_id, batches.c.status)

batch_members = Table(
    "batch_members", metadata,
    _key("batch_id", ForeignKey("batches.batch_id"), nullable=False),
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    _key("run_id", nullable=False),
    Column("ordinal", Integer, nullable=False),
    PrimaryKeyConstraint("batch_id", "token_id"),
    UniqueConstraint("batch_id", "ordinal"),
)
Index(None, batch_members.c.run_id)

artifacts = Table(
    "artifacts", metadata,
    _key("artifact_id", primary_key=True),
    _key("run_id", nullable=False),
    Column("sink_node_id", String(128), nullable=False),
    _key("operation_id", ForeignKey("operations.operation_id"), nullable=True),
    Column("artifact_type", String(32), nullable=False),
    Column("path_or_uri", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    _ts("created_at"),
    ForeignKeyConstraint(["run_id", "sink_node_id"], ["nodes.run_id", "nodes.node_id"]),
    CheckConstraint("size_bytes >= 0 AND row_count >= 0", name="sizes_nonneg"),
)
Index(None, artifacts.c.run_id)

checkpoints = Table(
    "checkpoints", metadata,
    _key("checkpoint_id", primary_key=True),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("sequence_number", Integer, nullable=False),
    Column("chunk_index", Integer, nullable=False),
    Column("format_version", Integer, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("state_json", Text, nullable=False),
    _ts("created_at"),
    UniqueConstraint("run_id", "sequence_number"),
)

validation_errors = Table(
    "validation_errors", metadata,
    _key("error_id", primary_key=True),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=True),
    Column("raw_payload_hash", String(64), ForeignKey("payloads.content_hash"), nullable=False),
    Column("error_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("destination", String(128), nullable=False),
    _ts("created_at"),
)
Index(None, validation_errors.c.run_id)

# The governance tables live in their own module; they join the same metadata here.
from governance_pipeline.landscape.schema_governance import (  # noqa: E402
    approval_decisions,
    approval_delegations,
    approval_signatures,
    approval_stages,
    approvals,
    event_deliveries as event_deliveries,  # not ledgered: re-exported for its readers
    events,
    exports,
    incidents,
    inflection_points,
    policy_decisions,
)
from governance_pipeline.landscape.schema_operations import operator_events  # noqa: E402

# The run's code manifest (one identity per node) joins the same metadata here.
from governance_pipeline.landscape.schema_code import code_identities  # noqa: E402

from governance_pipeline.landscape.schema_anchors import run_anchors  # noqa: E402

from governance_pipeline.landscape.schema_compact import compact_states  # noqa: E402

from governance_pipeline.landscape.schema_checkpoints import (  # noqa: E402
    ledger_checkpoints,
    ledger_origin,
)

from governance_pipeline.landscape.schema_data_protection import (  # noqa: E402
    LEDGERED_GLOBAL as _DATA_PROTECTION,
)

# --- the ledger: a hash chain per scope (a run id, or "global"), sealed by signed checkpoints ----
ledger_entries = Table(
    "ledger_entries", metadata,
    Column("scope", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("records_digest", String(64), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    _ts("created_at"),
    Column("entry_hash", String(64), nullable=False),
    PrimaryKeyConstraint("scope", "seq"),
    CheckConstraint("seq >= 1 AND record_count >= 0", name="counters"),
)

ledger_seals = Table(
    "ledger_seals", metadata,
    _key("seal_id", primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
    _ts("sealed_at"),
)
Index(None, ledger_seals.c.scope, ledger_seals.c.seq)


GLOBAL_SCOPE = "global"


@dataclass(frozen=True, slots=True)
class LedgerSpec:
    """How the ledger sees one table: its key columns, which rows belong to a scope, what is hashed."""

    table: Table
    key_columns: tuple[str, ...]
    scope_column: str | None  # None: every row belongs to the global scope
    hashed_columns: tuple[str, ...]
    float_columns: frozenset[str]

    @property
    def name(self) -> str:
        return self.table.name


# Columns that are operational, not audit facts: they change without a ledger entry.
_UNHASHED = {"runs": {"heartbeat_at", "worker"}}

_RUN_SCOPED = (runs, nodes, edges, rows, tokens, token_parents, node_states, token_outcomes,
               operations, calls, routing_events, batches, batch_members, artifacts, checkpoints,
               validation_errors, policy_decisions, inflection_points, incidents, compact_states)
_GLOBAL = (policy_snapshots, approvals, approval_stages, approval_decisions, approval_delegations,
           exports, approval_signatures, run_anchors, *_DATA_PROTECTION)


def _spec(table: Table, scope_column: str | None) -> LedgerSpec:
    skip = _UNHASHED.get(table.name, set())
    cols = tuple(c.name for c in table.columns if c.name not in skip)
    floats = frozenset(c.name for c in table.columns if isinstance(c.type, Float))
    return LedgerSpec(table, tuple(c.name for c in table.primary_key.columns), scope_column,
                      cols, floats)


LEDGERED: dict[str, LedgerSpec] = {
    **{t.name: _spec(t, "run_id") for t in _RUN_SCOPED},
    **{t.name: _spec(t, None) for t in _GLOBAL},
    "events": _spec(events, "scope"),
    "code_identities": _spec(code_identities, "run_id"),
}
LEDGERED["operator_events"] = _spec(operator_events, "scope")

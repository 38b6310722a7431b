"""Frozen audit records: what the recorder writes and what read models return.

One class per Landscape table, fields named as its columns. ``__post_init__`` enforces the
cross-field invariants before anything reaches the database (the schema enforces them again);
``from_row`` (``record_base.AuditRecord``) is the Tier-1 read. The governance records are in
``governance_records`` and re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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
from governance_pipeline.contracts.record_base import AuditRecord, _fail, _require


@dataclass(frozen=True, slots=True)
class Payload(AuditRecord):
    TABLE: ClassVar[str] = "payloads"
    content_hash: str
    size_bytes: int
    data: bytes
    created_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Payload:
        data = row["data"]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            _fail(cls.__name__, "data", data, "payload data is not bytes")
        return cls(row["content_hash"], row["size_bytes"], bytes(data), row["created_at"])


@dataclass(frozen=True, slots=True)
class PolicySnapshotRecord(AuditRecord):
    TABLE: ClassVar[str] = "policy_snapshots"
    snapshot_id: str
    tenant_id: str
    content_hash: str
    canonical_version: str
    policies_json: str
    policy_count: int
    created_at: str


@dataclass(frozen=True, slots=True)
class Run(AuditRecord):
    TABLE: ClassVar[str] = "runs"
    run_id: str
    pipeline_name: str
    tenant_id: str
    config_hash: str
    config_json: str
    canonical_version: str
    policy_snapshot_id: str | None
    status: RunStatus
    termination_reason: TerminationReason | None
    started_at: str
    ended_at: str | None
    pipeline_path: str | None
    heartbeat_at: str | None
    worker: str | None
    dagster_run_id: str | None
    resume_count: int
    last_resumed_at: str | None

    def __post_init__(self) -> None:
        _require(self.status is RunStatus.RUNNING or self.ended_at is not None,
                 "Run", f"status {self.status} without ended_at")
        _require(self.status is not RunStatus.COMPLETED or self.termination_reason is not None,
                 "Run", "completed run without termination reason")


@dataclass(frozen=True, slots=True)
class Node(AuditRecord):
    TABLE: ClassVar[str] = "nodes"
    run_id: str
    node_id: str
    node_type: NodeType
    plugin_name: str
    plugin_version: str
    determinism: Determinism
    config_hash: str
    config_json: str
    position: int
    registered_at: str


@dataclass(frozen=True, slots=True)
class Edge(AuditRecord):
    TABLE: ClassVar[str] = "edges"
    edge_id: str
    run_id: str
    from_node_id: str
    to_node_id: str
    label: str
    default_mode: RoutingMode


@dataclass(frozen=True, slots=True)
class SourceRow(AuditRecord):
    TABLE: ClassVar[str] = "rows"
    row_id: str
    run_id: str
    source_node_id: str
    row_index: int
    source_data_hash: str
    created_at: str

    def __post_init__(self) -> None:
        _require(self.row_index >= 0, "SourceRow", "negative row_index")


@dataclass(frozen=True, slots=True)
class Token(AuditRecord):
    TABLE: ClassVar[str] = "tokens"
    token_id: str
    run_id: str
    row_id: str
    branch_name: str | None
    fork_group_id: str | None
    join_group_id: str | None
    expand_group_id: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class TokenParent(AuditRecord):
    TABLE: ClassVar[str] = "token_parents"
    token_id: str
    parent_token_id: str
    run_id: str
    ordinal: int

    def __post_init__(self) -> None:
        _require(self.token_id != self.parent_token_id, "TokenParent", "token is its own parent")


@dataclass(frozen=True, slots=True)
class NodeState(AuditRecord):
    TABLE: ClassVar[str] = "node_states"
    state_id: str
    run_id: str
    token_id: str
    node_id: str
    step_index: int
    attempt: int
    status: NodeStateStatus
    input_hash: str
    output_hash: str | None
    context_before: str | None
    context_after: str | None
    error_json: str | None
    duration_ms: float | None
    policy_snapshot_id: str | None
    started_at: str
    completed_at: str | None

    def __post_init__(self) -> None:
        status = self.status
        if status is NodeStateStatus.OPEN:
            _require(self.completed_at is None and self.output_hash is None
                     and self.error_json is None, "NodeState", "open state carries a result")
        elif status is NodeStateStatus.COMPLETED:
            _require(self.output_hash is not None and self.completed_at is not None
                     and self.error_json is None,
                     "NodeState", "completed state needs output_hash and completed_at, no error")
        elif status is NodeStateStatus.FAILED:
            _require(self.error_json is not None and self.completed_at is not None,
                     "NodeState", "failed state needs error_json and completed_at")
        else:
            _require(False, "NodeState", f"unknown status {status!r}")


@dataclass(frozen=True, slots=True)
class CompactState(AuditRecord):
    """Pass-through node states of one token stored as one record: completed, input hash =
    output hash = ``row_hash``, no context, error or calls, at every node position whose bit is
    set in ``step_mask`` (``landscape.logical_states`` expands it into ``NodeState`` records)."""

    TABLE: ClassVar[str] = "compact_states"
    token_id: str
    step_mask: int
    run_id: str
    row_hash: str
    duration_ms: float | None
    policy_snapshot_id: str | None
    recorded_at: str

    def __post_init__(self) -> None:
        _require(0 < self.step_mask < 1 << 63, "CompactState",
                 f"step_mask {self.step_mask} names no step or does not fit 63 bits")


@dataclass(frozen=True, slots=True)
class TokenOutcome(AuditRecord):
    TABLE: ClassVar[str] = "token_outcomes"
    outcome_id: str
    run_id: str
    token_id: str
    outcome: Outcome
    is_terminal: bool
    sink_name: str | None
    batch_id: str | None
    fork_group_id: str | None
    join_group_id: str | None
    expand_group_id: str | None
    error_hash: str | None
    context_json: str | None
    recorded_at: str

    def __post_init__(self) -> None:
        # Messages are built only on failure: this runs for every outcome on the hot path.
        if not isinstance(self.outcome, Outcome):
            _require(False, "TokenOutcome", f"unknown outcome {self.outcome!r}")
        if self.is_terminal is not self.outcome.is_terminal:
            _require(False, "TokenOutcome",
                     f"is_terminal={self.is_terminal} contradicts outcome {self.outcome}")
        for name in self.outcome.required_fields:
            if getattr(self, name) is None:
                _require(False, "TokenOutcome", f"outcome {self.outcome} requires {name}")


@dataclass(frozen=True, slots=True)
class Operation(AuditRecord):
    TABLE: ClassVar[str] = "operations"
    operation_id: str
    run_id: str
    node_id: str
    operation_type: OperationType
    status: OperationStatus
    input_ref: str | None
    output_ref: str | None
    error_json: str | None
    duration_ms: float | None
    started_at: str
    completed_at: str | None

    def __post_init__(self) -> None:
        closed = self.completed_at is not None
        _require(closed == (self.status is not OperationStatus.OPEN), "Operation",
                 f"status {self.status} inconsistent with completed_at")
        _require((self.status is OperationStatus.FAILED) == (self.error_json is not None),
                 "Operation", "error_json must be set exactly when the operation failed")


@dataclass(frozen=True, slots=True)
class Call(AuditRecord):
    TABLE: ClassVar[str] = "calls"
    call_id: str
    run_id: str
    state_id: str | None
    operation_id: str | None
    call_index: int
    call_type: str
    status: CallStatus
    request_hash: str
    response_hash: str | None
    error_json: str | None
    latency_ms: float | None
    cost: float | None
    created_at: str

    def __post_init__(self) -> None:
        _require((self.state_id is None) != (self.operation_id is None), "Call",
                 "XOR violation: exactly one of state_id / operation_id must be set")
        if self.status is CallStatus.SUCCESS:
            _require(self.response_hash is not None, "Call", "successful call without response")
        else:
            _require(self.error_json is not None, "Call", "failed call without error")


@dataclass(frozen=True, slots=True)
class RoutingEvent(AuditRecord):
    TABLE: ClassVar[str] = "routing_events"
    event_id: str
    run_id: str
    state_id: str
    edge_id: str
    routing_group_id: str
    ordinal: int
    mode: RoutingMode
    reason_hash: str | None
    reason_json: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Batch(AuditRecord):
    TABLE: ClassVar[str] = "batches"
    batch_id: str
    run_id: str
    node_id: str
    attempt: int
    status: BatchStatus
    trigger_type: TriggerType | None
    trigger_reason: str | None
    state_id: str | None
    created_at: str
    completed_at: str | None

    def __post_init__(self) -> None:
        _require(self.status is BatchStatus.DRAFT or self.trigger_type is not None, "Batch",
                 f"{self.status} batch without trigger_type")
        done = self.status in (BatchStatus.COMPLETED, BatchStatus.FAILED)
        _require(done == (self.completed_at is not None), "Batch",
                 "completed_at must be set exactly when the batch is completed or failed")


@dataclass(frozen=True, slots=True)
class BatchMember(AuditRecord):
    TABLE: ClassVar[str] = "batch_members"
    batch_id: str
    token_id: str
    run_id: str
    ordinal: int


@dataclass(frozen=True, slots=True)
class Artifact(AuditRecord):
    TABLE: ClassVar[str] = "artifacts"
    artifact_id: str
    run_id: str
    sink_node_id: str
    operation_id: str | None
    artifact_type: str
    path_or_uri: str
    content_hash: str
    size_bytes: int
    row_count: int
    idempotency_key: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Checkpoint(AuditRecord):
    TABLE: ClassVar[str] = "checkpoints"
    checkpoint_id: str
    run_id: str
    sequence_number: int
    chunk_index: int
    format_version: int
    config_hash: str
    state_json: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ValidationErrorRecord(AuditRecord):
    TABLE: ClassVar[str] = "validation_errors"
    error_id: str
    run_id: str
    node_id: str
    row_index: int | None
    raw_payload_hash: str
    error_code: str
    reason: str
    destination: str
    created_at: str


# Governance records live in their own module; re-exported so every record imports from here.
from governance_pipeline.contracts.governance_records import (  # noqa: E402
    Approval as Approval,
    ApprovalDecisionRecord as ApprovalDecisionRecord,
    ApprovalDelegation as ApprovalDelegation,
    ApprovalSignature as ApprovalSignature,
    ApprovalStage as ApprovalStage,
    ExportRecord as ExportRecord,
    Incident as Incident,
    InflectionPoint as InflectionPoint,
    PolicyDecision as PolicyDecision,
)


@dataclass(frozen=True, slots=True)
class EventRecord(AuditRecord):
    TABLE: ClassVar[str] = "events"
    event_id: str
    scope: str
    type: str
    source: str
    target: str | None
    tenant_id: str | None
    correlation_id: str | None
    payload_json: str
    meta_json: str
    timestamp: str

# The operator audit log's record lives in its own module; re-exported with every record.
from governance_pipeline.contracts.operator_records import (  # noqa: E402
    OperatorEvent as OperatorEvent,
)

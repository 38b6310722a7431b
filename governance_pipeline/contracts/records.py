"""Frozen audit records: what the recorder writes and what read models return.

One class per Landscape table, fields named as its columns. ``__post_init__`` enforces the
cross-field invariants before anything reaches the database (the schema enforces them again).
``from_row`` is the Tier-1 read: every value read back from our own database is checked against
the field's declared type — an unknown enum value, a NULL where none may be, or a 2 in a 0/1
column raises ``AuditIntegrityError`` instead of becoming a confident wrong answer.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, get_type_hints

from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    BatchStatus,
    CallStatus,
    Decision,
    Determinism,
    ExportKind,
    ExportStatus,
    IncidentSeverity,
    IncidentStatus,
    NodeStateStatus,
    NodeType,
    OperationStatus,
    OperationType,
    Outcome,
    PolicyMode,
    RoutingMode,
    RuleResult,
    RunStatus,
    Severity,
    StageStatus,
    TerminationReason,
    TriggerType,
)
from governance_pipeline.contracts.errors import AuditIntegrityError

_Conv = typing.Callable[[str, str, Any], Any]


def _fail(cls_name: str, field: str, value: Any, why: str) -> typing.NoReturn:
    raise AuditIntegrityError(f"{cls_name}.{field}: {why} (got {value!r})",
                              details={"record": cls_name, "field": field})


def _converter(tp: Any) -> tuple[bool, _Conv]:
    """(nullable, convert) for one declared field type."""
    nullable = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        (tp,) = args
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        enum_cls = tp

        def conv_enum(cls_name: str, name: str, v: Any) -> Any:
            try:
                return enum_cls(v)
            except ValueError:
                _fail(cls_name, name, v, f"not a valid {enum_cls.__name__}")
        return nullable, conv_enum
    if tp is bool:
        def conv_flag(cls_name: str, name: str, v: Any) -> bool:
            if type(v) is bool:
                return v
            if type(v) is not int or v not in (0, 1):
                _fail(cls_name, name, v, "a 0/1 flag holds another value")
            return v == 1
        return nullable, conv_flag
    if tp is int:
        def conv_int(cls_name: str, name: str, v: Any) -> int:
            if type(v) is not int:
                _fail(cls_name, name, v, "not an integer")
            return v
        return nullable, conv_int
    if tp is float:
        def conv_float(cls_name: str, name: str, v: Any) -> float:
            if type(v) not in (int, float):
                _fail(cls_name, name, v, "not a number")
            return float(v)
        return nullable, conv_float
    if tp is str:
        def conv_str(cls_name: str, name: str, v: Any) -> str:
            if type(v) is not str:
                _fail(cls_name, name, v, "not text")
            return v
        return nullable, conv_str
    raise TypeError(f"unsupported record field type {tp!r}")


class AuditRecord:
    """Mixin for record dataclasses: table binding, row conversion, Tier-1 reads."""

    TABLE: ClassVar[str]
    __slots__ = ()
    _readers: ClassVar[tuple[tuple[str, bool, _Conv], ...]]
    _names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._readers = ()  # resolved lazily: the dataclass decorator has not run yet

    @classmethod
    def _resolve(cls) -> tuple[tuple[str, bool, _Conv], ...]:
        if not cls._readers:
            hints = get_type_hints(cls)
            cls._readers = tuple((f.name, *_converter(hints[f.name])) for f in fields(cls))  # type: ignore[arg-type]
            cls._names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        return cls._readers

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> typing.Self:
        """Tier-1 read of a database row; raises AuditIntegrityError on anything unexpected."""
        values: dict[str, Any] = {}
        for name, nullable, conv in cls._resolve():
            v = row[name]
            if v is None:
                if not nullable:
                    _fail(cls.__name__, name, v, "NULL where a value is required")
                values[name] = None
            else:
                values[name] = conv(cls.__name__, name, v)
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        type(self)._resolve()
        row = {}
        for name in self._names:
            v = getattr(self, name)
            row[name] = int(v) if type(v) is bool else v
        return row


def _require(cond: bool, record: str, message: str) -> None:
    if not cond:
        raise AuditIntegrityError(f"{record}: {message}", details={"record": record})


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

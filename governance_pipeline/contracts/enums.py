"""Enumerations of the audit model. Each enum knows the rules that hang on its values."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    FAILED_POLICY = "failed_policy"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self is RunStatus.COMPLETED

    @property
    def is_resumable(self) -> bool:
        return self in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.ABANDONED)


class TerminationReason(StrEnum):
    COMPLETED = "completed"
    POLICY_BLOCK = "policy_block"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    USER_ABORT = "user_abort"
    SYSTEM_FAILURE = "system_failure"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"


class NodeType(StrEnum):
    SOURCE = "source"
    TRANSFORM = "transform"
    GATE = "gate"
    FORK = "fork"
    COALESCE = "coalesce"
    AGGREGATION = "aggregation"
    SINK = "sink"


class Determinism(StrEnum):
    DETERMINISTIC = "deterministic"
    SEEDED = "seeded"
    IO_READ = "io_read"
    EXTERNAL_CALL = "external_call"
    NON_DETERMINISTIC = "non_deterministic"


class NodeStateStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_closed(self) -> bool:
        return self is not NodeStateStatus.OPEN


class Outcome(StrEnum):
    """What finally became of a token. ``buffered`` is the only non-terminal outcome."""

    COMPLETED = "completed"
    ROUTED = "routed"
    FORKED = "forked"
    COALESCED = "coalesced"
    CONSUMED_IN_BATCH = "consumed_in_batch"
    EXPANDED = "expanded"
    QUARANTINED = "quarantined"
    DIVERTED = "diverted"
    FAILED = "failed"
    DROPPED = "dropped"
    BUFFERED = "buffered"

    @property
    def is_terminal(self) -> bool:
        return self is not Outcome.BUFFERED

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Columns of token_outcomes that must be set for this outcome (also CHECK-enforced)."""
        return _OUTCOME_REQUIRED[self]


_OUTCOME_REQUIRED: dict[Outcome, tuple[str, ...]] = {
    Outcome.COMPLETED: ("sink_name",),
    Outcome.ROUTED: ("sink_name",),
    Outcome.FORKED: ("fork_group_id",),
    Outcome.COALESCED: ("join_group_id",),
    Outcome.CONSUMED_IN_BATCH: ("batch_id",),
    Outcome.EXPANDED: ("expand_group_id",),
    Outcome.QUARANTINED: ("error_hash",),
    Outcome.DIVERTED: ("sink_name", "error_hash"),
    Outcome.FAILED: ("error_hash",),
    Outcome.DROPPED: ("context_json",),
    Outcome.BUFFERED: ("batch_id",),
}


class OperationType(StrEnum):
    SOURCE_LOAD = "source_load"
    SINK_WRITE = "sink_write"


class OperationStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"


class CallStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"


class RoutingMode(StrEnum):
    MOVE = "move"
    COPY = "copy"


class BatchStatus(StrEnum):
    DRAFT = "draft"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"

    def can_move_to(self, target: BatchStatus) -> bool:
        return target in _BATCH_TRANSITIONS[self]


_BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.DRAFT: frozenset({BatchStatus.EXECUTING, BatchStatus.FAILED}),
    BatchStatus.EXECUTING: frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED}),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.FAILED: frozenset(),
}


class TriggerType(StrEnum):
    COUNT = "count"
    TIMEOUT = "timeout"
    CONDITION = "condition"
    END_OF_SOURCE = "end_of_source"


class IncidentSeverity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CONSUMED = "consumed"
    EXPIRED = "expired"


class StageStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class PolicyMode(StrEnum):
    """How a policy acts on a violation. Ordered: a kill switch caps enforced at advisory."""

    OFF = "off"              # not evaluated, nothing recorded
    ADVISORY = "advisory"    # evaluated and recorded (would_block), the run continues
    ENFORCED = "enforced"    # evaluated and recorded; a would_block violation stops the run

    @property
    def evaluates(self) -> bool:
        return self is not PolicyMode.OFF

    @property
    def stops(self) -> bool:
        return self is PolicyMode.ENFORCED


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RuleResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"


class ExportKind(StrEnum):
    EVIDENCE = "evidence"
    SOC2 = "soc2"
    DEBRIEF = "debrief"


class ExportStatus(StrEnum):
    WRITTEN = "written"
    BLOCKED = "blocked"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"        # retries exhausted; visible in `events --deliveries`


class AnchorReason(StrEnum):
    """Why a run's chain head was anchored in the global chain."""

    OPENED = "opened"
    SEALED = "sealed"

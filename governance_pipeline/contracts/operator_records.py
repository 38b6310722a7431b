"""The operator's own actions as audit records: who did what, with which inputs, and how it ended.

An ``OperatorEvent`` is written for every state-changing action an operator takes through the
CLI, a Dagster run or asset, or the library (``governance/operator_log.py`` is the one writer).
It holds hashes and identifiers of the action's inputs, never a secret (an approval token is
named by its approval id, never by its value).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from governance_pipeline.contracts.record_base import AuditRecord, _require


class OperatorAction(StrEnum):
    """What an operator did. New features add a member here (no migration: the column is
    checked for its form by the database and for membership by the Tier-1 read)."""

    RUN = "run.start"
    RESUME = "run.resume"
    APPROVAL_REQUEST = "approval.request"
    APPROVAL_APPROVE = "approval.approve"
    APPROVAL_REJECT = "approval.reject"
    APPROVAL_DELEGATE = "approval.delegate"
    APPROVAL_RESET = "approval.reset"
    TOKEN_CONSUME = "token.consume"
    EXPORT = "export"
    INCIDENT_ACKNOWLEDGE = "incident.acknowledge"
    INCIDENT_RESOLVE = "incident.resolve"
    # Called by features built elsewhere (retention, erasure, key management).
    PURGE = "retention.purge"
    LEGAL_HOLD = "retention.legal_hold"
    ERASE = "erasure.erase"
    KEYS_ROTATE = "keys.rotate"
    KEYS_REVOKE = "keys.revoke"

    @property
    def is_access(self) -> bool:
        """Logical access (SOC 2 CC6): who was let at, or out of, approvals and data."""
        return self in _ACCESS

    @property
    def is_change(self) -> bool:
        """Change management (SOC 2 CC8): runs that change outputs, and changes to the store."""
        return self not in _ACCESS


_ACCESS = frozenset({
    OperatorAction.APPROVAL_REQUEST, OperatorAction.APPROVAL_APPROVE,
    OperatorAction.APPROVAL_REJECT, OperatorAction.APPROVAL_DELEGATE,
    OperatorAction.APPROVAL_RESET, OperatorAction.TOKEN_CONSUME, OperatorAction.EXPORT,
    OperatorAction.KEYS_ROTATE, OperatorAction.KEYS_REVOKE})


class OperatorResult(StrEnum):
    OK = "ok"
    REFUSED = "refused"   # the product said no (invalid input, blocked, policy): a GP code says why
    FAILED = "failed"     # it broke (I/O, database, a bug): a GP code says what


class OperatorSurface(StrEnum):
    CLI = "cli"
    DAGSTER = "dagster"
    API = "api"           # the Python library called directly


@dataclass(frozen=True, slots=True)
class OperatorEvent(AuditRecord):
    """One operator action. ``scope`` is the ledger chain it is written in: a run's own (a run
    start, in the same transaction as the run) or ``global``."""

    TABLE: ClassVar[str] = "operator_events"
    event_id: str
    scope: str
    action: OperatorAction
    actor: str
    surface: OperatorSurface
    subject: str | None
    inputs_json: str
    inputs_hash: str
    result: OperatorResult
    code: str | None
    detail: str | None
    occurred_at: str

    def __post_init__(self) -> None:
        _require(bool(self.actor), "OperatorEvent", "an operator action needs an actor")
        _require((self.result is OperatorResult.OK) == (self.code is None), "OperatorEvent",
                 "a refused or failed action names its GP code; a successful one has none")
        _require(len(self.inputs_hash) == 64, "OperatorEvent",
                 "inputs_hash must be a SHA-256 hex digest")

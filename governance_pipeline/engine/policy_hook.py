"""What the engine asks of runtime policy, without knowing how policies are written.

The governance layer implements ``PolicyHook`` from a run's stored policy snapshot; the engine
calls it once per chunk at each node that has policies attached (and at the output boundary, as
rows enter the sinks) with every token the chunk brought there, in row order. The hook returns
the decision records to add to the chunk's unit and the violations that stop the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from governance_pipeline.contracts.records import AuditRecord


@dataclass(frozen=True, slots=True)
class PolicySubject:
    """One token as a policy sees it at one node: its row after the node, and its calls there."""

    token_id: str
    row_index: int
    row: Mapping[str, Any]
    calls: int = 0             # external calls the token's node state made
    call_cost: float = 0.0     # their summed cost
    state_id: str | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """An enforced violation: the subject (by position) and the decision that stops the run."""

    index: int
    decision_id: str
    policy_id: str
    rule_id: str
    severity: str
    reason: str
    fix: str


@dataclass(slots=True)
class PolicyVerdict:
    records: list[AuditRecord] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


class PolicyHook(Protocol):
    snapshot_id: str
    snapshot_hash: str

    def applies(self, node_id: str) -> bool:
        """Whether any evaluated (not 'off') policy is attached at ``node_id``."""

    def evaluate(self, node_id: str, step_index: int, subjects: Sequence[PolicySubject], *,
                 now_iso: str, now_ts: float) -> PolicyVerdict:
        """Evaluate every rule attached at ``node_id`` on every subject, in order."""

    def begin_chunk(self) -> None:
        """Remember the run-level counters (budgets, rates) before a chunk changes them."""

    def rollback_chunk(self) -> None:
        """Forget what an abandoned chunk added to the counters."""

    def chunk_state(self) -> dict[str, Any]:
        """The chunk's contribution to the counters, stored in its checkpoint."""

    def restore(self, chunk_states: Sequence[Mapping[str, Any]]) -> None:
        """Counters as recorded by the checkpointed chunks (a new process, a resume)."""

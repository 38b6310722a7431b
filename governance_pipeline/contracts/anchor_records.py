"""Run anchors: global-chain records that commit to a run's id and chain head.

A run's own chain can prove that nothing inside it was altered, but not that the run still
exists: deleting every row, entry and seal of a run leaves no chain to check. The anchor puts
the run id and head hash into the global chain (sealed at every commit), so a vanished run or a
run chain cut below an anchored head is a finding of ``verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from governance_pipeline.contracts.enums import AnchorReason
from governance_pipeline.contracts.record_base import AuditRecord, _require

_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class RunAnchor(AuditRecord):
    """The head of run ``run_id``'s chain at ``run_seq`` (``run_head_hash``), committed globally."""

    TABLE: ClassVar[str] = "run_anchors"
    anchor_id: str
    run_id: str
    run_seq: int
    run_head_hash: str
    reason: AnchorReason
    anchored_at: str

    def __post_init__(self) -> None:
        _require(self.run_seq >= 1, "RunAnchor", "an anchor names an entry of the run's chain")
        _require(len(self.run_head_hash) == 64 and set(self.run_head_hash) <= _HEX64,
                 "RunAnchor", "the anchored head is a SHA-256 hex digest")

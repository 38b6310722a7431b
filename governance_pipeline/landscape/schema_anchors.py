"""The ``run_anchors`` table: every run's chain head, committed in the global chain.

No foreign key to ``runs``: an anchor must outlive the run it names, or deleting the run would
take its evidence with it. Importing this module registers the table on the shared metadata;
``schema`` re-exports it.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table

from governance_pipeline.contracts.enums import AnchorReason
from governance_pipeline.landscape.schema_base import _in, _key, _ts, metadata

run_anchors = Table(
    "run_anchors", metadata,
    _key("anchor_id", primary_key=True),
    _key("run_id", nullable=False),
    Column("run_seq", Integer, nullable=False),
    Column("run_head_hash", String(64), nullable=False),
    Column("reason", String(16), nullable=False),
    _ts("anchored_at"),
    _in("reason", AnchorReason),
    CheckConstraint("run_seq >= 1", name="run_seq_positive"),
)
Index(None, run_anchors.c.run_id, run_anchors.c.run_seq)

"""The ``compact_states`` table: pass-through node states stored as one record per token and row
hash instead of one ``node_states`` row each (docs/landscape.md, "Logical model vs physical
encoding"; ``logical_states`` expands them back).

A record covers the steps (node positions) whose bit is set in ``step_mask``: at each of them
the token's state completed with input hash = output hash = ``row_hash``, no context of its own,
no error and no calls. Positions above 62 do not fit the mask; states there are stored in full.
Importing this module registers the table on the shared metadata; ``schema`` re-exports it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
)

from governance_pipeline.landscape.schema_base import _key, _ts, metadata

#: The highest node position a step mask can name (a signed 64-bit integer, sign bit unused).
MAX_COMPACT_POSITION = 62

compact_states = Table(
    "compact_states", metadata,
    _key("token_id", ForeignKey("tokens.token_id"), nullable=False),
    Column("step_mask", BigInteger, nullable=False),
    _key("run_id", nullable=False),
    Column("row_hash", String(64), nullable=False),
    # The covered states' own durations, summed: a logical state of the range has none.
    Column("duration_ms", Float, nullable=True),
    _key("policy_snapshot_id", nullable=True),
    _ts("recorded_at"),
    PrimaryKeyConstraint("token_id", "step_mask"),
    CheckConstraint("step_mask > 0", name="step_mask_positive"),  # 64-bit: the sign bit unused
)
Index(None, compact_states.c.run_id)

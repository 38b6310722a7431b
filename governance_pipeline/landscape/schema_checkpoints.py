"""The C2SP checkpoints of the ledger: ``ledger_checkpoints`` and the log's origin, ``ledger_origin``.

Each scope's chain is also an RFC 6962 Merkle tree (leaf i = the 32 bytes of entry seq i+1's
hash). A seal writes, beside its legacy ``ledger_seals`` row, the signed checkpoint note of the
tree at the sealed size and the tree's frontier, so the next seal appends in O(log n) instead of
re-reading the chain. Neither table is ledgered: like seals, checkpoints *are* the ledger's
evidence, and verify checks each against the entries. Importing this module registers the tables
on the shared metadata; ``schema`` re-exports them.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from governance_pipeline.landscape.schema_base import _key, _ts, metadata

ledger_checkpoints = Table(
    "ledger_checkpoints", metadata,
    Column("scope", String(64), nullable=False),
    Column("tree_size", Integer, nullable=False),
    _key("seal_id", nullable=False),  # the seal that wrote it (no FK: evidence outlives rows)
    Column("note", Text, nullable=False),  # the signed checkpoint, byte-exact C2SP text
    Column("frontier", LargeBinary, nullable=False),  # merkle.Frontier.to_bytes() at tree_size
    _ts("created_at"),
    PrimaryKeyConstraint("scope", "tree_size"),
    CheckConstraint("tree_size >= 0", name="tree_size_nonnegative"),
)

# One row: the prefix of every scope's origin line (``<prefix>/<scope>``), fixed at the first
# checkpoint so that a scope's checkpoints all name one log.
ledger_origin = Table(
    "ledger_origin", metadata,
    Column("origin_id", Integer, nullable=False),
    Column("origin_prefix", String(200), nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("origin_id"),
    CheckConstraint("origin_id = 1", name="single_row"),
)

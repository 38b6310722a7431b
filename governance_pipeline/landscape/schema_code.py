"""The run's code manifest: which code each node ran (plugin, distribution, user function).

One row per node of a run, written with the run's nodes at run start, in the same ledgered
transaction; ``resume`` compares a fresh identity against these rows. ``identity_hash`` is the
SHA-256 of the canonical JSON of the compared fields (``module_path`` is informative only: a
pipeline directory may move without its code changing).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from governance_pipeline.landscape.schema_base import _key, _ts, metadata

code_identities = Table(
    "code_identities", metadata,
    _key("run_id", nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("position", Integer, nullable=False),
    Column("plugin_name", String(128), nullable=False),
    Column("plugin_version", String(64), nullable=True),
    Column("distribution", String(128), nullable=True),
    Column("plugin_class", Text, nullable=False),
    Column("function_name", Text, nullable=True),
    Column("module_path", Text, nullable=True),
    Column("source_sha256", String(64), nullable=True),
    Column("function_distribution", String(128), nullable=True),
    Column("function_version", String(64), nullable=True),
    Column("identity_hash", String(64), nullable=False),
    _ts("recorded_at"),
    PrimaryKeyConstraint("run_id", "node_id"),
    ForeignKeyConstraint(["run_id", "node_id"], ["nodes.run_id", "nodes.node_id"]),
    # A user function is always identified by its source; a distribution always has a version.
    CheckConstraint("(function_name IS NULL) = (source_sha256 IS NULL) "
                    "AND (function_name IS NULL) = (module_path IS NULL)", name="function_source"),
    CheckConstraint("(function_distribution IS NULL) = (function_version IS NULL) "
                    "AND (function_name IS NOT NULL OR function_distribution IS NULL)",
                    name="function_distribution"),
    CheckConstraint("(distribution IS NULL) = (plugin_version IS NULL)", name="distribution"),
)

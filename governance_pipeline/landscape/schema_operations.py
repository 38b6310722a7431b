"""Landscape table of operations: the operator audit log (``contracts/operator_records.py``).

Importing this module registers the table on the shared ``metadata``; ``schema`` re-exports it
and ledgers it by its ``scope`` column, like the events outbox.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, String, Table, Text

from governance_pipeline.contracts.operator_records import OperatorResult, OperatorSurface
from governance_pipeline.landscape.schema_base import _in, _key, _ts, metadata

operator_events = Table(
    "operator_events", metadata,
    _key("event_id", primary_key=True),
    Column("scope", String(64), nullable=False),
    # Membership is checked by the Tier-1 read; the database checks the form, so an action added
    # by a later feature needs no migration.
    Column("action", String(48), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("surface", String(16), nullable=False),
    Column("subject", Text, nullable=True),
    Column("inputs_json", Text, nullable=False),
    Column("inputs_hash", String(64), nullable=False),
    Column("result", String(16), nullable=False),
    Column("code", String(32), nullable=True),
    Column("detail", Text, nullable=True),
    _ts("occurred_at"),
    _in("result", OperatorResult),
    _in("surface", OperatorSurface),
    CheckConstraint("action <> '' AND actor <> ''", name="named"),
    CheckConstraint("(result = 'ok') = (code IS NULL)", name="code_iff_not_ok"),
)
Index(None, operator_events.c.occurred_at)
Index(None, operator_events.c.actor, operator_events.c.occurred_at)
Index(None, operator_events.c.scope)

"""Tables of data protection (revision 0006): legal holds, purges, erasures, redacted payloads
(ledgered, global scope) and the subject data keys with their keyed index (not ledgered).

The key tables are deliberately outside the ledger, like payloads: a destroyed key must really be
gone, and a ledger entry holding its hash would not bring it back but would make every erasure
an "altered record". Their integrity comes from elsewhere: a wrapped key only unwraps under the
key-encryption key with its own id as associated data, a payload only decrypts under its key with
its content hash as associated data, and ``verify`` accepts a destroyed key only when a ledgered
erasure names it.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from governance_pipeline.contracts.data_protection import (
    ErasureSelector,
    HoldTarget,
    PurgeScope,
    RedactionAction,
)
from governance_pipeline.landscape.schema_base import _in, _key, _ts, metadata

_ACTOR = 200

legal_holds = Table(
    "legal_holds", metadata,
    _key("hold_id", primary_key=True),
    Column("target_kind", String(16), nullable=False),
    _key("target_id", nullable=False),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(_ACTOR), nullable=False),
    _ts("placed_at"),
    Column("released_by", String(_ACTOR), nullable=True),
    Column("release_reason", Text, nullable=True),
    _ts("released_at", nullable=True),
    _in("target_kind", HoldTarget),
    CheckConstraint("(released_at IS NULL) = (released_by IS NULL) AND "
                    "(released_at IS NULL) = (release_reason IS NULL)", name="release"),
)
Index(None, legal_holds.c.target_kind, legal_holds.c.target_id)

purges = Table(
    "purges", metadata,
    _key("purge_id", primary_key=True),
    Column("actor", String(_ACTOR), nullable=False),
    Column("reason", Text, nullable=True),
    Column("floor_days", Integer, nullable=False),
    Column("run_count", Integer, nullable=False),
    Column("payload_count", Integer, nullable=False),
    Column("payloads_digest", String(64), nullable=False),
    Column("held_json", Text, nullable=False),
    _ts("created_at"),
    CheckConstraint("floor_days >= 0 AND run_count >= 0 AND payload_count >= 0", name="counts"),
)

purged_runs = Table(
    "purged_runs", metadata,
    _key("purge_id", ForeignKey("purges.purge_id"), nullable=False),
    _key("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("retention_days", Integer, nullable=False),
    Column("payload_count", Integer, nullable=False),
    Column("payloads_digest", String(64), nullable=False),
    Column("ledger_seq", Integer, nullable=False),
    Column("ledger_head", String(64), nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("purge_id", "run_id"),
    _in("scope", PurgeScope),
    CheckConstraint("retention_days >= 0 AND payload_count >= 0", name="counts"),
)
Index(None, purged_runs.c.run_id)

payload_redactions = Table(
    "payload_redactions", metadata,
    Column("content_hash", String(64), ForeignKey("payloads.content_hash"), primary_key=True),
    Column("action", String(16), nullable=False),
    _key("event_id", nullable=False),
    _ts("redacted_at"),
    _in("action", RedactionAction),
)

erasures = Table(
    "erasures", metadata,
    _key("erasure_id", primary_key=True),
    Column("actor", String(_ACTOR), nullable=False),
    Column("reason", Text, nullable=False),
    Column("selector", String(8), nullable=False),
    Column("field_name", String(128), nullable=True),
    Column("value_hmac", String(64), nullable=True),
    _key("run_id", nullable=True),
    Column("row_index", Integer, nullable=True),
    Column("hmac_key_id", String(32), nullable=False),
    Column("key_ids_json", Text, nullable=False),
    Column("key_count", Integer, nullable=False),
    Column("payload_count", Integer, nullable=False),
    Column("payloads_digest", String(64), nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("runs_json", Text, nullable=False),
    _ts("created_at"),
    _in("selector", ErasureSelector),
    CheckConstraint(
        "(selector = 'subject' AND field_name IS NOT NULL AND value_hmac IS NOT NULL) OR "
        "(selector = 'row' AND run_id IS NOT NULL AND row_index IS NOT NULL)", name="selected"),
    CheckConstraint("key_count >= 0 AND payload_count >= 0 AND row_count >= 0", name="counts"),
)

# --- not ledgered: the data keys of subjects and the keyed index that finds them -------------
subject_keys = Table(
    "subject_keys", metadata,
    _key("key_id", primary_key=True),
    Column("subject_hmac", String(64), nullable=False),
    Column("kek_id", String(32), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    _ts("created_at"),
    _ts("destroyed_at", nullable=True),
    _key("erasure_id", nullable=True),
    CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL) AND "
                    "(destroyed_at IS NULL) = (erasure_id IS NULL)", name="destroyed"),
)
# One live key per subject; an erased subject whose data arrives again gets a new key.
Index("uq_subject_keys_live", subject_keys.c.subject_hmac, unique=True,
      sqlite_where=subject_keys.c.destroyed_at.is_(None),
      postgresql_where=subject_keys.c.destroyed_at.is_(None))

subject_index = Table(
    "subject_index", metadata,
    Column("field_name", String(128), nullable=False),
    Column("value_hmac", String(64), nullable=False),
    _key("key_id", ForeignKey("subject_keys.key_id"), nullable=False),
    PrimaryKeyConstraint("field_name", "value_hmac", "key_id"),
)
Index(None, subject_index.c.key_id)

#: The data-protection tables the ledger commits (global scope).
LEDGERED_GLOBAL = (legal_holds, purges, purged_runs, payload_redactions, erasures)

"""data protection: retention, legal holds, purges, erasure by subject (crypto-shredding)

New tables: legal_holds, purges, purged_runs, payload_redactions, erasures (ledgered, global
scope), subject_keys and subject_index (the data keys of subjects and their keyed index; not
ledgered). payloads gains a nullable key_id: every payload written before this revision keeps
NULL (stored in clear) and reads and verifies as before. Additive only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_TS = sa.String(length=32)
_KEY = sa.String(length=100)


def upgrade() -> None:
    with op.batch_alter_table('payloads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', _KEY, nullable=True))
        batch_op.create_index('ix_payloads_key_id', ['key_id'], unique=False, sqlite_where=sa.text('key_id IS NOT NULL'), postgresql_where=sa.text('key_id IS NOT NULL'))

    op.create_table('legal_holds',
    sa.Column('hold_id', _KEY, nullable=False),
    sa.Column('target_kind', sa.String(length=16), nullable=False),
    sa.Column('target_id', _KEY, nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('placed_by', sa.String(length=200), nullable=False),
    sa.Column('placed_at', _TS, nullable=False),
    sa.Column('released_by', sa.String(length=200), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=True),
    sa.Column('released_at', _TS, nullable=True),
    sa.CheckConstraint("target_kind IN ('run', 'incident')", name=op.f('ck_legal_holds_target_kind_valid')),
    sa.CheckConstraint('(released_at IS NULL) = (released_by IS NULL) AND (released_at IS NULL) = (release_reason IS NULL)', name=op.f('ck_legal_holds_release')),
    sa.PrimaryKeyConstraint('hold_id', name=op.f('pk_legal_holds'))
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_holds_target_kind_target_id'), ['target_kind', 'target_id'], unique=False)

    op.create_table('purges',
    sa.Column('purge_id', _KEY, nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('floor_days', sa.Integer(), nullable=False),
    sa.Column('run_count', sa.Integer(), nullable=False),
    sa.Column('payload_count', sa.Integer(), nullable=False),
    sa.Column('payloads_digest', sa.String(length=64), nullable=False),
    sa.Column('held_json', sa.Text(), nullable=False),
    sa.Column('created_at', _TS, nullable=False),
    sa.CheckConstraint('floor_days >= 0 AND run_count >= 0 AND payload_count >= 0', name=op.f('ck_purges_counts')),
    sa.PrimaryKeyConstraint('purge_id', name=op.f('pk_purges'))
    )

    op.create_table('purged_runs',
    sa.Column('purge_id', _KEY, nullable=False),
    sa.Column('run_id', _KEY, nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('payload_count', sa.Integer(), nullable=False),
    sa.Column('payloads_digest', sa.String(length=64), nullable=False),
    sa.Column('ledger_seq', sa.Integer(), nullable=False),
    sa.Column('ledger_head', sa.String(length=64), nullable=False),
    sa.Column('created_at', _TS, nullable=False),
    sa.CheckConstraint("scope IN ('payloads', 'run')", name=op.f('ck_purged_runs_scope_valid')),
    sa.CheckConstraint('retention_days >= 0 AND payload_count >= 0', name=op.f('ck_purged_runs_counts')),
    sa.ForeignKeyConstraint(['purge_id'], ['purges.purge_id'], name=op.f('fk_purged_runs_purge_id_purges')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_purged_runs_run_id_runs')),
    sa.PrimaryKeyConstraint('purge_id', 'run_id', name=op.f('pk_purged_runs'))
    )
    with op.batch_alter_table('purged_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purged_runs_run_id'), ['run_id'], unique=False)

    op.create_table('payload_redactions',
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('event_id', _KEY, nullable=False),
    sa.Column('redacted_at', _TS, nullable=False),
    sa.CheckConstraint("action IN ('purged', 'erased')", name=op.f('ck_payload_redactions_action_valid')),
    sa.ForeignKeyConstraint(['content_hash'], ['payloads.content_hash'], name=op.f('fk_payload_redactions_content_hash_payloads')),
    sa.PrimaryKeyConstraint('content_hash', name=op.f('pk_payload_redactions'))
    )

    op.create_table('erasures',
    sa.Column('erasure_id', _KEY, nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('selector', sa.String(length=8), nullable=False),
    sa.Column('field_name', sa.String(length=128), nullable=True),
    sa.Column('value_hmac', sa.String(length=64), nullable=True),
    sa.Column('run_id', _KEY, nullable=True),
    sa.Column('row_index', sa.Integer(), nullable=True),
    sa.Column('hmac_key_id', sa.String(length=32), nullable=False),
    sa.Column('key_ids_json', sa.Text(), nullable=False),
    sa.Column('key_count', sa.Integer(), nullable=False),
    sa.Column('payload_count', sa.Integer(), nullable=False),
    sa.Column('payloads_digest', sa.String(length=64), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('runs_json', sa.Text(), nullable=False),
    sa.Column('created_at', _TS, nullable=False),
    sa.CheckConstraint("selector IN ('subject', 'row')", name=op.f('ck_erasures_selector_valid')),
    sa.CheckConstraint("(selector = 'subject' AND field_name IS NOT NULL AND value_hmac IS NOT NULL) OR (selector = 'row' AND run_id IS NOT NULL AND row_index IS NOT NULL)", name=op.f('ck_erasures_selected')),
    sa.CheckConstraint('key_count >= 0 AND payload_count >= 0 AND row_count >= 0', name=op.f('ck_erasures_counts')),
    sa.PrimaryKeyConstraint('erasure_id', name=op.f('pk_erasures'))
    )

    op.create_table('subject_keys',
    sa.Column('key_id', _KEY, nullable=False),
    sa.Column('subject_hmac', sa.String(length=64), nullable=False),
    sa.Column('kek_id', sa.String(length=32), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', _TS, nullable=False),
    sa.Column('destroyed_at', _TS, nullable=True),
    sa.Column('erasure_id', _KEY, nullable=True),
    sa.CheckConstraint('(wrapped_key IS NULL) = (destroyed_at IS NOT NULL) AND (destroyed_at IS NULL) = (erasure_id IS NULL)', name=op.f('ck_subject_keys_destroyed')),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_subject_keys'))
    )
    with op.batch_alter_table('subject_keys', schema=None) as batch_op:
        batch_op.create_index('uq_subject_keys_live', ['subject_hmac'], unique=True, sqlite_where=sa.text('destroyed_at IS NULL'), postgresql_where=sa.text('destroyed_at IS NULL'))

    op.create_table('subject_index',
    sa.Column('field_name', sa.String(length=128), nullable=False),
    sa.Column('value_hmac', sa.String(length=64), nullable=False),
    sa.Column('key_id', _KEY, nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['subject_keys.key_id'], name=op.f('fk_subject_index_key_id_subject_keys')),
    sa.PrimaryKeyConstraint('field_name', 'value_hmac', 'key_id', name=op.f('pk_subject_index'))
    )
    with op.batch_alter_table('subject_index', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_index_key_id'), ['key_id'], unique=False)


def downgrade() -> None:
    for table in ('subject_index', 'subject_keys', 'erasures', 'payload_redactions',
                  'purged_runs', 'purges', 'legal_holds'):
        op.drop_table(table)
    with op.batch_alter_table('payloads', schema=None) as batch_op:
        batch_op.drop_index('ix_payloads_key_id', sqlite_where=sa.text('key_id IS NOT NULL'), postgresql_where=sa.text('key_id IS NOT NULL'))
        batch_op.drop_column('key_id')

"""operator audit log

New table: operator_events (who ran, resumed, approved, consumed, exported, acknowledged…;
with the hashes of the action's inputs and its result), ledgered by its scope column. Additive:
no existing table changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('operator_events',
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('surface', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('inputs_json', sa.Text(), nullable=False),
    sa.Column('inputs_hash', sa.String(length=64), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('occurred_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("(result = 'ok') = (code IS NULL)", name=op.f('ck_operator_events_code_iff_not_ok')),
    sa.CheckConstraint("action <> '' AND actor <> ''", name=op.f('ck_operator_events_named')),
    sa.CheckConstraint("result IN ('ok', 'refused', 'failed')", name=op.f('ck_operator_events_result_valid')),
    sa.CheckConstraint("surface IN ('cli', 'dagster', 'api')", name=op.f('ck_operator_events_surface_valid')),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_operator_events'))
    )
    with op.batch_alter_table('operator_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_events_actor_occurred_at'), ['actor', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_operator_events_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_operator_events_scope'), ['scope'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('operator_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operator_events_scope'))
        batch_op.drop_index(batch_op.f('ix_operator_events_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_operator_events_actor_occurred_at'))
    op.drop_table('operator_events')

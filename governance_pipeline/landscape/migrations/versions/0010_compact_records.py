"""Compact records for what carries no information

New table compact_states: a token's pass-through node states (completed, input hash = output
hash, no context, error or calls) as one record per token and row hash, the steps it covers as a
bit mask of node positions. Additive: runs recorded before this revision keep every state in
node_states and every default route in routing_events; landscape/logical_states.py reads both
encodings (docs/landscape.md, "Logical model vs physical encoding").

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('compact_states',
    sa.Column('token_id', sa.String(length=100), nullable=False),
    sa.Column('step_mask', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=100), nullable=False),
    sa.Column('row_hash', sa.String(length=64), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('policy_snapshot_id', sa.String(length=100), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint('step_mask > 0', name=op.f('ck_compact_states_step_mask_positive')),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.token_id'],
                            name=op.f('fk_compact_states_token_id_tokens')),
    sa.PrimaryKeyConstraint('token_id', 'step_mask', name=op.f('pk_compact_states'))
    )
    op.create_index(op.f('ix_compact_states_run_id'), 'compact_states', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_compact_states_run_id'), table_name='compact_states')
    op.drop_table('compact_states')

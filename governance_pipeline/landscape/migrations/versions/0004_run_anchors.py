"""run anchors: each run's chain head committed in the global chain

New table run_anchors (global scope, ledgered): written when a run opens and whenever its chain
is sealed, so verify can tell a deleted or truncated run from one that never existed. Additive:
runs recorded before this revision have no anchor and verify reports none missing for them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_anchors',
    sa.Column('anchor_id', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=100), nullable=False),
    sa.Column('run_seq', sa.Integer(), nullable=False),
    sa.Column('run_head_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('anchored_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("reason IN ('opened', 'sealed')", name=op.f('ck_run_anchors_reason_valid')),
    sa.CheckConstraint('run_seq >= 1', name=op.f('ck_run_anchors_run_seq_positive')),
    sa.PrimaryKeyConstraint('anchor_id', name=op.f('pk_run_anchors'))
    )
    with op.batch_alter_table('run_anchors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_anchors_run_id_run_seq'), ['run_id', 'run_seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_anchors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_anchors_run_id_run_seq'))
    op.drop_table('run_anchors')

"""signed approval decisions

New table approval_signatures: the signed statement, signature and key fingerprint behind a
decision taken under a signed ladder (docs/approvals.md#signed-decisions). Additive: no existing
table changes, and decisions made before this revision simply have no signature row.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approval_signatures',
    sa.Column('decision_id', sa.String(length=100), nullable=False),
    sa.Column('approval_id', sa.String(length=100), nullable=False),
    sa.Column('statement_json', sa.Text(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('signed_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['approval_id'], ['approvals.approval_id'], name=op.f('fk_approval_signatures_approval_id_approvals')),
    sa.ForeignKeyConstraint(['decision_id'], ['approval_decisions.decision_id'], name=op.f('fk_approval_signatures_decision_id_approval_decisions')),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_approval_signatures'))
    )
    with op.batch_alter_table('approval_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_signatures_approval_id'), ['approval_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('approval_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_signatures_approval_id'))
    op.drop_table('approval_signatures')

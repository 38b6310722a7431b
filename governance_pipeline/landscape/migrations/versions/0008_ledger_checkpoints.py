"""C2SP checkpoints of the ledger

New tables ledger_checkpoints (per scope and tree size: the signed C2SP checkpoint note and the
Merkle frontier at that size) and ledger_origin (one row: the prefix of every checkpoint's
origin line). Additive: seals made before this revision keep only their ledger_seals row and
keep verifying as legacy seals; a scope's next seal writes its first checkpoint (docs/landscape.md
"Checkpoints").

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_checkpoints',
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('tree_size', sa.Integer(), nullable=False),
    sa.Column('seal_id', sa.String(length=100), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('frontier', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint('tree_size >= 0', name=op.f('ck_ledger_checkpoints_tree_size_nonnegative')),
    sa.PrimaryKeyConstraint('scope', 'tree_size', name=op.f('pk_ledger_checkpoints'))
    )
    op.create_table('ledger_origin',
    sa.Column('origin_id', sa.Integer(), nullable=False),
    sa.Column('origin_prefix', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint('origin_id = 1', name=op.f('ck_ledger_origin_single_row')),
    sa.PrimaryKeyConstraint('origin_id', name=op.f('pk_ledger_origin'))
    )


def downgrade() -> None:
    op.drop_table('ledger_origin')
    op.drop_table('ledger_checkpoints')

"""code identities: the run's code manifest

New table code_identities: one row per node of a run with the plugin, its distribution and
version, and for Python functions the qualified name, the module's source SHA-256 and the
function's distribution. Additive: runs recorded before this revision have no rows (resume then
has no manifest to compare against and says so).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('code_identities',
    sa.Column('run_id', sa.String(length=100), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('plugin_name', sa.String(length=128), nullable=False),
    sa.Column('plugin_version', sa.String(length=64), nullable=True),
    sa.Column('distribution', sa.String(length=128), nullable=True),
    sa.Column('plugin_class', sa.Text(), nullable=False),
    sa.Column('function_name', sa.Text(), nullable=True),
    sa.Column('module_path', sa.Text(), nullable=True),
    sa.Column('source_sha256', sa.String(length=64), nullable=True),
    sa.Column('function_distribution', sa.String(length=128), nullable=True),
    sa.Column('function_version', sa.String(length=64), nullable=True),
    sa.Column('identity_hash', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("(function_name IS NULL) = (source_sha256 IS NULL) AND (function_name IS NULL) = (module_path IS NULL)", name=op.f('ck_code_identities_function_source')),
    sa.CheckConstraint("(function_distribution IS NULL) = (function_version IS NULL) AND (function_name IS NOT NULL OR function_distribution IS NULL)", name=op.f('ck_code_identities_function_distribution')),
    sa.CheckConstraint("(distribution IS NULL) = (plugin_version IS NULL)", name=op.f('ck_code_identities_distribution')),
    sa.ForeignKeyConstraint(['run_id', 'node_id'], ['nodes.run_id', 'nodes.node_id'], name=op.f('fk_code_identities_run_id_nodes')),
    sa.PrimaryKeyConstraint('run_id', 'node_id', name=op.f('pk_code_identities'))
    )


def downgrade() -> None:
    op.drop_table('code_identities')

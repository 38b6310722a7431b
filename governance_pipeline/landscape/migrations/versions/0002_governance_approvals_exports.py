"""runtime governance, approvals, exports, event outbox

New tables: policy_decisions, inflection_points (runtime governance), approval_delegations,
exports, event_deliveries. The approval tables gain rounds (a reset starts a new round; earlier
votes stay) and a human-readable subject; incidents gain their inflection point and resolution.
No code wrote approvals before this revision, so their NOT NULL columns need no backfill; the
upgrade refuses, rather than guesses, if a database has approval rows anyway.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:07:46.072264
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _require_empty(table: str) -> None:
    count = op.get_bind().execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    if count:
        raise RuntimeError(f"migration 0002 expects an empty {table} table, found {count} rows")


def upgrade() -> None:
    for table in ("approval_decisions", "approval_stages", "approvals"):
        _require_empty(table)
    op.create_table('event_deliveries',
    sa.Column('subscriber', sa.String(length=128), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', sa.String(length=32), nullable=True),
    sa.Column('delivered_at', sa.String(length=32), nullable=True),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("(status = 'delivered') = (delivered_at IS NOT NULL)", name=op.f('ck_event_deliveries_delivered')),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_event_deliveries_status_valid')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_event_deliveries_attempts_nonneg')),
    sa.ForeignKeyConstraint(['event_id'], ['events.event_id'], name=op.f('fk_event_deliveries_event_id_events')),
    sa.PrimaryKeyConstraint('subscriber', 'event_id', name=op.f('pk_event_deliveries'))
    )
    with op.batch_alter_table('event_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_deliveries_status_next_attempt_at'), ['status', 'next_attempt_at'], unique=False)

    op.create_table('exports',
    sa.Column('export_id', sa.String(length=100), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('subject_hash', sa.String(length=71), nullable=False),
    sa.Column('surface', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('approval_id', sa.String(length=100), nullable=True),
    sa.Column('bundle_digest', sa.String(length=64), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("kind IN ('evidence', 'soc2', 'debrief')", name=op.f('ck_exports_kind_valid')),
    sa.CheckConstraint("status <> 'blocked' OR reason IS NOT NULL", name=op.f('ck_exports_blocked_says_why')),
    sa.CheckConstraint("status <> 'written' OR (bundle_digest IS NOT NULL AND path IS NOT NULL)", name=op.f('ck_exports_written_has_digest')),
    sa.CheckConstraint("status IN ('written', 'blocked')", name=op.f('ck_exports_status_valid')),
    sa.ForeignKeyConstraint(['approval_id'], ['approvals.approval_id'], name=op.f('fk_exports_approval_id_approvals')),
    sa.PrimaryKeyConstraint('export_id', name=op.f('pk_exports'))
    )
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exports_kind_subject'), ['kind', 'subject'], unique=False)

    op.create_table('approval_delegations',
    sa.Column('delegation_id', sa.String(length=100), nullable=False),
    sa.Column('approval_id', sa.String(length=100), nullable=False),
    sa.Column('stage_id', sa.String(length=100), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('from_actor', sa.String(length=128), nullable=False),
    sa.Column('to_actor', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint('from_actor <> to_actor', name=op.f('ck_approval_delegations_not_self')),
    sa.ForeignKeyConstraint(['approval_id'], ['approvals.approval_id'], name=op.f('fk_approval_delegations_approval_id_approvals')),
    sa.ForeignKeyConstraint(['stage_id'], ['approval_stages.stage_id'], name=op.f('fk_approval_delegations_stage_id_approval_stages')),
    sa.PrimaryKeyConstraint('delegation_id', name=op.f('pk_approval_delegations'))
    )
    with op.batch_alter_table('approval_delegations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_delegations_approval_id'), ['approval_id'], unique=False)

    op.create_table('policy_decisions',
    sa.Column('decision_id', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=100), nullable=False),
    sa.Column('token_id', sa.String(length=100), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('state_id', sa.String(length=100), nullable=True),
    sa.Column('snapshot_id', sa.String(length=100), nullable=False),
    sa.Column('snapshot_hash', sa.String(length=64), nullable=False),
    sa.Column('policy_id', sa.String(length=128), nullable=False),
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('rule_kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('result', sa.String(length=8), nullable=False),
    sa.Column('would_block', sa.Integer(), nullable=False),
    sa.Column('detail_json', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("mode IN ('advisory', 'enforced')", name=op.f('ck_policy_decisions_mode_valid')),
    sa.CheckConstraint("result = 'pass' OR detail_json IS NOT NULL", name=op.f('ck_policy_decisions_failure_says_why')),
    sa.CheckConstraint("result IN ('pass', 'fail')", name=op.f('ck_policy_decisions_result_valid')),
    sa.CheckConstraint("severity IN ('info', 'low', 'medium', 'high', 'critical')", name=op.f('ck_policy_decisions_severity_valid')),
    sa.CheckConstraint("would_block = 0 OR result = 'fail'", name=op.f('ck_policy_decisions_block_needs_failure')),
    sa.CheckConstraint('step_index >= 0', name=op.f('ck_policy_decisions_step_nonneg')),
    sa.CheckConstraint('would_block IN (0, 1)', name=op.f('ck_policy_decisions_would_block_flag')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['policy_snapshots.snapshot_id'], name=op.f('fk_policy_decisions_snapshot_id_policy_snapshots')),
    sa.ForeignKeyConstraint(['state_id'], ['node_states.state_id'], name=op.f('fk_policy_decisions_state_id_node_states')),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.token_id'], name=op.f('fk_policy_decisions_token_id_tokens')),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_policy_decisions'))
    )
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policy_decisions_run_id_would_block'), ['run_id', 'would_block'], unique=False)
        batch_op.create_index(batch_op.f('ix_policy_decisions_token_id'), ['token_id'], unique=False)

    op.create_table('inflection_points',
    sa.Column('inflection_id', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=100), nullable=False),
    sa.Column('token_id', sa.String(length=100), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('decision_id', sa.String(length=100), nullable=False),
    sa.Column('snapshot_id', sa.String(length=100), nullable=False),
    sa.Column('policy_id', sa.String(length=128), nullable=False),
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint('row_index >= 0 AND step_index >= 0', name=op.f('ck_inflection_points_counters_nonneg')),
    sa.ForeignKeyConstraint(['decision_id'], ['policy_decisions.decision_id'], name=op.f('fk_inflection_points_decision_id_policy_decisions')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_inflection_points_run_id_runs')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['policy_snapshots.snapshot_id'], name=op.f('fk_inflection_points_snapshot_id_policy_snapshots')),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.token_id'], name=op.f('fk_inflection_points_token_id_tokens')),
    sa.PrimaryKeyConstraint('inflection_id', name=op.f('pk_inflection_points')),
    sa.UniqueConstraint('run_id', name=op.f('uq_inflection_points_run_id'))
    )
    with op.batch_alter_table('approval_decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_approval_decisions_stage_id_actor'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_approval_decisions_stage_id_actor_round'), ['stage_id', 'actor', 'round'])

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_ref', sa.Text(), nullable=False))
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('consumed_for', sa.String(length=128), nullable=True))
        batch_op.create_check_constraint(op.f('ck_approvals_consumer'),
                                         'consumed_at IS NULL OR consumed_by IS NOT NULL')
        batch_op.create_check_constraint(op.f('ck_approvals_round_nonneg'), 'round >= 0')

    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inflection_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('resolution', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('resolution')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('inflection_id')

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_approvals_round_nonneg'), type_='check')
        batch_op.drop_constraint(op.f('ck_approvals_consumer'), type_='check')
        batch_op.drop_column('consumed_for')
        batch_op.drop_column('round')
        batch_op.drop_column('subject_ref')

    with op.batch_alter_table('approval_decisions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_approval_decisions_stage_id_actor_round'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_approval_decisions_stage_id_actor'), ['stage_id', 'actor'])
        batch_op.drop_column('round')

    op.drop_table('inflection_points')
    with op.batch_alter_table('policy_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policy_decisions_token_id'))
        batch_op.drop_index(batch_op.f('ix_policy_decisions_run_id_would_block'))

    op.drop_table('policy_decisions')
    with op.batch_alter_table('approval_delegations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_delegations_approval_id'))

    op.drop_table('approval_delegations')
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exports_kind_subject'))

    op.drop_table('exports')
    with op.batch_alter_table('event_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_deliveries_status_next_attempt_at'))

    op.drop_table('event_deliveries')

"""Indexes of the bulk tables: one less on token_outcomes, a partial one for explain on tokens

``token_outcomes`` kept two indexes over ``token_id``: the partial unique index
``uq_token_terminal_outcome (token_id) WHERE is_terminal = 1`` (one terminal outcome per token)
and ``ix_token_outcomes_token_id_outcome`` for the lookups by token the partial index cannot
serve. Both become one unique index ``uq_token_terminal_outcome (token_id, is_terminal)``: it
still enforces one terminal outcome per token (with the CHECK tying is_terminal to the outcome),
also one buffered outcome per token (outcome ids are derived, so the engine never writes two),
and serves every lookup by token. A database holding a token with two outcomes of one kind is
refused before anything changes (GP-DB-101).

``ix_tokens_join_group_id`` (partial: only tokens with a join group) serves explain's lookup of
the tokens an aggregation emitted for a batch, which scanned every token of the database.

Every other index serves a query and stays; no table changes: ``WITHOUT ROWID`` was measured on
each bulk table and loses (schema.py; docs/landscape.md "Physical layout of the bulk tables").

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from governance_pipeline.landscape.migration_checks import refuse_repeated_token_outcomes

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_TERMINAL = sa.text('is_terminal = 1')
_JOINED = sa.text('join_group_id IS NOT NULL')


def upgrade() -> None:
    refuse_repeated_token_outcomes(op.get_bind(), revision)
    op.drop_index('uq_token_terminal_outcome', table_name='token_outcomes',
                  sqlite_where=_TERMINAL, postgresql_where=_TERMINAL)
    op.drop_index('ix_token_outcomes_token_id_outcome', table_name='token_outcomes')
    op.create_index('uq_token_terminal_outcome', 'token_outcomes', ['token_id', 'is_terminal'],
                    unique=True)
    op.create_index('ix_tokens_join_group_id', 'tokens', ['join_group_id'], unique=False,
                    sqlite_where=_JOINED, postgresql_where=_JOINED)


def downgrade() -> None:
    op.drop_index('ix_tokens_join_group_id', table_name='tokens',
                  sqlite_where=_JOINED, postgresql_where=_JOINED)
    op.drop_index('uq_token_terminal_outcome', table_name='token_outcomes')
    op.create_index('ix_token_outcomes_token_id_outcome', 'token_outcomes',
                    ['token_id', 'outcome'], unique=False)
    op.create_index('uq_token_terminal_outcome', 'token_outcomes', ['token_id'], unique=True,
                    sqlite_where=_TERMINAL, postgresql_where=_TERMINAL)

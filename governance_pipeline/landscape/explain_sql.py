"""The statements ``explain`` reads a row's lineage with: plain SQL with named parameters.

One set for every way in (``reader.py``): the command line's direct sqlite3 and psycopg readers
and an in-process caller's SQLAlchemy connection. ``:name`` is a parameter; a list parameter
(``IN (:token_ids)``) expands to one placeholder per item. Whole rows are selected (``*``):
``Record.from_row`` (Tier-1) takes the columns it declares by name and checks each.
"""

from __future__ import annotations

RUN = "SELECT * FROM runs WHERE run_id = :run_id"

ROW_OF_TOKEN = "SELECT row_id FROM tokens WHERE run_id = :run_id AND token_id = :token_id"

ROW_BY_INDEX = "SELECT * FROM rows WHERE run_id = :run_id AND row_index = :row_index"

ROW_BY_ID = "SELECT * FROM rows WHERE run_id = :run_id AND row_id = :row_id"

VALIDATION_ERRORS = ("SELECT * FROM validation_errors "
                     "WHERE run_id = :run_id AND row_index = :row_index")

INFLECTION_POINT = ("SELECT * FROM inflection_points "
                    "WHERE run_id = :run_id AND row_index = :row_index")

# An aggregation's output tokens carry the row id of their batch's first member; they are that
# row's descendants only through the batch, so they are not tokens of the row — unless one of
# them is the token asked about (``:focus``; NULL matches nothing).
TOKENS = ("SELECT * FROM tokens WHERE run_id = :run_id AND row_id = :row_id AND ("
          "join_group_id IS NULL "
          "OR join_group_id NOT IN (SELECT batch_id FROM batches WHERE run_id = :run_id) "
          "OR token_id = :focus) ORDER BY token_id")

TOKEN_LINKS = ("SELECT token_id, parent_token_id FROM token_parents "
               "WHERE token_id IN (:token_ids) OR parent_token_id IN (:token_ids) "
               "ORDER BY ordinal")

# Node states and routing events: logical_trail.py (stored and compact records alike).

CALLS = "SELECT * FROM calls WHERE state_id IN (:state_ids) ORDER BY call_id"

TOKEN_OUTCOMES = ("SELECT * FROM token_outcomes WHERE token_id IN (:token_ids) "
                  "ORDER BY is_terminal, outcome_id")

POLICY_DECISIONS = ("SELECT * FROM policy_decisions WHERE token_id IN (:token_ids) "
                    "ORDER BY step_index, decision_id")

BATCH_OUTPUTS = ("SELECT token_id, join_group_id FROM tokens WHERE join_group_id IN (:batch_ids) "
                 "ORDER BY token_id")


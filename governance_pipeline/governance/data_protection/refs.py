"""Which payloads a run's records reference: every column that holds a payload's hash."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Column, Connection, select

from governance_pipeline.landscape.schema import (
    calls,
    compact_states,
    node_states,
    rows,
    token_outcomes,
    validation_errors,
)

#: (run id column, payload hash column) of every record that points at a payload.
PAYLOAD_REFERENCES: tuple[tuple[Column, Column], ...] = (
    (rows.c.run_id, rows.c.source_data_hash),
    (validation_errors.c.run_id, validation_errors.c.raw_payload_hash),
    (node_states.c.run_id, node_states.c.input_hash),
    (node_states.c.run_id, node_states.c.output_hash),
    (compact_states.c.run_id, compact_states.c.row_hash),
    (calls.c.run_id, calls.c.request_hash),
    (calls.c.run_id, calls.c.response_hash),
    (token_outcomes.c.run_id, token_outcomes.c.error_hash),
)


def references(conn: Connection) -> Iterator[tuple[str, str]]:
    """(run id, payload hash) of every payload reference in the Landscape, streamed."""
    for run_col, hash_col in PAYLOAD_REFERENCES:
        query = select(run_col, hash_col).where(hash_col.is_not(None)).distinct()
        for run_id, content_hash in conn.execution_options(yield_per=5_000).execute(query):
            yield run_id, content_hash


def run_references(conn: Connection, run_id: str) -> set[str]:
    found: set[str] = set()
    for run_col, hash_col in PAYLOAD_REFERENCES:
        found.update(conn.execute(select(hash_col).where(run_col == run_id,
                                                         hash_col.is_not(None))).scalars())
    return found

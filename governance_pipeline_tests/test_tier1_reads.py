"""Tier-1 reads: a record read back from our own database is trusted only after validation.

Each case writes a valid record through the recorder (via the synthetic run), reads it back
(must pass, equal to what was written), then corrupts it in the database past the constraints,
as a faulty tool or an attacker with a SQL client could, and the read must raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.records import (
    AuditRecord,
    Batch,
    Call,
    Node,
    NodeState,
    Run,
    TokenOutcome,
)
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import LEDGERED
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.synthetic import SyntheticRun, record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection


@dataclass(frozen=True)
class Corruption:
    name: str
    record: type[AuditRecord]
    key: Callable[[SyntheticRun], str]  # the primary key of the record to corrupt
    values: dict[str, Any]              # column -> corrupt value
    error: str                          # a fragment of the AuditIntegrityError message


CASES = [
    Corruption("run-unknown-status", Run, lambda r: r.run_id, {"status": "paused"},
               "not a valid RunStatus"),
    Corruption("run-null-pipeline-name", Run, lambda r: r.run_id, {"pipeline_name": None},
               "NULL where a value is required"),
    Corruption("run-completed-without-reason", Run, lambda r: r.run_id,
               {"termination_reason": None}, "completed run without termination reason"),
    Corruption("node-unknown-type", Node, lambda r: orjson.dumps([r.run_id, "route"]).decode(),
               {"node_type": "router"}, "not a valid NodeType"),
    Corruption("node-state-unknown-status", NodeState, lambda r: r.state_ids[1],
               {"status": "half_open"}, "not a valid NodeStateStatus"),
    Corruption("node-state-null-input-hash", NodeState, lambda r: r.state_ids[1],
               {"input_hash": None}, "NULL where a value is required"),
    Corruption("node-state-completed-without-output", NodeState, lambda r: r.state_ids[1],
               {"output_hash": None}, "completed state needs output_hash"),
    Corruption("token-outcome-terminal-2", TokenOutcome, lambda r: r.completed_outcome_id,
               {"is_terminal": 2}, "a 0/1 flag holds another value"),
    Corruption("token-outcome-unknown-outcome", TokenOutcome, lambda r: r.completed_outcome_id,
               {"outcome": "vanished"}, "not a valid Outcome"),
    Corruption("token-outcome-completed-but-not-terminal", TokenOutcome,
               lambda r: r.completed_outcome_id, {"is_terminal": 0}, "contradicts outcome"),
    Corruption("call-without-parent", Call, lambda r: r.state_call_id, {"state_id": None},
               "XOR violation"),
    Corruption("call-with-two-parents", Call, lambda r: r.state_call_id,
               {"operation_id": "op_anything"}, "XOR violation"),
    Corruption("call-unknown-status", Call, lambda r: r.operation_call_id, {"status": "maybe"},
               "not a valid CallStatus"),
    Corruption("batch-unknown-status", Batch, lambda r: r.batch_id, {"status": "paused"},
               "not a valid BatchStatus"),
    Corruption("batch-null-attempt", Batch, lambda r: r.batch_id, {"attempt": None},
               "NULL where a value is required"),
    Corruption("batch-unknown-trigger", Batch, lambda r: r.batch_id, {"trigger_type": "whim"},
               "not a valid TriggerType"),
]


@pytest.fixture
def run(recorder: Recorder) -> SyntheticRun:
    return record_synthetic_run(recorder)


def read_row(landscape: Landscape, record: type[AuditRecord], key: str) -> Any:
    spec = LEDGERED[record.TABLE]
    values = [key] if len(spec.key_columns) == 1 else orjson.loads(key)
    where = [spec.table.c[c] == v for c, v in zip(spec.key_columns, values, strict=True)]
    with landscape.engine.connect() as conn:
        return conn.execute(select(spec.table).where(*where)).mappings().one()


def corrupt(db_url: str, record: type[AuditRecord], key_columns: tuple[str, ...], key: str,
            values: dict[str, Any]) -> None:
    keys = [key] if len(key_columns) == 1 else orjson.loads(key)
    with raw_connection(db_url) as db:
        db.drop_constraints(record.TABLE,
                            tuple(c for c, v in values.items() if v is None))
        assignments = ", ".join(f"{c} = ?" for c in values)
        where = " AND ".join(f"{c} = ?" for c in key_columns)
        db.execute(f"UPDATE {record.TABLE} SET {assignments} WHERE {where}",
                   (*values.values(), *keys))
        changed = db.row(record.TABLE, where, tuple(keys))
        assert {c: changed[c] for c in values} == values  # the corruption really landed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corrupt_record_is_refused_on_read(landscape: Landscape, db_url: str,
                                           run: SyntheticRun, case: Corruption) -> None:
    key = case.key(run)
    good = case.record.from_row(read_row(landscape, case.record, key))
    assert good.to_row() == dict(read_row(landscape, case.record, key))

    corrupt(db_url, case.record, LEDGERED[case.record.TABLE].key_columns, key, case.values)
    bad = read_row(landscape, case.record, key)
    with pytest.raises(AuditIntegrityError, match=case.error):
        case.record.from_row(bad)


@pytest.mark.parametrize("record, key", [
    (Run, lambda r: r.run_id),
    (NodeState, lambda r: r.updated_state_id),
    (TokenOutcome, lambda r: r.buffered_outcome_ids[0]),
    (Call, lambda r: r.operation_call_id),
    (Batch, lambda r: r.batch_id),
], ids=["run", "node_state", "token_outcome", "call", "batch"])
def test_valid_records_read_back_equal(landscape: Landscape, run: SyntheticRun,
                                       record: type[AuditRecord],
                                       key: Callable[[SyntheticRun], str]) -> None:
    row = read_row(landscape, record, key(run))
    back = record.from_row(row)
    assert back.to_row() == dict(row)
    assert record.from_row(back.to_row()) == back

"""The record check of verify (``verify_records``): rows hashed as driver tuples get exactly the
key and hash ``record_key`` / ``record_hash`` give the same row as a mapping, for any value a
tampered database can hold (and a different hash as soon as one hashed value differs); and the
findings do not depend on how the rows and the manifests that commit them interleave."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.landscape import verify_records
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import LEDGERED
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import VerifyReport, verify
from governance_pipeline.landscape.verify_records import key_and_hash, record_hasher
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection

# What a cell can hold once a column was retyped or written past its constraints.
hostile = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.binary(max_size=4), st.just("\u00e9\u4e2d\U0001f600"), st.just(float("nan")))
TABLES = ("node_states", "nodes", "runs", "token_parents", "calls")


def rows_of(name: str, cells: list[list[Any]]) -> list[tuple[Any, ...]]:
    width = len(LEDGERED[name].hashed_columns)
    return [tuple((row * width)[:width]) for row in cells]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(hostile, min_size=1, max_size=5), min_size=1, max_size=5))
def test_tuple_hashing_is_record_key_and_record_hash(cells: list[list[Any]]) -> None:
    for name in TABLES:
        spec = LEDGERED[name]
        rows = rows_of(name, cells)
        columns = spec.hashed_columns
        expected = [(name, *key_and_hash(spec, dict(zip(columns, row, strict=True))))
                    for row in rows]
        assert record_hasher(spec)(rows) == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=4)),
                         min_size=1, max_size=4), min_size=1, max_size=4), st.data())
def test_one_changed_value_changes_the_hash(cells: list[list[Any]], data: st.DataObject) -> None:
    """The must-reject side: an int where a float was, text where an int was, a value changed."""
    spec = LEDGERED["node_states"]
    floats = [spec.hashed_columns.index(c) for c in spec.float_columns]
    row = tuple(0.25 if n in floats else v for n, v in enumerate(rows_of("node_states", cells)[0]))
    col = data.draw(st.sampled_from([c for c in spec.hashed_columns
                                     if c not in spec.key_columns]))
    i = spec.hashed_columns.index(col)
    value = row[i]
    other = (str(value) if isinstance(value, int) else value + "x") \
        if col not in spec.float_columns else "0.5"
    changed = (*row[:i], other, *row[i + 1:])
    before, after = record_hasher(spec)([row, changed])
    assert before[1] == after[1] and before[2] != after[2]


def test_float_column_normalises_ints_the_same_way_on_both_paths() -> None:
    spec = LEDGERED["node_states"]
    i = spec.hashed_columns.index("duration_ms")
    base = tuple(f"v{n}" for n in range(len(spec.hashed_columns)))
    as_int, as_float = (*base[:i], 3, *base[i + 1:]), (*base[:i], 3.0, *base[i + 1:])
    mixed = record_hasher(spec)([as_int, as_float])
    assert mixed[0] == mixed[1] == record_hasher(spec)([as_float])[0]
    text = (*base[:i], "three", *base[i + 1:])
    assert record_hasher(spec)([text])[0][2].startswith("unhashable:")


# --- matching by key does not depend on how far the rows run ahead of the manifests ------------
def _findings(report: VerifyReport) -> set[tuple[str, str, str, str]]:
    return {(f.check, f.table, f.key, f.message) for f in report.findings}


def test_findings_are_the_same_with_every_row_in_flight(
        landscape: Landscape, db_url: str, recorder: Recorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows fetched one at a time and no read-ahead: every key waits for its partner on one side
    or the other, re-emitted records meet their rows late, and the findings stay the same."""
    run = record_synthetic_run(recorder)
    record_synthetic_run(recorder, rows=5, pipeline_name="bystander")
    other_run = None
    with raw_connection(db_url) as db:
        other_run = db.scalar("SELECT run_id FROM runs WHERE run_id <> ?", (run.run_id,))
        db.execute("UPDATE node_states SET duration_ms = 0.5 WHERE state_id = ?",
                   (run.state_ids[-1],))
        db.execute("UPDATE node_states SET status = 'open', output_hash = NULL, duration_ms = "
                   "NULL, completed_at = NULL WHERE state_id = ?", (run.updated_state_id,))
        db.execute("DELETE FROM routing_events WHERE event_id = ?", (run.routing_event_ids[1],))
        db.execute("UPDATE calls SET run_id = ? WHERE call_id = ?",
                   (other_run, run.state_call_id))
        db.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (run.run_id,))
    streamed = _findings(verify(landscape, run.run_id))
    monkeypatch.setattr(verify_records, "STREAM", 1)
    monkeypatch.setattr(verify_records, "WINDOW", 1)
    assert _findings(verify(landscape, run.run_id)) == streamed
    wanted = {("node_states", run.state_ids[-1], "modified"),
              ("node_states", run.updated_state_id, "modified"),
              ("routing_events", run.routing_event_ids[1], "deleted"),
              ("calls", run.state_call_id, "moved"), ("runs", run.run_id, "modified")}
    assert wanted <= {(t, k, m.split(":")[0]) for c, t, k, m in streamed if c == "record"}


def test_an_untouched_run_verifies_clean_with_every_row_in_flight(
        landscape: Landscape, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    run = record_synthetic_run(recorder)
    monkeypatch.setattr(verify_records, "STREAM", 1)
    monkeypatch.setattr(verify_records, "WINDOW", 1)
    report = verify(landscape, run.run_id)
    assert report.ok, report.findings

"""Hostile records fail their row, never the run (SQLite and PostgreSQL, real engine runs).

A JSON Lines line nested 10,000 deep, a field nested past the cap, an integer beyond ±(2^53 − 1)
from the source, from an expression and from a lookup table: each row is quarantined or failed
with its reason (source rows keep their raw line), the other rows complete, ``explain`` says why
and ``verify`` stays clean. The twin: the same pipeline over the good rows alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.engine.row_schema import MAX_NESTING_DEPTH
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.test_engine_run import (
    assert_clean,
    jsonl_sinks,
    read_jsonl,
    run_pipeline,
    source_doc,
    write_pipeline,
)

GOOD = ['{"id": 0, "x": 5, "code": "A", "v": [1, [2, [3]]]}',
        '{"id": 6, "x": 7, "code": "A", "v": {"k": "text"}}']
HOSTILE = {
    1: '{"id": 1, "x": 5, "code": "A", "v": ' + "[" * 10_000 + "]" * 10_000 + "}",
    2: '{"id": 2, "x": 5, "code": "A", "v": ' + "[" * (MAX_NESTING_DEPTH + 1)
       + "]" * (MAX_NESTING_DEPTH + 1) + "}",
    3: '{"id": 3, "x": 9007199254740993, "code": "A", "v": 1}',
    4: '{"id": 4, "x": 4503599627370496, "code": "A", "v": 1}',  # x * 4 overflows 2**53
    5: '{"id": 5, "x": 5, "code": "HUGE", "v": 1}',  # the lookup copies 10**20
}
QUARANTINED = {1: ("malformed", "JSON nested too deeply"),
               2: ("too_deep", f"field 'v': nested deeper than {MAX_NESTING_DEPTH} levels"),
               3: ("out_of_range", "field 'x': integer outside ±2^53")}


def pipeline(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "limits.jsonl").write_text('{"code": "A", "limit": 10}\n'
                                          '{"code": "HUGE", "limit": 100000000000000000000}\n')
    doc = {"name": "hostile", "chunk_size": 3,
           "source": source_doc({"id": "int", "x": "int", "code": "str", "v": "any"}),
           "nodes": [
               {"id": "times", "kind": "transform", "plugin": "compute", "input": "raw",
                "on_success": "timed", "on_error": "errors",
                "options": {"fields": {"y": "x * 4"}}},
               {"id": "limits", "kind": "transform", "plugin": "lookup", "input": "timed",
                "on_success": "out", "on_error": "errors",
                "options": {"path": "limits.jsonl", "key": "code", "fields": ["limit"]}}],
           "sinks": jsonl_sinks("out", "errors", "quarantine")}
    return write_pipeline(tmp_path, doc)


def out(tmp_path: Path, sink: str) -> list[dict[str, Any]]:
    path = tmp_path / "out" / f"{sink}.jsonl"
    return read_jsonl(path) if path.exists() else []


def test_hostile_rows_fail_alone_and_explain_says_why(landscape: Landscape, clock: ManualClock,
                                                     tmp_path: Path) -> None:
    lines = [GOOD[0], *HOSTILE.values(), GOOD[1]]
    result = run_pipeline(landscape, clock, pipeline(tmp_path, lines))
    assert result.status == "completed"
    assert_clean(landscape, result)
    assert verify(landscape, result.run_id).ok
    assert [r["id"] for r in out(tmp_path, "out")] == [0, 6]
    quarantined = {r["row_index"]: r for r in out(tmp_path, "quarantine")}
    assert sorted(quarantined) == sorted(QUARANTINED)
    for index, (code, reason) in QUARANTINED.items():
        assert quarantined[index]["error_code"] == code
        assert quarantined[index]["error_reason"].startswith(reason)
        assert quarantined[index]["raw"] == lines[index] + "\n"  # the exact line, kept
        why = explain(landscape, result.run_id, row_index=index).as_dict()
        assert [(v["code"], v["reason"][:len(reason)]) for v in why["validation_errors"]] == [
            (code, reason)]
        # the row's payload is the raw line's bytes, by content hash
        assert why["source_data_hash"] == hashlib.sha256((lines[index] + "\n").encode()).hexdigest()
    failed = {r["id"]: r for r in out(tmp_path, "errors")}
    assert sorted(failed) == [4, 5]
    assert failed[4]["_error_node"] == "times" and "beyond ±(2**53 - 1)" in failed[4][
        "_error_reason"]
    assert failed[5]["_error_node"] == "limits" and failed[5]["_error_code"] == "GP-HASH-001"
    for index, node in ((4, "times"), (5, "limits")):
        why = explain(landscape, result.run_id, row_index=index).as_dict()
        errors = [s["error"] for t in why["tokens"] for s in t["states"] if s["status"] == "failed"]
        assert [e["node"] for e in errors] == [node]
        assert errors[0]["reason"] == failed[index]["_error_reason"]


def test_the_good_rows_alone_complete(landscape: Landscape, clock: ManualClock,
                                      tmp_path: Path) -> None:
    result = run_pipeline(landscape, clock, pipeline(tmp_path, GOOD))
    assert result.status == "completed"
    assert_clean(landscape, result)
    rows = out(tmp_path, "out")
    assert [(r["id"], r["y"], r["limit"]) for r in rows] == [(0, 20, 10), (6, 28, 10)]
    assert rows[0]["v"] == [1, [2, [3]]]
    assert out(tmp_path, "errors") == [] and out(tmp_path, "quarantine") == []


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1])
def test_nesting_cap_is_exact(landscape: Landscape, clock: ManualClock, tmp_path: Path,
                              depth: int) -> None:
    line = json.dumps({"id": 9, "x": 1, "code": "A", "v": json.loads("[" * depth + "]" * depth)})
    result = run_pipeline(landscape, clock, pipeline(tmp_path, [line]))
    assert result.status == "completed"
    written = [len(out(tmp_path, "out")), len(out(tmp_path, "quarantine"))]
    assert written == ([1, 0] if depth == MAX_NESTING_DEPTH else [0, 1])

"""CSV formula escaping (OWASP "CSV injection"): each dangerous leading character is written with
a ``'`` in front, harmless twins and numbers are written as given, ``formula_escape: false``
writes everything as given; in a run the sink's node state hashes the row as written, the
Landscape stores the sink's rule, and ``explain`` shows the written and the original row."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from governance_pipeline.cli.main import run_cli
from governance_pipeline.contracts.hashing import canonical_json, sha256_hex
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.ids import part_key
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape import logical_states
from governance_pipeline.landscape.schema import nodes
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline.plugins.sinks.csv_sink import CsvSink, escape_formula

DANGEROUS = ["=", "+", "-", "@", "\t", "\r"]


def write_csv(tmp_path: Path, rows: list[dict[str, Any]], **options: Any) -> list[list[str]]:
    sink = CsvSink({"path": "out.csv", **options}, base_dir=tmp_path, sink_name="out")
    sink.write_part(part_key(0), [(f"tok-{i}", r) for i, r in enumerate(rows)])
    sink.finalize([part_key(0)])
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("lead", DANGEROUS, ids=["eq", "plus", "minus", "at", "tab", "cr"])
def test_each_dangerous_leading_character_is_prefixed(tmp_path: Path, lead: str) -> None:
    value = f"{lead}HYPERLINK(\"http://x\")"
    (header, row) = write_csv(tmp_path, [{"id": 1, "cell": value}])
    assert header == ["id", "cell"]
    assert row == ["1", "'" + value]


@pytest.mark.parametrize("lead", DANGEROUS, ids=["eq", "plus", "minus", "at", "tab", "cr"])
def test_the_opt_out_writes_each_as_given(tmp_path: Path, lead: str) -> None:
    value = f"{lead}SUM(A1:A2)"
    (_, row) = write_csv(tmp_path, [{"id": 1, "cell": value}], formula_escape=False)
    assert row == ["1", value]


@pytest.mark.parametrize("value", ["a=b", "x-1", " =1", "'=already", "", "total+", "mail@x"])
def test_harmless_twins_are_written_as_given(tmp_path: Path, value: str) -> None:
    (_, row) = write_csv(tmp_path, [{"id": 1, "cell": value}])
    assert row == ["1", value]


def test_numbers_from_numeric_types_are_not_escaped_but_numeric_strings_are(
        tmp_path: Path) -> None:
    from decimal import Decimal

    (_, row) = write_csv(tmp_path, [{"f": -1.5, "i": -3, "d": Decimal("-2.25"), "s": "-1.5",
                                     "b": False, "n": None}])
    assert row == ["-1.5", "-3", "-2.25", "'-1.5", "false", ""]


def test_the_header_is_escaped_too(tmp_path: Path) -> None:
    (header, row) = write_csv(tmp_path, [{"=cmd": "ok", "name": "-x"}])
    assert header == ["'=cmd", "name"] and row == ["ok", "'-x"]


def test_as_written_names_the_changed_fields_only_when_something_changes(
        tmp_path: Path) -> None:
    sink = CsvSink({"path": "o.csv"}, base_dir=tmp_path, sink_name="out")
    assert sink.as_written({"a": "safe", "n": -1}) is None
    assert sink.as_written({"a": "@x", "b": "+y", "c": "z"}) == (
        {"a": "'@x", "b": "'+y", "c": "z"}, ["a", "b"])
    off = CsvSink({"path": "o.csv", "formula_escape": False}, base_dir=tmp_path,
                  sink_name="out")
    assert off.as_written({"a": "@x"}) is None
    assert sink.describe()["formula_escape"]["enabled"] is True
    assert off.describe()["formula_escape"]["enabled"] is False
    assert escape_formula("=1") == "'=1" and escape_formula("1=") == "1="


# --- in a run ------------------------------------------------------------------------------------
ROWS = [{"id": 0, "cell": "=1+2", "n": -1.5}, {"id": 1, "cell": "plain", "n": 2},
        {"id": 2, "cell": "\tTAB", "n": 0}]


def _pipeline(tmp_path: Path, escape: bool | None) -> Path:
    work = tmp_path / ("default" if escape is None else f"escape_{escape}")
    work.mkdir()
    (work / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    option = "" if escape is None else f", formula_escape: {str(escape).lower()}"
    (work / "p.yaml").write_text(
        "name: csv_escape\ntenant: acme\nchunk_size: 2\n"
        "source:\n  plugin: jsonl\n  options: {path: in.jsonl}\n  on_success: out\n"
        f"sinks:\n  out:\n    plugin: csv\n    options: {{path: out.csv{option}}}\n",
        encoding="utf-8")
    return work / "p.yaml"


def _run(landscape: Landscape, path: Path) -> str:
    config = load_pipeline(path, env={})
    return Runner.start(landscape, config, base_dir=path.parent,
                        pipeline_path=path).execute().run_id


def _sink_states(landscape: Landscape, run_id: str) -> list[Any]:
    states = logical_states.node_states_view(run_id).subquery()  # stored or compact
    with landscape.engine.connect() as conn:
        return conn.execute(select(states.c.input_hash, states.c.output_hash,
                                   states.c.context_after)
                            .where(states.c.node_id == "out")
                            .order_by(states.c.token_id)).all()


def _sink_description(landscape: Landscape, run_id: str) -> dict[str, Any]:
    with landscape.engine.connect() as conn:
        cfg = conn.execute(select(nodes.c.config_json).where(
            nodes.c.run_id == run_id, nodes.c.node_id == "out")).scalar_one()
    return json.loads(cfg)["described"]["formula_escape"]


def test_a_run_records_the_written_row_and_explain_shows_both(
        landscape: Landscape, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _pipeline(tmp_path, None)
    run_id = _run(landscape, path)
    written = [{**r, "cell": escape_formula(r["cell"])} for r in ROWS]
    with open(path.parent / "out.csv", encoding="utf-8", newline="") as fh:
        assert [row[1] for row in csv.reader(fh)][1:] == [w["cell"] for w in written]
    states = _sink_states(landscape, run_id)
    assert [s.input_hash for s in states] == [sha256_hex(canonical_json(r)) for r in ROWS]
    assert [s.output_hash for s in states] == [sha256_hex(canonical_json(w)) for w in written]
    assert states[1].output_hash == states[1].input_hash and states[1].context_after is None
    assert json.loads(states[0].context_after) == {"written_as": {"changed_fields": ["cell"]}}
    assert _sink_description(landscape, run_id)["enabled"] is True
    doc = explain(landscape, run_id, row_index=0).as_dict()
    (state,) = [s for s in doc["tokens"][0]["states"] if s["node_id"] == "out"]
    assert state["written"] == {"as_written": written[0], "original": ROWS[0],
                                "changed_fields": ["cell"]}
    plain = explain(landscape, run_id, row_index=1).as_dict()
    assert all("written" not in s for s in plain["tokens"][0]["states"])
    assert verify(landscape, run_id).ok
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))  # its keys/ are the fixture's
    capsys.readouterr()
    assert run_cli(["explain", run_id, "--row", "0"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "written as:" in x]
    assert "\"'=1+2\"" in line and "changed cell" in line and "original {'cell': '=1+2'" in line


def test_a_run_with_the_opt_out_writes_and_hashes_rows_as_given(landscape: Landscape,
                                                                tmp_path: Path) -> None:
    path = _pipeline(tmp_path, False)
    run_id = _run(landscape, path)
    with open(path.parent / "out.csv", encoding="utf-8", newline="") as fh:
        assert [row[1] for row in csv.reader(fh)][1:] == [r["cell"] for r in ROWS]
    states = _sink_states(landscape, run_id)
    assert all(s.output_hash == s.input_hash and s.context_after is None for s in states)
    assert _sink_description(landscape, run_id) == {
        "enabled": False, "rule": "off: cells written as given (formula_escape: false)"}

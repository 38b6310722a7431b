"""Your own Python and pandas code as transforms, on both backends: row-wise and once per chunk,
row identity through the index, expansion, NaN and numpy/pandas values, the aggregation batch
function, validation before any run, the code manifest and what resume does with it.

Each test writes a small user package (``ucode``) next to its pipeline file in its own directory,
so the loader also proves it imports the right one of several same-named packages.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine.code_identity import CodeChangedError, current_identities
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.resume import resume
from governance_pipeline.landscape.code_manifest import manifest_hash, stored_identities
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.schema import token_outcomes, tokens
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.test_engine_run import read_jsonl, run_pipeline, start, write_pipeline

ROWS = [
    {"id": 1, "x": 1.5, "y": 2, "grp": "a", "flag": True},
    {"id": 2, "x": 2.5, "y": 1, "grp": "b", "flag": False},
    {"id": 3, "x": None, "y": 1, "grp": "a", "flag": True},
    {"id": 4, "x": 4.0, "y": 4, "grp": "b", "flag": False},
    {"id": 5, "x": 5.5, "y": 5, "grp": "a", "flag": True},
    {"id": 6, "x": 1.0, "y": 0, "grp": "b", "flag": False},
    {"id": 7, "x": 7.25, "y": 7, "grp": "a", "flag": True},
    {"id": 8, "x": 8.0, "y": 2, "grp": "b", "flag": False},
]

USER_CODE = '''
from __future__ import annotations

import numpy as np
import pandas as pd

CALLS: list[int] = []


def tag(row: dict) -> dict:
    if row["id"] == 3:
        raise KeyError("no such claim")
    if row["id"] == 4:
        return None
    if row["id"] == 5:
        return {**row, "bad": float("nan")}
    if row["id"] == 7:
        return {**row, "big": np.int64(2**60)}
    return {**row, "n": np.int64(row["id"]) * 2, "f": np.float64(row["x"]) / 2,
            "b": np.bool_(row["id"] % 2 == 0), "missing": pd.NA, "none": None,
            "ts": pd.Timestamp("2024-05-01T12:00:00") + pd.Timedelta(days=row["id"]),
            "nested": {"k": [np.int32(1), np.float32(0.5)]}}


def keep(df: pd.DataFrame) -> pd.DataFrame:
    CALLS.append(len(df))
    out = df[df["id"] != 2].copy()
    out["double"] = out["id"] * 2
    out["ratio"] = out["x"] / out["y"]
    out["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(out["id"], unit="D")
    return out


def add_rows(df):
    return pd.concat([df, df.iloc[:1]])


def reset(df):
    return df.reset_index(drop=True)


def expand(df):
    ones = df[df["id"] == 1]
    out = pd.concat([df, ones.assign(copy=1), ones.assign(copy=2)]).sort_index(kind="stable")
    out["copy"] = out["copy"].fillna(0).astype(int)
    return out


def summary(df):
    return (df.groupby("grp", sort=True)
            .agg(n=("id", "size"), total=("x", "sum"), top=("id", "max")).reset_index())


def nan_summary(df):
    return pd.DataFrame({"grp": ["all"], "mean": [float("nan")]})


def two_args(row, other):
    return row


def wants_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df


def wants_row(row: dict) -> dict:
    return row


NOT_CALLABLE = 3
'''


def project(tmp_path: Path, nodes: list[dict[str, Any]], *, chunk_size: int = 4,
            sinks: tuple[str, ...] = ("out", "errors")) -> Path:
    """A pipeline over ROWS with the user package ``ucode`` next to it."""
    package = tmp_path / "pipe" / "ucode"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "fns.py").write_text(USER_CODE)
    data = tmp_path / "pipe" / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    doc = {"name": "pytest_python", "chunk_size": chunk_size,
           "source": {"plugin": "jsonl", "options": {"path": "rows.jsonl"},
                      "on_success": "in0"},
           "nodes": nodes,
           "sinks": {s: {"plugin": "jsonl", "options": {"path": str(tmp_path / "out" / f"{s}.jsonl")}}
                     for s in sinks}}
    return write_pipeline(tmp_path / "pipe", doc)


def python_node(function: str, *, node_id: str = "mine", on_success: str = "out",
                **options: Any) -> dict[str, Any]:
    return {"id": node_id, "kind": "transform", "plugin": "python", "input": "in0",
            "options": {"function": f"ucode.fns:{function}", **options},
            "on_success": on_success, "on_error": "errors"}


def outcomes(landscape: Landscape, run_id: str) -> dict[int, list[tuple[str, str | None]]]:
    """source row index → [(terminal outcome, context)] of each of its tokens."""
    with landscape.engine.connect() as conn:
        rows = conn.execute(
            select(tokens.c.row_id, token_outcomes.c.outcome, token_outcomes.c.context_json)
            .join(tokens, tokens.c.token_id == token_outcomes.c.token_id)
            .where(token_outcomes.c.run_id == run_id, token_outcomes.c.is_terminal == 1)
            .order_by(tokens.c.token_id)).all()
    found: dict[int, list[tuple[str, str | None]]] = {}
    for row_id, outcome, context in rows:
        found.setdefault(int(row_id.rsplit(".r", 1)[1]), []).append((outcome, context))
    return found


def failed_state(landscape: Landscape, run_id: str, row_index: int) -> dict[str, Any]:
    exp = explain(landscape, run_id, row_index=row_index)
    (state,) = [s.state for t in exp.tokens for s in t.states if s.state.status.value == "failed"]
    return {"error": json.loads(state.error_json or "null"),
            "context": json.loads(state.context_after or "null")}


# --- row-wise ------------------------------------------------------------------------------------
def test_row_function_results_raises_drops_and_nan_take_their_routes(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("tag")])
    result = run_pipeline(landscape, clock, path)
    assert result.status is RunStatus.COMPLETED
    out = read_jsonl(tmp_path / "out" / "out.jsonl")
    assert [r["id"] for r in out] == [1, 2, 6, 8]
    first = out[0]
    assert first["n"] == 2 and type(first["n"]) is int
    assert first["f"] == 0.75 and first["b"] is False and out[1]["b"] is True
    assert first["missing"] is None and first["none"] is None
    assert first["ts"] == "2024-05-02T12:00:00"
    assert first["nested"] == {"k": [1, 0.5]}
    errors = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "errors.jsonl")}
    assert sorted(errors) == [3, 5, 7]
    assert errors[7]["_error_code"] == "GP-TRANSFORM-007" and "2**53" in errors[7]["_error_reason"]
    assert errors[3]["_error_code"] == "GP-TRANSFORM-008" and errors[3]["_error_node"] == "mine"
    assert errors[3]["_error_reason"] == "ucode.fns:tag raised KeyError: 'no such claim'"
    assert errors[5]["_error_code"] == "GP-TRANSFORM-007"
    assert "bad" in errors[5]["_error_reason"] and "nan" in errors[5]["_error_reason"]
    raised = failed_state(landscape, result.run_id, 2)
    assert raised["context"]["exception"]["type"] == "KeyError"
    assert raised["context"]["exception"]["message"] == "'no such claim'"
    assert raised["context"]["exception"]["raised_at"].startswith("fns.py:")
    assert raised["error"]["exception"] == raised["context"]["exception"]
    assert failed_state(landscape, result.run_id, 4)["context"]["field"] == "bad"
    dropped = outcomes(landscape, result.run_id)[3]
    assert dropped[0][0] == "dropped" and "returned None" in (dropped[0][1] or "")
    assert sweep(landscape, result.run_id).ok


# --- once per chunk ------------------------------------------------------------------------------
def test_dataframe_function_runs_once_per_chunk_and_keeps_row_identity(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("keep", mode="dataframe")])
    result = run_pipeline(landscape, clock, path)
    assert sys.modules["ucode.fns"].CALLS[-2:] == [4, 4]  # two chunks of four rows, two calls
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "out.jsonl")}
    assert sorted(out) == [1, 3, 4, 5, 7, 8]
    assert out[1] == {"id": 1, "x": 1.5, "y": 2, "grp": "a", "flag": True, "double": 2,
                      "ratio": 0.75, "when": "2024-01-02T00:00:00"}
    assert type(out[4]["x"]) is float and type(out[4]["double"]) is int
    assert out[3]["x"] is None and out[3]["ratio"] is None  # a null stays null, never NaN
    found = outcomes(landscape, result.run_id)
    assert found[1][0][0] == "dropped"
    assert "row not in the returned DataFrame" in (found[1][0][1] or "")
    # id 6: 1.0 / 0 is infinity: that row alone is refused, the rest of its chunk goes on.
    (error,) = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert error["id"] == 6 and error["_error_code"] == "GP-TRANSFORM-007"
    assert "ratio" in error["_error_reason"] and "inf" in error["_error_reason"]
    assert sweep(landscape, result.run_id).ok


@pytest.mark.parametrize("function", ["add_rows", "reset"])
def test_rows_added_or_index_changed_fail_the_chunk_naming_the_node(
        landscape: Landscape, clock: ManualClock, tmp_path: Path, function: str) -> None:
    path = project(tmp_path, [python_node(function, node_id="scorer", mode="dataframe")])
    result = run_pipeline(landscape, clock, path)
    assert result.status is RunStatus.COMPLETED
    errors = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert [r["id"] for r in errors] == [r["id"] for r in ROWS]
    assert {r["_error_code"] for r in errors} == {"GP-TRANSFORM-006"}
    assert {r["_error_node"] for r in errors} == {"scorer"}
    expected = "rows were added" if function == "add_rows" else "changed the index"
    assert all(expected in r["_error_reason"] for r in errors), errors[0]
    assert not (tmp_path / "out" / "out.jsonl").read_text()


def test_expands_true_makes_child_tokens_of_an_expanded_token(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("expand", mode="dataframe", expands=True)])
    result = run_pipeline(landscape, clock, path)
    out = read_jsonl(tmp_path / "out" / "out.jsonl")
    assert [(r["id"], r["copy"]) for r in out][:4] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    assert len(out) == len(ROWS) + 2
    found = outcomes(landscape, result.run_id)
    assert [o for o, _ in found[0]] == ["expanded", "completed", "completed", "completed"]
    assert [o for o, _ in found[1]] == ["completed"]  # one output row: the token goes on
    exp = explain(landscape, result.run_id, row_index=0)
    parent, *children = exp.tokens
    assert parent.children == [c.token.token_id for c in children]
    assert all(c.parents == [parent.token.token_id] for c in children)
    assert sweep(landscape, result.run_id).ok and verify(landscape, result.run_id).ok


def test_without_expands_the_same_function_is_refused(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("expand", mode="dataframe")])
    run_pipeline(landscape, clock, path)
    errors = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert len(errors) == 4 and {r["_error_code"] for r in errors} == {"GP-TRANSFORM-006"}
    assert len(read_jsonl(tmp_path / "out" / "out.jsonl")) == 4  # the other chunk is fine


# --- the aggregation batch function --------------------------------------------------------------
def aggregation(function: str) -> dict[str, Any]:
    return {"id": "summarise", "kind": "aggregation", "input": "in0", "trigger": {"count": 4},
            "output": "transform", "on_error": "errors", "on_success": "out",
            "function": {"plugin": "pandas", "options": {"function": f"ucode.fns:{function}"}}}


def test_pandas_batch_function_summarises_each_batch(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [aggregation("summary")], chunk_size=8)
    result = run_pipeline(landscape, clock, path)
    out = read_jsonl(tmp_path / "out" / "out.jsonl")
    assert out == [{"grp": "a", "n": 2, "total": 1.5, "top": 3},
                   {"grp": "b", "n": 2, "total": 6.5, "top": 4},
                   {"grp": "a", "n": 2, "total": 12.75, "top": 7},
                   {"grp": "b", "n": 2, "total": 9.0, "top": 8}]
    assert result.outcome_counts == {"consumed_in_batch": 8, "completed": 4}


def test_nan_in_a_batch_result_fails_that_batch_not_the_run(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [aggregation("nan_summary")], chunk_size=8)
    result = run_pipeline(landscape, clock, path)
    assert result.status is RunStatus.COMPLETED
    errors = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert len(errors) == 8 and "NaN" in errors[0]["_error_reason"]


# --- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("node", "code", "says"), [
    (python_node("nope"), "GP-TRANSFORM-004", "has no attribute 'nope'"),
    ({**python_node("tag"), "options": {"function": "ucode.missing:tag"}}, "GP-TRANSFORM-004",
     "cannot import module 'ucode.missing'"),
    ({**python_node("tag"), "options": {"function": "ucode.fns"}}, "GP-TRANSFORM-004",
     "is not package.module:callable"),
    (python_node("NOT_CALLABLE"), "GP-TRANSFORM-005", "not a callable"),
    (python_node("two_args"), "GP-TRANSFORM-005", "cannot be called with one argument"),
    (python_node("wants_frame"), "GP-TRANSFORM-005", "use mode: dataframe"),
    (python_node("wants_row", mode="dataframe"), "GP-TRANSFORM-005", "use mode: row"),
    (python_node("tag", expands=True), "GP-TRANSFORM-001", "expands: true needs mode: dataframe"),
    (python_node("tag", path=["../nowhere"]), "GP-TRANSFORM-004", "does not exist"),
], ids=["no-callable", "no-module", "no-colon", "not-callable", "two-args", "frame-in-row-mode",
        "row-in-frame-mode", "expands-row-mode", "bad-path"])
def test_validation_reports_the_field_path_and_a_fix(tmp_path: Path, clock: ManualClock,
                                                     node: dict[str, Any], code: str,
                                                     says: str) -> None:
    path = project(tmp_path, [node])
    with pytest.raises(ConfigError) as caught:
        RunContext.build("validate", load_pipeline(path), path.parent, clock)
    assert caught.value.code.code == code
    assert caught.value.message.startswith("nodes[0]: python: options.")
    assert says in caught.value.message, caught.value.message
    assert caught.value.code.fix


def test_a_correct_function_validates_and_options_path_is_searched_first(
        tmp_path: Path, clock: ManualClock) -> None:
    path = project(tmp_path, [python_node("tag", path=["lib"])])
    lib = path.parent / "lib" / "ucode"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "fns.py").write_text("def tag(row):\n    return {**row, 'from_lib': True}\n")
    ctx = RunContext.build("validate", load_pipeline(path), path.parent, clock)
    assert ctx.plugins.transforms["mine"].process({"id": 1}, None).row == {  # type: ignore[arg-type]
        "id": 1, "from_lib": True}
    identity = ctx.plugins.transforms["mine"].user_function()
    assert identity is not None and identity.module_path == "lib/ucode/fns.py"


# --- the code manifest and resume ----------------------------------------------------------------
def test_every_node_records_its_code_identity(landscape: Landscape, clock: ManualClock,
                                              tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("keep", mode="dataframe", on_success="agg_in"),
                              {**aggregation("summary"), "input": "agg_in"}])
    result = run_pipeline(landscape, clock, path)
    with landscape.engine.connect() as conn:
        manifest = {r.node_id: r for r in stored_identities(conn, result.run_id)}
    assert list(manifest) == ["source", "mine", "summarise", "out", "errors"]
    own = version("governance-pipeline")
    for record in manifest.values():
        assert (record.distribution, record.plugin_version) == ("governance-pipeline", own)
    digest = hashlib.sha256((path.parent / "ucode" / "fns.py").read_bytes()).hexdigest()
    mine, summarise = manifest["mine"], manifest["summarise"]
    assert (mine.plugin_name, mine.function_name, mine.source_sha256) == (
        "python", "ucode.fns:keep", digest)
    assert (summarise.plugin_name, summarise.function_name, summarise.source_sha256) == (
        "pandas", "ucode.fns:summary", digest)
    assert mine.module_path == "ucode/fns.py" and mine.function_distribution is None
    assert manifest["source"].function_name is None
    assert manifest["source"].plugin_class.endswith(":JsonlSource")
    exp = explain(landscape, result.run_id, row_index=0).as_dict()
    shown = {n["node_id"]: n for n in exp["code"]["nodes"]}
    assert shown["mine"]["function"] == "ucode.fns:keep"
    assert shown["mine"]["source_sha256"] == digest
    assert exp["code"]["manifest_hash"] == manifest_hash(list(manifest.values()))


def test_a_function_from_an_installed_distribution_names_it(tmp_path: Path) -> None:
    path = project(tmp_path, [{**python_node("tag"), "options": {"function": "yaml:safe_dump"}}])
    (identity,) = [r for r in current_identities("run_x", load_pipeline(path), path.parent, "now")
                   if r.node_id == "mine"]
    assert (identity.function_distribution, identity.function_version) == (
        "PyYAML", version("PyYAML"))
    import yaml
    assert identity.source_sha256 == hashlib.sha256(
        Path(yaml.__file__).read_bytes()).hexdigest()


def _interrupted(landscape: Landscape, clock: ManualClock, path: Path) -> str:
    """A run whose first chunk is committed and which then failed."""
    runner = start(landscape, clock, path)
    records = list(runner.ctx.plugins.source.read(0))
    runner.process_chunk(0, records[:4])
    runner.fail(RunStatus.FAILED, TerminationReason.SYSTEM_FAILURE, {"title": "test stop"})
    return runner.run_id


def test_resume_refuses_when_a_function_module_changed_and_resumes_once_restored(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("keep", node_id="scorer", mode="dataframe")])
    run_id = _interrupted(landscape, clock, path)
    module = path.parent / "ucode" / "fns.py"
    original = module.read_text()
    module.write_text(original + "\n# tuned the thresholds\n")
    with pytest.raises(CodeChangedError) as caught:
        resume(landscape, run_id, clock=clock)
    err = caught.value
    assert err.code.code == "GP-CODE-001" and err.exit_code == 2
    assert "'scorer'" in err.message and "source_sha256 of ucode.fns:keep" in err.message
    assert err.details["nodes"] == ["scorer"]
    assert err.details["changes"][0]["stored"] == hashlib.sha256(original.encode()).hexdigest()
    refused = get_run(landscape, run_id)  # nothing of the refused resume was recorded
    assert (refused.status, refused.resume_count) == (RunStatus.FAILED, 0)
    module.write_text(original)
    result = resume(landscape, run_id, clock=clock).execute()
    assert result.status is RunStatus.COMPLETED
    assert len(read_jsonl(tmp_path / "out" / "out.jsonl")) == 6
    assert verify(landscape, run_id).ok


def test_resume_with_unchanged_code_matches_an_uninterrupted_run(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("keep", mode="dataframe")])
    run_id = _interrupted(landscape, clock, path)
    assert resume(landscape, run_id, clock=clock).execute().status is RunStatus.COMPLETED
    resumed = (tmp_path / "out" / "out.jsonl").read_bytes()
    (tmp_path / "out" / "out.jsonl").unlink()
    (tmp_path / "out" / "errors.jsonl").unlink()
    run_pipeline(landscape, clock, path)
    assert (tmp_path / "out" / "out.jsonl").read_bytes() == resumed


def test_a_plugin_from_another_distribution_version_is_a_code_change(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    """The stored plugin_version is what a fresh identity is compared with, field by field."""
    path = project(tmp_path, [python_node("keep", mode="dataframe")])
    run_id = _interrupted(landscape, clock, path)
    current = current_identities(run_id, load_pipeline(path), path.parent, "now")
    from dataclasses import replace

    from governance_pipeline.engine.code_identity import require_unchanged
    bumped = [replace(r, plugin_version="99.0") if r.node_id == "out" else r for r in current]
    with landscape.engine.connect() as conn:
        require_unchanged(conn, run_id, current)  # the twin: unchanged code passes
        with pytest.raises(CodeChangedError, match="node 'out'.*plugin_version"):
            require_unchanged(conn, run_id, bumped)


def test_cli_validate_reports_a_broken_function_with_its_fix(tmp_path: Path) -> None:
    """Through the CLI: the error code, the field path and the fix on stderr, exit 2; the
    correct twin validates and names the function and its source hash."""
    import subprocess
    from governance_pipeline_tests.test_engine_run import CLI

    env = {"PATH": "/usr/bin:/bin", "GOVERNANCE_HOME": str(tmp_path / "h"),
           "GOVERNANCE_OUTPUT_ROOTS": str(tmp_path)}  # the test projects write beside them
    path = project(tmp_path / "broken", [python_node("nope")])
    proc = subprocess.run([str(CLI), "validate", str(path)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error GP-TRANSFORM-004: nodes[0]: python: options.function:" in proc.stderr
    assert "fix: Give options.function as package.module:callable" in proc.stderr
    assert "Traceback" not in proc.stderr
    good = project(tmp_path / "good", [python_node("tag")])
    proc = subprocess.run([str(CLI), "validate", str(good), "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    code = {n["node_id"]: n for n in json.loads(proc.stdout)["code"]}
    assert code["mine"]["function"] == "ucode.fns:tag"
    assert code["mine"]["source_sha256"] == hashlib.sha256(
        (good.parent / "ucode" / "fns.py").read_bytes()).hexdigest()


def test_a_run_recorded_without_a_manifest_resumes_without_the_check(
        landscape: Landscape, tmp_path: Path) -> None:
    """Runs recorded before code identities existed have nothing to compare against."""
    from governance_pipeline.engine.code_identity import require_unchanged
    from governance_pipeline.landscape.recorder import Recorder
    from governance_pipeline_tests.synthetic import record_synthetic_run

    run = record_synthetic_run(Recorder(landscape))
    path = project(tmp_path, [python_node("tag")])
    with landscape.engine.connect() as conn:
        assert stored_identities(conn, run.run_id) == []
        require_unchanged(conn, run.run_id,
                          current_identities(run.run_id, load_pipeline(path), path.parent, ""))


USER_CODE = textwrap.dedent(USER_CODE)


def test_an_entry_point_plugin_records_its_own_distribution_and_version(tmp_path: Path) -> None:
    """A third-party distribution (real metadata on PYTHONPATH) registering a transform."""
    import os
    import subprocess
    from governance_pipeline_tests.test_engine_run import CLI

    site = tmp_path / "site"
    (site / "acme_plugins").mkdir(parents=True)
    (site / "acme_plugins" / "__init__.py").write_text(textwrap.dedent('''
        from governance_pipeline.engine.plugin_api import Transform, TransformResult

        class Shout(Transform):
            name = "shout"

            def process(self, row, ctx):
                return TransformResult.ok({k: v.upper() if isinstance(v, str) else v
                                           for k, v in row.items()})
        '''))
    info = site / "acme_plugins-2.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 2.3.1\n")
    (info / "entry_points.txt").write_text(
        "[governance_pipeline.transforms]\nshout = acme_plugins:Shout\n")
    path = project(tmp_path, [{"id": "loud", "kind": "transform", "plugin": "shout",
                               "input": "in0", "on_success": "out"}])
    env = {**os.environ, "PYTHONPATH": str(site), "GOVERNANCE_HOME": str(tmp_path / "h"),
           "GOVERNANCE_OUTPUT_ROOTS": str(tmp_path)}  # the test project writes beside it
    proc = subprocess.run([str(CLI), "validate", str(path), "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    code = {n["node_id"]: n for n in json.loads(proc.stdout)["code"]}
    assert (code["loud"]["plugin"], code["loud"]["distribution"], code["loud"]["plugin_version"]) \
        == ("shout", "acme-plugins", "2.3.1")
    assert code["loud"]["plugin_class"] == "acme_plugins:Shout"
    assert code["out"]["distribution"] == "governance-pipeline"

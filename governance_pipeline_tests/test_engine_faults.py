"""Faults injected into real runs: a sink that cannot write or finalize, an audit database that
refuses a chunk's transaction, resumes that must be refused, abandoned runs, and memory that must
not grow with the input.

Faults are real: a directory where a part or output file must go, a regular file where a
directory must go, a trigger in the audit database. Nothing is mocked.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import ConfigError, GovernanceError
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.resume import DEFAULT_STALE_AFTER_S, resume, sweep_abandoned
from governance_pipeline.engine.runner import Runner, SinkWriteError
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.test_engine_run import (
    CLAIMS,
    EXAMPLE_DIR,
    assert_clean,
    cli,
    jsonl_sinks,
    query,
    read_jsonl,
    run_pipeline,
    source_doc,
    start,
    write_pipeline,
    write_rows,
)

Doc = dict[str, Any]


def split_doc(chunk_size: int = 4) -> Doc:
    """Rows with ``amount < 50`` to ``out``, the others to ``big``."""
    return {"name": "split", "chunk_size": chunk_size,
            "source": source_doc({"id": "int", "amount": "float"}),
            "nodes": [{"id": "g", "kind": "gate", "input": "raw",
                       "routes": [{"when": "amount >= 50", "to": "big"}], "default": "out"}],
            "sinks": jsonl_sinks("out", "big", "quarantine")}


def split_rows(tmp_path: Path, n: int = 12) -> list[dict[str, Any]]:
    rows = [{"id": i, "amount": (i % 4) * 20.0} for i in range(n)]  # ids ≡ 3 (mod 4) are big
    write_rows(tmp_path / "in.jsonl", rows)
    return rows


def run_status(landscape: Landscape, run_id: str) -> tuple[str, str | None]:
    [row] = query(landscape, "SELECT status, termination_reason FROM runs WHERE run_id = :run",
                  run=run_id)
    return row.status, row.termination_reason


def states_at(landscape: Landscape, run_id: str, node: str) -> dict[int, list[str]]:
    """row index → statuses of the node states at ``node`` of that row's tokens."""
    found: dict[int, list[str]] = {}
    for r in query(landscape, "SELECT r.row_index, s.status FROM node_states s "
                              "JOIN tokens t ON t.token_id = s.token_id "
                              "JOIN rows r ON r.row_id = t.row_id "
                              "WHERE s.run_id = :run AND s.node_id = :node", run=run_id,
                   node=node):
        found.setdefault(r.row_index, []).append(r.status)
    return found


def outcome_of_rows(landscape: Landscape, run_id: str) -> dict[int, tuple[str, str | None]]:
    return {r.row_index: (r.outcome, r.sink_name) for r in query(
        landscape, "SELECT r.row_index, o.outcome, o.sink_name FROM token_outcomes o "
                   "JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id "
                   "WHERE o.run_id = :run AND o.is_terminal = 1", run=run_id)}


# --- a sink that cannot write ---------------------------------------------------------------------
def test_a_failed_part_write_fails_its_states_and_the_run_and_resume_finishes(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = split_rows(tmp_path)
    path = write_pipeline(tmp_path, split_doc())
    runner = start(landscape, clock, path)
    blocker = tmp_path / "out" / "out.jsonl.parts" / "chunk-000001.jsonl"
    blocker.mkdir(parents=True)  # a directory where the part file of chunk 1 must go
    with pytest.raises(SinkWriteError) as info:
        runner.execute()
    assert info.value.code.code == "GP-RUN-001"
    assert "sink out: " in info.value.message and info.value.details["chunk"] == 1
    run_id = runner.run_id
    assert run_status(landscape, run_id) == ("failed", "system_failure")

    failed_rows = [r["id"] for r in rows[4:8] if r["amount"] < 50]
    states = states_at(landscape, run_id, "out")
    for index in failed_rows:
        assert states[index] == ["failed"], (index, states)  # never completed
    outcomes = outcome_of_rows(landscape, run_id)
    assert {i: outcomes[i] for i in failed_rows} == {i: ("failed", None) for i in failed_rows}
    assert outcomes[7] == ("routed", "big")  # the other sink of the chunk wrote its part
    assert max(outcomes) == 7  # the run stopped after the failed chunk
    [error] = {r.error_json for r in query(
        landscape, "SELECT error_json FROM node_states WHERE run_id = :run AND node_id = 'out' "
                   "AND status = 'failed'", run=run_id)}
    assert json.loads(error)["code"] == "sink_write_failed"
    assert query(landscape, "SELECT status FROM operations WHERE run_id = :run AND "
                            "node_id = 'out' AND input_ref = 'chunk-000001'",
                 run=run_id) == [("failed",)]
    assert sweep(landscape, run_id).findings == []

    blocker.rmdir()  # the cause is fixed
    result = resume(landscape, run_id, clock=clock).execute()
    assert result.run_id == run_id and result.status.value == "completed"
    out = [r["id"] for r in read_jsonl(tmp_path / "out" / "out.jsonl")]
    big = [r["id"] for r in read_jsonl(tmp_path / "out" / "big.jsonl")]
    # No duplicates, nothing else missing: every row is written once, except the rows of the
    # failed part, which stay recorded as failed (GP-RUN-001: "rows of the failed part are
    # recorded as failed with the reason").
    assert out == [r["id"] for r in rows if r["amount"] < 50 and r["id"] not in failed_rows]
    assert big == [r["id"] for r in rows if r["amount"] >= 50]
    assert result.outcome_counts == {"completed": len(out), "routed": len(big),
                                     "failed": len(failed_rows)}
    assert len(out) + len(big) + len(failed_rows) == len(rows)
    assert query(landscape, "SELECT resume_count FROM runs WHERE run_id = :run",
                 run=run_id) == [(1,)]
    assert_clean(landscape, result)
    assert verify(landscape, run_id).ok


def test_run_exits_1_on_a_sink_failure_and_resume_completes_the_run(db_url: str,
                                                                    tmp_path: Path) -> None:
    rows = split_rows(tmp_path)
    doc = split_doc()
    doc["sinks"]["out"]["options"]["path"] = "blocked/out.jsonl"
    path = write_pipeline(tmp_path, doc)
    (tmp_path / "blocked").write_text("a file where the sink's directory must be")
    home = tmp_path / "home"

    human = cli(home, db_url, "run", str(path))
    assert human.returncode == 1, human.stderr + human.stdout
    assert any(line.startswith("error GP-RUN-001: sink out: ")
               for line in human.stderr.splitlines()), human.stderr
    failed = cli(home, db_url, "run", str(path), "--json")
    assert failed.returncode == 1
    problem = json.loads(failed.stdout)
    assert problem["code"] == "GP-RUN-001" and problem["exit_code"] == 1
    run_id = problem["details"]["run_id"]

    (tmp_path / "blocked").unlink()
    resumed = cli(home, db_url, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    doc_out = json.loads(resumed.stdout)
    assert (doc_out["run_id"], doc_out["status"]) == (run_id, "completed")
    # Chunk 0's rows for `out` failed with their part. How many later chunks were attempted
    # before the run stopped depends on the executor; whatever was not failed is written once.
    out_ids = [r["id"] for r in rows if r["amount"] < 50]
    written = [r["id"] for r in read_jsonl(Path(doc_out["sinks"]["out"]["path"]))]
    assert written == sorted(set(written)) and set(written) <= set(out_ids)
    assert not set(written) & {r["id"] for r in rows[:4]}
    assert doc_out["counts"]["failed"] == len(out_ids) - len(written)
    assert doc_out["sinks"]["out"]["rows"] == len(written)
    assert [r["id"] for r in read_jsonl(Path(doc_out["sinks"]["big"]["path"]))] == \
        [r["id"] for r in rows if r["amount"] >= 50]
    assert cli(home, db_url, "sweep", run_id).returncode == 0
    assert cli(home, db_url, "resume", run_id).returncode == 2  # completed: final


def test_a_failed_finalize_leaves_the_parts_and_resume_produces_the_same_output(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = split_rows(tmp_path)
    write_rows(tmp_path / "reference" / "in.jsonl", rows)
    reference = run_pipeline(landscape, clock, write_pipeline(tmp_path / "reference", split_doc()))

    path = write_pipeline(tmp_path, split_doc())
    runner = start(landscape, clock, path)
    final = tmp_path / "out" / "big.jsonl"
    final.mkdir(parents=True)  # the output file cannot be put in place
    with pytest.raises(GovernanceError) as info:
        runner.execute()
    assert info.value.code.code == "GP-SINK-002" and "finalize" in info.value.message
    assert run_status(landscape, runner.run_id) == ("failed", "system_failure")
    assert query(landscape, "SELECT count(*) FROM artifacts WHERE run_id = :run",
                 run=runner.run_id) == [(0,)]
    assert (tmp_path / "out" / "big.jsonl.parts").is_dir()
    # Every token reached its sink: the chunks are complete, only the promotion failed.
    assert query(landscape, "SELECT count(*) FROM node_states WHERE run_id = :run AND "
                            "status <> 'completed'", run=runner.run_id) == [(0,)]

    final.rmdir()
    result = resume(landscape, runner.run_id, clock=clock).execute()
    assert result.status.value == "completed"
    assert result.outcome_counts == reference.outcome_counts
    for sink in ("out", "big", "quarantine"):
        assert (tmp_path / "out" / f"{sink}.jsonl").read_bytes() == \
            (tmp_path / "reference" / "out" / f"{sink}.jsonl").read_bytes()
    assert {s.sink: s.sha256 for s in result.sinks} == \
        {s.sink: s.sha256 for s in reference.sinks}
    assert_clean(landscape, result)


# --- the audit database refuses a chunk -----------------------------------------------------------
def inject_checkpoint_failure(landscape: Landscape, chunk_index: int) -> None:
    if landscape.engine.dialect.name == "sqlite":
        statements = [f"CREATE TRIGGER gp_inject BEFORE INSERT ON checkpoints "
                      f"WHEN NEW.chunk_index = {chunk_index} "
                      f"BEGIN SELECT RAISE(ABORT, 'injected'); END"]
    else:
        statements = [
            f"CREATE FUNCTION gp_inject() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.chunk_index = {chunk_index} THEN RAISE EXCEPTION 'injected'; END IF; "
            f"RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER gp_inject BEFORE INSERT ON checkpoints FOR EACH ROW "
            "EXECUTE FUNCTION gp_inject()"]
    with landscape.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def remove_checkpoint_failure(landscape: Landscape) -> None:
    with landscape.engine.begin() as conn:
        if landscape.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER gp_inject"))
        else:
            conn.execute(text("DROP TRIGGER gp_inject ON checkpoints"))
            conn.execute(text("DROP FUNCTION gp_inject()"))


def triage_doc(chunk_size: int) -> Doc:
    doc: Doc = yaml.safe_load((EXAMPLE_DIR / "claims_triage.yaml").read_text())
    doc["chunk_size"] = chunk_size
    doc["source"]["options"]["path"] = str(CLAIMS)
    return doc


def test_a_database_error_mid_run_records_nothing_of_the_chunk_and_resume_matches(
        landscape: Landscape, clock: ManualClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = 50
    reference_home = tmp_path / "reference"
    reference = run_pipeline(landscape, clock, write_pipeline(tmp_path / "ref", triage_doc(chunk)),
                             env={"GOVERNANCE_HOME": str(reference_home)})
    assert reference.status.value == "completed"

    home = tmp_path / "home"
    monkeypatch.setenv("GOVERNANCE_HOME", str(home))  # resume reads the pipeline with os.environ
    path = write_pipeline(tmp_path / "faulty", triage_doc(chunk))
    inject_checkpoint_failure(landscape, chunk_index=1)
    runner = start(landscape, clock, path)
    with pytest.raises(GovernanceError):
        runner.execute()
    run_id = runner.run_id
    assert run_status(landscape, run_id) == ("failed", "system_failure")
    assert [r[0] for r in query(landscape, "SELECT chunk_index FROM checkpoints WHERE "
                                           "run_id = :run", run=run_id)] == [0]
    indices = [r[0] for r in query(landscape, "SELECT row_index FROM rows WHERE run_id = :run",
                                   run=run_id)]
    assert sorted(indices) == list(range(chunk))  # chunk 1 left no row, token or state
    assert query(landscape, "SELECT count(*) FROM tokens t JOIN rows r ON r.row_id = t.row_id "
                            "WHERE t.run_id = :run AND r.row_index >= :n", run=run_id,
                 n=chunk) == [(0,)]
    assert query(landscape, "SELECT count(*) FROM operations WHERE run_id = :run AND "
                            "input_ref = 'chunk-000001'", run=run_id) == [(0,)]
    assert verify(landscape, run_id).ok  # the refused transaction left no ledger entry either

    remove_checkpoint_failure(landscape)
    result = resume(landscape, run_id, clock=clock).execute()
    assert result.status.value == "completed"
    assert result.outcome_counts == reference.outcome_counts
    for name in ("standard", "review_summary", "rejected", "errors", "quarantine"):
        suffix = "csv" if name in ("standard", "review_summary") else "jsonl"
        produced = home / "out" / "claims_triage" / f"{name}.{suffix}"
        expected = reference_home / "out" / "claims_triage" / f"{name}.{suffix}"
        assert produced.read_bytes() == expected.read_bytes(), name
    assert not list((home / "out" / "claims_triage").glob("*.parts"))
    assert_clean(landscape, result)
    assert verify(landscape, run_id).ok


# --- resume refusals ------------------------------------------------------------------------------
def failed_run(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> Runner:
    split_rows(tmp_path)
    inject_checkpoint_failure(landscape, chunk_index=1)
    runner = start(landscape, clock, write_pipeline(tmp_path, split_doc()))
    with pytest.raises(GovernanceError):
        runner.execute()
    remove_checkpoint_failure(landscape)
    return runner


def test_resume_is_refused_when_the_pipeline_changed(landscape: Landscape, clock: ManualClock,
                                                     tmp_path: Path) -> None:
    runner = failed_run(landscape, clock, tmp_path)
    path = tmp_path / "pipeline.yaml"
    original = path.read_text()
    for changed in (original.replace("amount >= 50", "amount >= 40"),
                    original.replace("chunk_size: 4", "chunk_size: 5"),
                    original + "description: the same pipeline, described\n"):
        assert changed != original
        path.write_text(changed)
        with pytest.raises(ConfigError) as info:
            resume(landscape, runner.run_id, clock=clock)
        assert info.value.code.code == "GP-RUN-003"
        assert info.value.details["stored_hash"] != info.value.details["current_hash"]
        assert run_status(landscape, runner.run_id) == ("failed", "system_failure")
    path.unlink()
    with pytest.raises(ConfigError) as info:
        resume(landscape, runner.run_id, clock=clock)
    assert info.value.code.code == "GP-RUN-003" and "missing" in info.value.message
    path.write_text(original)
    assert resume(landscape, runner.run_id, clock=clock).execute().status.value == "completed"


def test_resume_is_refused_for_a_completed_run(landscape: Landscape, clock: ManualClock,
                                               tmp_path: Path) -> None:
    split_rows(tmp_path)
    result = run_pipeline(landscape, clock, write_pipeline(tmp_path, split_doc()))
    with pytest.raises(ConfigError) as info:
        resume(landscape, result.run_id, clock=clock)
    assert info.value.code.code == "GP-RUN-002"
    assert info.value.details == {"status": "completed"}
    assert query(landscape, "SELECT resume_count FROM runs WHERE run_id = :run",
                 run=result.run_id) == [(0,)]


def test_resume_is_refused_for_a_live_run(landscape: Landscape, clock: ManualClock,
                                          tmp_path: Path) -> None:
    split_rows(tmp_path)
    # Started here and not finished: this live process is its worker, its heartbeat is fresh.
    runner = start(landscape, clock, write_pipeline(tmp_path, split_doc()))
    with pytest.raises(ConfigError) as info:
        resume(landscape, runner.run_id, clock=clock)
    assert info.value.code.code == "GP-RUN-002" and "still running" in info.value.message
    assert run_status(landscape, runner.run_id) == ("running", None)
    # Its own worker is alive here: a stale heartbeat alone does not make it abandoned.
    clock.advance(DEFAULT_STALE_AFTER_S * 10)
    with pytest.raises(ConfigError):
        resume(landscape, runner.run_id, clock=clock)
    assert sweep_abandoned(landscape) == []


# --- abandoned runs -------------------------------------------------------------------------------
def test_a_run_whose_heartbeat_goes_stale_is_abandoned_and_resumable(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = split_rows(tmp_path)
    runner = start(landscape, clock, write_pipeline(tmp_path, split_doc()))
    run_id = runner.run_id
    # The worker runs on another host: only its heartbeat can tell whether it is alive.
    Recorder(landscape).heartbeat(run_id, "worker-7.elsewhere.example:4242")
    clock.advance(DEFAULT_STALE_AFTER_S - 1)
    assert sweep_abandoned(landscape) == []
    assert run_status(landscape, run_id) == ("running", None)
    clock.advance(2)
    assert sweep_abandoned(landscape) == [run_id]
    assert run_status(landscape, run_id) == ("abandoned", "abandoned")
    assert sweep_abandoned(landscape) == []  # found once
    events = [r[0] for r in query(landscape, "SELECT type FROM events WHERE type LIKE 'run.%' "
                                             "ORDER BY timestamp, event_id")]
    assert "run.abandoned" in events

    result = resume(landscape, run_id, clock=clock).execute()
    assert result.status.value == "completed"
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "out.jsonl")] + \
        [r["id"] for r in read_jsonl(tmp_path / "out" / "big.jsonl")] == \
        [r["id"] for r in rows if r["amount"] < 50] + [r["id"] for r in rows if r["amount"] >= 50]
    assert_clean(landscape, result)


def test_a_run_whose_worker_process_is_gone_is_abandoned_at_once(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    split_rows(tmp_path)
    runner = start(landscape, clock, write_pipeline(tmp_path, split_doc()))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # exited and reaped: its pid names no process
    Recorder(landscape).heartbeat(runner.run_id, f"{socket.gethostname()}:{gone.pid}")
    assert sweep_abandoned(landscape) == [runner.run_id]  # the heartbeat is fresh: no matter
    assert run_status(landscape, runner.run_id) == ("abandoned", "abandoned")


def test_resume_takes_over_a_running_run_whose_worker_is_gone(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = split_rows(tmp_path)
    runner = start(landscape, clock, write_pipeline(tmp_path, split_doc()))
    runner.run_chunks()  # every chunk done, then the worker "dies" before finalizing
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    Recorder(landscape).heartbeat(runner.run_id, f"{socket.gethostname()}:{gone.pid}")
    result = resume(landscape, runner.run_id, clock=clock).execute()
    assert result.status.value == "completed"
    assert sum(s.row_count for s in result.sinks) == len(rows)
    events = [r[0] for r in query(landscape, "SELECT type FROM events WHERE scope = :run "
                                             "ORDER BY timestamp, event_id", run=runner.run_id)]
    assert events.index("run.abandoned") < events.index("run.resumed") < \
        events.index("run.completed")


# --- memory ---------------------------------------------------------------------------------------
def write_claims(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("claim_id,customer,region,amount,description\n")
        for i in range(rows):
            fh.write(f"{i},customer-{rng.randrange(5000):05d},"
                     f"{rng.choice(['north', 'south', 'east'])},"
                     f"{rng.lognormvariate(7, 1.4):.2f},water damage and theft\n")


@pytest.mark.slow
def test_memory_is_bounded_by_the_chunk_size_not_the_input(tmp_path: Path) -> None:
    """tracemalloc peak of a whole run, at 5k and at 50k rows: flat, as chunking promises."""
    peaks: dict[int, int] = {}
    clock = ManualClock()
    landscape = Landscape.open(f"sqlite:///{tmp_path / 'landscape.db'}", tmp_path / "keys",
                               clock=clock)
    try:
        for rows in (5_000, 50_000):
            work = tmp_path / f"r{rows}"
            work.mkdir()
            write_claims(work / "claims.csv", rows)
            doc = yaml.safe_load((EXAMPLE_DIR / "claims_linear.yaml").read_text())
            doc["source"]["options"]["path"] = str(work / "claims.csv")
            path = write_pipeline(work, doc)
            config = load_pipeline(path, env={"GOVERNANCE_HOME": str(work)})
            runner = Runner.start(landscape, config, base_dir=work, pipeline_path=path,
                                  clock=clock)
            tracemalloc.start()
            try:
                result = runner.execute()
                peaks[rows] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert result.status.value == "completed"
            assert sum(s.row_count for s in result.sinks) == rows
            print(f"{rows:>6} rows, chunk_size {config.chunk_size}: "
                  f"traced peak {peaks[rows] / 1e6:.1f} MB")
    finally:
        landscape.dispose()
    assert peaks[50_000] < 1.5 * peaks[5_000] + 2_000_000, peaks

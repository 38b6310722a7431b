"""``governance-pipeline run`` and ``resume`` are Dagster runs on the local instance.

The installed console script runs as a real subprocess, with ``DAGSTER_HOME`` unset so the
default (``$GOVERNANCE_HOME/dagster``) is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRunStatus

from governance_pipeline.contracts.enums import RunStatus
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.orchestration.lifecycle import TAG_RUN_ID
from governance_pipeline_tests.orchestration_fixtures import Home, assert_clean, digest

CLI = Path(sys.executable).with_name("governance-pipeline")


def cli(h: Home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_HOME", "GOVERNANCE_DEBUG", "GOVERNANCE_CRASH_AT")}
    env.update(GOVERNANCE_HOME=str(h.home), GOVERNANCE_DB_URL=h.db_url)
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, cwd=h.root)


def test_run_is_a_dagster_run_and_a_failed_one_resumes_with_the_same_report_shape(
        tmp_path: Path, db_url: str) -> None:
    h = Home(tmp_path, db_url)
    h.home.mkdir()
    pipeline = h.triage()
    blocker = h.home / "out" / "claims_triage" / "rejected.jsonl"
    blocker.mkdir(parents=True)  # the close step cannot put the output there

    failed = cli(h, "run", str(pipeline), "--json")
    assert failed.returncode == 1, failed.stderr[-3000:]
    problem = json.loads(failed.stdout)
    assert problem["code"] == "GP-SINK-002" and problem["exit_code"] == 1
    run_id = problem["details"]["run_id"]
    dagster_run_id = problem["details"]["dagster_run_id"]

    blocker.rmdir()
    resumed = cli(h, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    doc = json.loads(resumed.stdout)
    assert set(doc) == {"run_id", "status", "termination_reason", "counts", "sinks"}
    assert (doc["run_id"], doc["status"], doc["termination_reason"]) == (
        run_id, "completed", "completed")
    assert doc["counts"]["completed"] > 0
    for sink in doc["sinks"].values():
        assert set(sink) == {"path", "rows", "sha256", "size_bytes"}
        assert digest(Path(sink["path"]).read_bytes()) == sink["sha256"]

    # Both invocations are runs of the local instance under $GOVERNANCE_HOME/dagster, which the
    # command line set up with telemetry off.
    dagster_home = h.home / "dagster"
    assert yaml.safe_load((dagster_home / "dagster.yaml").read_text())["telemetry"] == {
        "enabled": False}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
    assert runs[dagster_run_id].status is DagsterRunStatus.FAILURE
    (second,) = [r for r in runs.values() if r.run_id != dagster_run_id]
    assert second.status is DagsterRunStatus.SUCCESS and second.job_name == "claims_triage"
    assert {r.tags[TAG_RUN_ID] for r in runs.values()} == {run_id}
    ls = h.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.dagster_run_id == second.run_id and run.resume_count == 1
    finally:
        ls.dispose()


def test_run_reports_progress_on_stderr_and_resume_refuses_unknown_or_finished_runs(
        tmp_path: Path) -> None:
    h = Home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}")
    h.home.mkdir()
    pipeline = h.triage()
    done = cli(h, "run", str(pipeline))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chunk 4: " in done.stderr and "final step: " in done.stderr
    run_id = done.stdout.split()[1].rstrip(":")
    ls = h.landscape()
    try:
        assert get_run(ls, run_id).status is RunStatus.COMPLETED
    finally:
        ls.dispose()
    assert f"run {run_id}: completed (completed)" in done.stdout

    unknown = cli(h, "resume", "run_does_not_exist", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["code"] == "GP-INPUT-001"
    finished = cli(h, "resume", run_id, "--json")
    assert finished.returncode == 2 and json.loads(finished.stdout)["code"] == "GP-RUN-002"


def test_an_unknown_executor_is_a_usage_error(tmp_path: Path) -> None:
    h = Home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}")
    h.home.mkdir()
    result = cli(h, "run", str(h.triage()), "--executor", "threads", "--json")
    assert result.returncode == 2 and json.loads(result.stdout)["code"] == "GP-INPUT-002"

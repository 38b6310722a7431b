"""kill -9 in the chunk that an enforced policy stops, then resume: the stop happens again at
the same row, with one incident, and the published output is byte-identical to a run that was
never interrupted. Real processes: the command line, killed by the engine's crash point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from governance_pipeline.contracts.enums import RunStatus
from governance_pipeline_tests.policy_fixtures import PLANTED, REPO
from governance_pipeline_tests.test_crash_resume import KILLED, Case, describe, sqlite_url
from governance_pipeline_tests.test_cli import sql

pytestmark = pytest.mark.slow

FIRST = min(PLANTED)
OUTPUT = Path("output") / "claims_screening" / "published_notes.csv"


def _home(root: Path) -> Case:
    for part in ("pipelines", "policies", "data"):
        shutil.copytree(REPO / "examples" / part, root / "examples" / part)
    return Case(root / "home", sqlite_url(root / "home"))


def _pipeline(case: Case) -> str:
    return str(case.home.parent / "examples" / "pipelines" / "claims_screening.yaml")


def test_a_kill_in_the_stopping_chunk_resumes_to_the_same_stop(tmp_path: Path) -> None:
    baseline = _home(tmp_path / "baseline")
    stopped = baseline.run("cli", "run", _pipeline(baseline))
    assert stopped.returncode == 3, describe(stopped)
    expected = (baseline.home / OUTPUT).read_bytes()

    case = _home(tmp_path / "crash")
    # The 2nd chunk commit is the stopping chunk's (chunk 1 holds row 37): its sink part is
    # durable, its audit transaction — the stop, the incident — is not.
    run = case.crash("cli", "run", _pipeline(case), crash_at="chunk.before_commit:2")
    assert run.status is RunStatus.RUNNING
    assert sql(case.db_url, "SELECT count(*) FROM incidents") == [(0,)]

    resumed = case.run("cli", "resume", run.run_id)
    assert resumed.returncode == 3, describe(resumed)
    problem = json.loads(resumed.stdout)
    assert problem["code"] == "GP-POLICY-001" and problem["details"]["row_index"] == FIRST
    assert (case.home / OUTPUT).read_bytes() == expected
    assert sql(case.db_url, "SELECT count(*), min(run_id) FROM incidents") == [(1, run.run_id)]
    assert sql(case.db_url, "SELECT row_index FROM inflection_points") == [(FIRST,)]
    verified = case.run("cli", "verify", run.run_id)
    assert verified.returncode == 0, describe(verified)


@pytest.mark.parametrize("crash_at", ["chunk.committed:2", "sink.finalized:1"])
def test_a_kill_after_the_stop_is_committed_publishes_on_resume(tmp_path: Path,
                                                                crash_at: str) -> None:
    """Killed after the stop's commit, before (or while) the rows written before it were
    promoted: the run is already failed_policy; ``resume`` publishes them and stays stopped."""
    baseline = _home(tmp_path / "baseline")
    assert baseline.run("cli", "run", _pipeline(baseline)).returncode == 3
    expected = (baseline.home / OUTPUT).read_bytes()

    case = _home(tmp_path / "crash")
    killed = case.run("cli", "run", _pipeline(case), crash_at=crash_at)
    assert killed.returncode == KILLED, describe(killed)
    run_id, status = sql(case.db_url, "SELECT run_id, status FROM runs")[0]
    assert status == "failed_policy"
    assert sql(case.db_url, "SELECT count(*) FROM artifacts") == [(0,)]

    published = case.run("cli", "resume", run_id)
    assert published.returncode == 3, describe(published)
    assert json.loads(published.stdout)["sinks"]["published"]["rows"] == FIRST
    assert (case.home / OUTPUT).read_bytes() == expected
    again = case.run("cli", "resume", run_id)
    assert again.returncode == 2 and "not resumed" in again.stdout, describe(again)
    verified = case.run("cli", "verify", run_id)
    assert verified.returncode == 0, describe(verified)


def test_the_baseline_is_not_a_run_that_never_stops(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The must-differ twin: with the kill switch the same input publishes every note, so the
    byte comparison above is a comparison with the stopped output, not with any output."""
    case = _home(tmp_path)
    first = case.run("cli", "run", _pipeline(case))
    assert first.returncode == 3, describe(first)
    stopped = (case.home / OUTPUT).read_bytes()
    shutil.rmtree(case.home / "output")
    monkeypatch.setenv("GOVERNANCE_POLICY_KILL_SWITCH", "1")  # Case.env copies os.environ
    advisory = case.run("cli", "run", _pipeline(case))
    assert advisory.returncode == 0, describe(advisory)
    assert (case.home / OUTPUT).read_bytes() != stopped

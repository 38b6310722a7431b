"""Pipeline jobs on a real Dagster instance, against a real Landscape on SQLite and PostgreSQL.

A job run must write the audit trail and the outputs the engine writes when called directly; a
failed job run re-executed from failure must continue the same Landscape run from its
checkpoints, resume it exactly once, and leave no duplicate rows.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance

from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import REGISTRY
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.lifecycle import run_result
from governance_pipeline_tests.orchestration_fixtures import (
    Home,
    assert_clean,
    digest,
    event_types,
    instance,  # noqa: F401 - fixture
    landscape_run_id,
    make_home,
    outputs,
    run_disturbed,
    run_job,
    step_failures,
)

_ = instance


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    return make_home(tmp_path, db_url, monkeypatch)


@dataclass(frozen=True)
class Baseline:
    outputs: dict[str, bytes]
    counts: dict[str, int]


def engine_baseline(h: Home, pipeline: Path) -> Baseline:
    """Outputs and outcome counts of the same pipeline run by the engine directly; the output
    directory is then emptied so the job under test writes into a clean one."""
    ls = h.landscape()
    try:
        runner = Runner.start(ls, load_pipeline(pipeline), base_dir=pipeline.parent,
                              pipeline_path=pipeline)
        result = runner.execute()
        assert result.status is RunStatus.COMPLETED
        found = Baseline(outputs(ls, result.run_id), result.outcome_counts)
    finally:
        ls.dispose()
    shutil.rmtree(h.home / "out")
    return found


def csv_claims(data: bytes) -> list[int]:
    return [int(r["claim_id"]) for r in csv.DictReader(io.StringIO(data.decode()))]


def step_output_metadata(result: object, step: str) -> dict[str, object]:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == step:
            return {k: getattr(v, "value", v)
                    for k, v in event.event_specific_data.metadata.items()}
    raise AssertionError(f"no output of {step}")


def test_a_job_run_writes_what_the_engine_writes_and_links_both_run_ids(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    expected = engine_baseline(home, pipeline).outputs

    result = run_job(instance, pipeline, chunks_per_step=2)
    assert result.success, step_failures(result)
    run_id = landscape_run_id(instance, result)
    # 300 rows in chunks of 60, two chunks per step: three chunk steps, then the final step.
    chunk_steps = sorted(e.step_key for e in result.all_events
                         if e.event_type_value == "STEP_SUCCESS"
                         and (e.step_key or "").startswith("process_chunks["))
    assert chunk_steps == ["process_chunks[chunk_000000]", "process_chunks[chunk_000002]",
                           "process_chunks[chunk_000004]"]
    ls = home.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.dagster_run_id == result.run_id
        assert run.resume_count == 0
        assert outputs(ls, run_id) == expected
        metadata = step_output_metadata(result, "close_run")
        assert metadata["landscape_run_id"] == run_id
        counts = {k.split("/", 1)[1]: v for k, v in metadata.items() if k.startswith("outcome/")}
        assert counts == lifecycle_counts(ls, run_id)
        assert counts["completed"] > 0 and counts["forked"] > 0 and counts["quarantined"] > 0
        for sink, data in expected.items():
            assert metadata[f"sink/{sink}/sha256"] == digest(data)
        assert metadata["sweep_findings"] == 0
        assert event_types(ls, run_id)[0] == "run.started"
        assert event_types(ls, run_id)[-1] == "run.completed"
    finally:
        ls.dispose()
    # Staged chunks are working files of an unfinished run only.
    assert not (home.home / "runs" / run_id).exists()


def lifecycle_counts(ls: Landscape, run_id: str) -> dict[str, int]:
    return run_result(ls, run_id).outcome_counts


def test_reexecuting_a_failed_chunk_step_continues_the_same_run_without_duplicates(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    baseline = engine_baseline(home, pipeline)
    expected = baseline.outputs
    # A directory where chunk 2's part of the `standard` sink must go: that one write fails.
    target = "out/claims_triage/standard.csv.parts/chunk-000002.csv"
    blocker = home.home / target

    failed = run_disturbed(instance, pipeline, "block", target, chunks_per_step=1)
    assert not failed.success
    assert step_failures(failed) == ["process_chunks[chunk_000002]"]
    run_id = landscape_run_id(instance, failed)
    ls = home.landscape()
    try:
        run = get_run(ls, run_id)
        assert (run.status, run.termination_reason) == (RunStatus.FAILED,
                                                          TerminationReason.SYSTEM_FAILURE)
        assert run.dagster_run_id == failed.run_id

        blocker.rmdir()
        again = run_job(instance, pipeline, chunks_per_step=1, reexecute=failed.run_id)
        assert again.success, step_failures(again)
        assert landscape_run_id(instance, again) == run_id
        # Only what had not succeeded ran again: chunk 2 (already checkpointed, so skipped),
        # the final step and the close.
        executed = {e.step_key for e in again.all_events if e.event_type_value == "STEP_START"}
        assert executed == {"process_chunks[chunk_000002]", "final_step", "close_run"}

        run = assert_clean(ls, run_id)
        assert run.resume_count == 1 and run.dagster_run_id == again.run_id
        types = event_types(ls, run_id)
        assert types.count("run.failed") == 1 and types.count("run.resumed") == 1
        assert types[-1] == "run.completed"
        got = outputs(ls, run_id)
        # Chunk 2's standard rows failed (recorded, with the reason) and are in no output;
        # nothing is duplicated, and every other sink is byte-identical to the engine's.
        claims = csv_claims(got["standard"])
        assert len(claims) == len(set(claims))
        lost = range(2 * 60, 3 * 60)
        assert claims == [c for c in csv_claims(expected["standard"]) if c not in lost]
        assert len(claims) < len(csv_claims(expected["standard"]))
        assert {k: v for k, v in got.items() if k != "standard"} == \
            {k: v for k, v in expected.items() if k != "standard"}
        counts = lifecycle_counts(ls, run_id)
        lost_rows = len(csv_claims(expected["standard"])) - len(claims)
        assert counts["failed"] == baseline.counts["failed"] + lost_rows
        assert counts["completed"] == baseline.counts["completed"] - lost_rows
    finally:
        ls.dispose()


def test_a_failed_close_reexecuted_gives_the_outputs_of_an_uninterrupted_run(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    expected = engine_baseline(home, pipeline).outputs
    blocker = home.home / "out" / "claims_triage" / "review_summary.csv"
    blocker.mkdir(parents=True)  # finalize cannot rename the output onto a directory

    failed = run_job(instance, pipeline)
    assert step_failures(failed) == ["close_run"]
    run_id = landscape_run_id(instance, failed)
    blocker.rmdir()
    again = run_job(instance, pipeline, reexecute=failed.run_id)
    assert again.success, step_failures(again)
    ls = home.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.resume_count == 1
        assert outputs(ls, run_id) == expected
        assert event_types(ls, run_id).count("run.resumed") == 1
    finally:
        ls.dispose()


def test_a_new_job_run_can_resume_a_failed_landscape_run_but_not_a_completed_one(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    expected = engine_baseline(home, pipeline).outputs
    blocker = home.home / "out" / "claims_triage" / "errors.jsonl"
    blocker.mkdir(parents=True)
    failed = run_job(instance, pipeline)
    run_id = landscape_run_id(instance, failed)
    blocker.rmdir()

    resumed = run_job(instance, pipeline, resume_run_id=run_id)  # what `resume RUN_ID` does
    assert resumed.success, step_failures(resumed)
    assert landscape_run_id(instance, resumed) == run_id
    ls = home.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.resume_count == 1 and run.dagster_run_id == resumed.run_id
        assert outputs(ls, run_id) == expected
    finally:
        ls.dispose()

    refused = run_job(instance, pipeline, resume_run_id=run_id)
    assert step_failures(refused) == ["open_run"]
    assert failure_code(refused) == "GP-RUN-002"
    other = home.triage("other.yaml", reject_below=10)
    assert failure_code(run_job(instance, other, resume_run_id=run_id)) == "GP-RUN-003"


def failure_code(result: object) -> str:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data.user_failure_data
            code = str(data.metadata["code"].value)
            assert code in REGISTRY
            return code
    raise AssertionError("no step failed")


def test_a_staged_chunk_changed_on_disk_is_refused_and_the_run_recovers_once_restored(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    expected = engine_baseline(home, pipeline)
    failed = run_disturbed(instance, pipeline, "tamper", "000003.pickle", chunks_per_step=1)
    assert step_failures(failed) == ["process_chunks[chunk_000003]"]
    assert failure_code(failed) == "GP-AUDIT-001"
    run_id = landscape_run_id(instance, failed)
    staged = home.home / "runs" / run_id / "chunks" / "000003.pickle"
    ls = home.landscape()
    try:
        # Refused before anything of the chunk was processed: no checkpoint, no partial trail.
        assert 3 not in Runner(ls, RunContext.build(
            run_id, load_pipeline(pipeline), pipeline.parent, ls.clock)).done_chunks()
        assert get_run(ls, run_id).status is RunStatus.FAILED
        staged.write_bytes(staged.read_bytes()[:-1])  # the byte the disturbance appended
        again = run_job(instance, pipeline, chunks_per_step=1, reexecute=failed.run_id)
        assert again.success, step_failures(again)
        run = assert_clean(ls, run_id)
        assert run.resume_count == 1
        assert outputs(ls, run_id) == expected.outputs
        assert lifecycle_counts(ls, run_id) == expected.counts
    finally:
        ls.dispose()

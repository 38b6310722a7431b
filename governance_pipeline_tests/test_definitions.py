"""The Dagster code location: it loads, and its integrity job passes a clean Landscape and fails,
naming the finding, on a tampered one — on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DefaultScheduleStatus
from sqlalchemy import text

from governance_pipeline.cli.demo import record_synthetic_run
from governance_pipeline.definitions import defs, landscape_integrity, landscape_integrity_nightly
from governance_pipeline.landscape.recorder import Recorder


def test_code_location_holds_the_integrity_job_and_a_stopped_nightly_schedule() -> None:
    assert defs.get_job_def("landscape_integrity") is not None
    (schedule,) = [s for s in defs.schedules or () if s.name == "landscape_integrity_nightly"]
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.default_status is DefaultScheduleStatus.STOPPED
    assert landscape_integrity_nightly.job_name == "landscape_integrity"


@pytest.fixture
def governed_env(recorder: Recorder, db_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Recorder:
    # The fixture's Landscape keeps its key in tmp_path/keys, which is $GOVERNANCE_HOME/keys here.
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    return recorder


def test_integrity_job_succeeds_on_an_untouched_landscape(governed_env: Recorder) -> None:
    run = record_synthetic_run(governed_env, rows=8)
    result = landscape_integrity.execute_in_process()
    assert result.success
    summary = result.output_for_node("check_landscape_integrity")
    assert summary["sweep_findings"] == summary["verify_findings"] == 0
    assert summary["records_checked"] > len(run.token_ids)


def test_integrity_job_fails_naming_the_altered_record(governed_env: Recorder) -> None:
    run = record_synthetic_run(governed_env, rows=8)
    outcome_id = run.completed_outcome_id
    with governed_env.landscape.engine.begin() as conn:
        conn.execute(text("UPDATE token_outcomes SET context_json = '{}' WHERE outcome_id = :o"),
                     {"o": outcome_id})
    result = landscape_integrity.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("check_landscape_integrity")
    assert failure is not None and failure.user_failure_data is not None
    assert "1 finding" in failure.user_failure_data.description
    findings = failure.user_failure_data.metadata["findings"].value
    assert [(f["table"], f["key"]) for f in findings] == [("token_outcomes", outcome_id)]

"""The retention purge in the Dagster code location: a job on a real Dagster instance, and a
daily schedule that is stopped until an operator turns it on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, DefaultScheduleStatus, instance_for_test

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.definitions import defs
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline.orchestration.retention import retention_purge, retention_purge_daily
from governance_pipeline_tests.data_protection_fixtures import claims_pipeline, run_claims


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def test_the_purge_schedule_is_stopped_by_default() -> None:
    (schedule,) = [s for s in defs.schedules or [] if s.name == "retention_purge_daily"]
    assert schedule is retention_purge_daily
    assert schedule.default_status is DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "retention_purge"


def test_the_purge_job_purges_past_retention(db_url: str, tmp_path: Path,
                                             instance: DagsterInstance,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    for name in ("GOVERNANCE_RETENTION_PAYLOADS", "GOVERNANCE_RETENTION_RUNS",
                 "GOVERNANCE_RETENTION_FLOOR"):
        monkeypatch.delenv(name, raising=False)
    clock = ManualClock(datetime(2020, 1, 1, tzinfo=UTC))  # the job runs on the system clock
    landscape = Landscape.open(db_url, tmp_path / "keys", clock=clock)
    try:
        run_id = run_claims(landscape, clock, claims_pipeline(
            tmp_path, retention={"payloads": "200d"}))
        dry = retention_purge.execute_in_process(
            instance=instance, run_config={"ops": {"purge_past_retention": {
                "config": {"dry_run": True}}}})
        assert dry.success and dry.output_for_node("purge_past_retention")["purge_id"] is None
        assert verify(landscape).redacted.counts["purged"] == 0
        done = retention_purge.execute_in_process(instance=instance)
        assert done.success
        summary = done.output_for_node("purge_past_retention")
        assert summary["purge_id"] and summary["runs"] == 1 and summary["payloads"] > 0
        report = verify(landscape, run_id)
        assert report.ok and report.redacted.counts["purged"] > 0
    finally:
        landscape.dispose()

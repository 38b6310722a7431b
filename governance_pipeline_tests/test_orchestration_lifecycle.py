"""Ownership of a Landscape run by Dagster runs: claims, failures, sensors, abandonment.

Runs here are started by the engine itself (no job execution needed); the Dagster runs the
sensors look at are real runs of a real instance, moved to failed or cancelled the way the run
monitor and the cancellation path move them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    build_run_status_sensor_context,
    build_sensor_context,
)

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner, config_hash
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline.orchestration import lifecycle
from governance_pipeline.orchestration.jobs import build_pipeline_job
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline.orchestration.sensors import (
    landscape_abandoned_runs,
    landscape_run_cancelled,
    landscape_run_failure,
    sweep_abandoned_runs,
)
from governance_pipeline_tests.orchestration_fixtures import (
    Home,
    event_types,
    instance,  # noqa: F401 - fixture
    make_home,
)

_ = instance
WORKER = lifecycle.run_worker_identity()


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    return make_home(tmp_path, db_url, monkeypatch)


def start(landscape: Landscape, home: Home, dagster_run_id: str | None) -> str:
    pipeline = home.pipelines / "claims_triage.yaml"
    if not pipeline.exists():
        home.triage()
    runner = Runner.start(landscape, load_pipeline(pipeline), base_dir=pipeline.parent,
                          pipeline_path=pipeline)
    if dagster_run_id:
        lifecycle.link_dagster_run(landscape, runner.run_id, dagster_run_id,
                                   lifecycle.run_worker_identity())
    return runner.run_id


def dead_worker() -> str:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{socket.gethostname()}:{proc.stdout.strip()}"


def the_hash(home: Home) -> str:
    return config_hash(load_pipeline(home.pipelines / "claims_triage.yaml"))


def never_over(_: str) -> bool | None:
    return False


def test_of_racing_claims_exactly_one_resumes_the_run(landscape: Landscape, home: Home) -> None:
    run_id = start(landscape, home, "dagster-1")
    assert lifecycle.record_failure(landscape, run_id, dagster_run_id="dagster-1",
                                    error={"title": "boom"})
    stale = get_run(landscape, run_id)  # what every re-executed step read before any claimed
    assert lifecycle.claim(landscape, stale, "dagster-2") is True
    # Siblings acting on the same stale read lose, whichever Dagster run they belong to.
    assert lifecycle.claim(landscape, stale, "dagster-2") is False
    assert lifecycle.claim(landscape, stale, "dagster-3") is False
    # A sibling that attaches now finds the claim made and goes on.
    attached = lifecycle.attach(landscape, run_id, dagster_run_id="dagster-2", worker=WORKER,
                                config_hash=the_hash(home), dagster_run_over=never_over)
    assert attached.resumed is False
    run = get_run(landscape, run_id)
    assert (run.status, run.resume_count, run.dagster_run_id) == (RunStatus.RUNNING, 1,
                                                                   "dagster-2")
    assert run.termination_reason is None and run.ended_at is None
    assert event_types(landscape, run_id).count("run.resumed") == 1
    assert not verify(landscape, run_id).findings


def test_a_failure_is_recorded_once_and_only_by_the_owning_dagster_run(
        landscape: Landscape, home: Home) -> None:
    run_id = start(landscape, home, "dagster-1")
    assert not lifecycle.record_failure(landscape, run_id, dagster_run_id="dagster-other",
                                        error={"title": "not mine"})
    assert get_run(landscape, run_id).status is RunStatus.RUNNING
    assert lifecycle.record_failure(landscape, run_id, dagster_run_id="dagster-1",
                                    error={"title": "boom"}, status=RunStatus.INTERRUPTED,
                                    reason=TerminationReason.USER_ABORT)
    assert not lifecycle.record_failure(landscape, run_id, dagster_run_id="dagster-1",
                                        error={"title": "again"})
    run = get_run(landscape, run_id)
    assert (run.status, run.termination_reason) == (RunStatus.INTERRUPTED,
                                                    TerminationReason.USER_ABORT)
    assert event_types(landscape, run_id).count("run.interrupted") == 1
    assert "run.failed" not in event_types(landscape, run_id)


def test_attach_refuses_a_live_owner_a_changed_pipeline_and_an_unresumable_run(
        landscape: Landscape, home: Home) -> None:
    run_id = start(landscape, home, "dagster-1")
    with pytest.raises(ConfigError) as live:
        lifecycle.attach(landscape, run_id, dagster_run_id="dagster-2", worker=WORKER,
                         config_hash=the_hash(home), dagster_run_over=never_over)
    assert live.value.code.code == "GP-RUN-002"
    with pytest.raises(ConfigError) as changed:
        lifecycle.attach(landscape, run_id, dagster_run_id="dagster-1", worker=WORKER,
                         config_hash="0" * 64, dagster_run_over=never_over)
    assert changed.value.code.code == "GP-RUN-003"
    assert get_run(landscape, run_id).resume_count == 0

    # Once the owning Dagster run is over, the run is taken over: abandoned, then resumed.
    attached = lifecycle.attach(landscape, run_id, dagster_run_id="dagster-2", worker=WORKER,
                                config_hash=the_hash(home), dagster_run_over=lambda _: True)
    assert attached.resumed and attached.run.resume_count == 1
    types = event_types(landscape, run_id)
    assert types.count("run.abandoned") == 1 and types.count("run.resumed") == 1

    Recorder(landscape).finish_run(run_id, RunStatus.CANCELLED, TerminationReason.USER_ABORT)
    with pytest.raises(ConfigError) as cancelled:
        lifecycle.attach(landscape, run_id, dagster_run_id="dagster-3", worker=WORKER,
                         config_hash=the_hash(home), dagster_run_over=lambda _: True)
    assert cancelled.value.code.code == "GP-RUN-002"


def test_abandoned_runs_are_those_nothing_drives_any_more(
        landscape: Landscape, clock: ManualClock, home: Home) -> None:
    recorder = Recorder(landscape)
    gone = start(landscape, home, None)            # no Dagster run, worker process gone
    recorder.heartbeat(gone, dead_worker())
    driven = start(landscape, home, "dagster-live")  # worker gone, Dagster run in progress
    recorder.heartbeat(driven, dead_worker())
    finished = start(landscape, home, "dagster-over")  # live worker, Dagster run over
    alive = start(landscape, home, None)           # live worker, no Dagster run
    clock.advance(3600)                            # every heartbeat is stale now
    status = {"dagster-live": False, "dagster-over": True}

    found = sweep_abandoned_runs(landscape, status.get)
    assert sorted(found) == sorted([gone, finished])
    for run_id in (gone, finished):
        run = get_run(landscape, run_id)
        assert (run.status, run.termination_reason) == (RunStatus.ABANDONED,
                                                        TerminationReason.ABANDONED)
        assert event_types(landscape, run_id).count("run.abandoned") == 1
    for run_id in (driven, alive):
        assert get_run(landscape, run_id).status is RunStatus.RUNNING
    assert sweep_abandoned_runs(landscape, status.get) == []


def _dagster_run(inst: DagsterInstance, home: Home, run_id: str) -> DagsterRun:
    pipeline = home.pipelines / "claims_triage.yaml"
    job = build_pipeline_job(pipeline, load_pipeline(pipeline))
    return inst.create_run_for_job(job_def=job, tags={lifecycle.TAG_RUN_ID: run_id})


def test_sensors_record_a_failed_or_cancelled_dagster_run_in_its_landscape_run(
        home: Home, instance: DagsterInstance) -> None:
    resource = LandscapeResource(db_url=home.db_url, home=str(home.home))
    with resource.open() as ls:
        failing, cancelled, taken_over = (start(ls, home, None) for _ in range(3))
    runs = {rid: _dagster_run(instance, home, rid) for rid in (failing, cancelled, taken_over)}
    with resource.open() as ls:
        for rid, dagster_run in runs.items():
            lifecycle.link_dagster_run(ls, rid, dagster_run.run_id, dead_worker())
        # A later Dagster run owns this one now: a failure of the old one must not touch it.
        lifecycle.link_dagster_run(ls, taken_over, "dagster-newer", dead_worker())

    def fire(sensor: object, rid: str, cancel: bool = False) -> str:
        dagster_run = instance.get_run_by_id(runs[rid].run_id)
        assert dagster_run is not None
        event = (instance.report_run_canceled(dagster_run) if cancel
                 else instance.report_run_failed(dagster_run, message="run worker was killed"))
        with build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_event=event,  # type: ignore[attr-defined]
                dagster_instance=instance, dagster_run=dagster_run,
                resources={"landscape": resource}) as context:
            evaluated = sensor(context if cancel else context.for_run_failure())  # type: ignore[operator]
        return str(evaluated.skip_message)

    assert "recorded failed" in fire(landscape_run_failure, failing)
    assert "recorded interrupted" in fire(landscape_run_cancelled, cancelled, cancel=True)
    assert "already recorded" in fire(landscape_run_failure, taken_over)
    with resource.open() as ls:
        run = get_run(ls, failing)
        assert (run.status, run.termination_reason) == (RunStatus.FAILED,
                                                        TerminationReason.SYSTEM_FAILURE)
        assert run.status.is_resumable
        run = get_run(ls, cancelled)
        assert (run.status, run.termination_reason) == (RunStatus.INTERRUPTED,
                                                        TerminationReason.USER_ABORT)
        assert run.status.is_resumable
        assert get_run(ls, taken_over).status is RunStatus.RUNNING
        assert event_types(ls, failing).count("run.failed") == 1
        assert not verify(ls).findings


def test_the_abandoned_run_sensor_asks_the_instance_about_dagster_runs(
        home: Home, instance: DagsterInstance) -> None:
    resource = LandscapeResource(db_url=home.db_url, home=str(home.home))
    with resource.open() as ls:
        in_progress, over = start(ls, home, None), start(ls, home, None)
    dagster_in_progress = _dagster_run(instance, home, in_progress)
    dagster_over = _dagster_run(instance, home, over)
    instance.report_run_failed(dagster_over)
    with resource.open() as ls:
        lifecycle.link_dagster_run(ls, in_progress, dagster_in_progress.run_id, dead_worker())
        lifecycle.link_dagster_run(ls, over, dagster_over.run_id, lifecycle.run_worker_identity())
    with build_sensor_context(instance=instance, resources={"landscape": resource}) as context:
        result = landscape_abandoned_runs(context)
    assert result.skip_message == f"marked 1 run(s) abandoned: {over}"
    with resource.open() as ls:
        assert get_run(ls, over).status is RunStatus.ABANDONED
        assert get_run(ls, in_progress).status is RunStatus.RUNNING

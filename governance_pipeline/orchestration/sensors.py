"""Sensors that keep the Landscape honest about what happened to Dagster runs.

A step that fails records its own failure in the Landscape run. What a step cannot record — its
run worker killed, the run cancelled, a step process that died — the daemon sees: the run-failure
and run-cancelled sensors close the Landscape run (failed / interrupted, with the reason), and the
abandoned-run sensor catches runs whose driver vanished without Dagster noticing (stale
heartbeat, dead worker). Every change is a conditional update (``lifecycle``), so a sensor never
overwrites what a step or a later re-execution recorded.
"""

from typing import Any

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from sqlalchemy import select

from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine.resume import DEFAULT_STALE_AFTER_S, is_abandoned
from governance_pipeline.landscape.schema import runs
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration import lifecycle
from governance_pipeline.orchestration.resources import LandscapeResource

_OVER = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

#: How often the abandoned-run sensor looks (seconds); a run is abandoned after its heartbeat
#: has been silent for ``DEFAULT_STALE_AFTER_S`` or as soon as its worker is known to be gone.
ABANDONED_CHECK_INTERVAL_S = 120


def _failure_error(context: RunStatusSensorContext, title: str) -> dict[str, Any]:
    steps = [e.step_key for e in context.instance.all_logs(
        context.dagster_run.run_id, of_type=DagsterEventType.STEP_FAILURE)]
    return {"title": title, "detail": context.dagster_event.message or title,
            "dagster_run_id": context.dagster_run.run_id, "failed_steps": steps}


def record_dagster_outcome(context: RunStatusSensorContext, landscape: LandscapeResource,
                           status: RunStatus, reason: TerminationReason,
                           title: str) -> SkipReason:
    dagster_run = context.dagster_run
    run_id = dagster_run.tags.get(lifecycle.TAG_RUN_ID)
    if not run_id:
        return SkipReason(f"Dagster run {dagster_run.run_id} has no Landscape run")
    with landscape.open() as ls:
        recorded = lifecycle.record_failure(ls, run_id, dagster_run_id=dagster_run.run_id,
                                            error=_failure_error(context, title),
                                            status=status, reason=reason)
    if recorded:
        context.log.info(f"Landscape run {run_id}: recorded {status.value} ({reason.value})")
        return SkipReason(f"recorded {status.value} in Landscape run {run_id}")
    return SkipReason(f"Landscape run {run_id} already recorded its end or moved on")


@run_failure_sensor(name="landscape_run_failure", default_status=DefaultSensorStatus.RUNNING,
                    description="Records a failed Dagster run (op error, killed run worker) in "
                                "its Landscape run: status failed, reason system_failure.")
def landscape_run_failure(context: RunFailureSensorContext,
                          landscape: LandscapeResource) -> SkipReason:
    return record_dagster_outcome(context, landscape, RunStatus.FAILED,
                                  TerminationReason.SYSTEM_FAILURE, "Dagster run failed")


@run_status_sensor(run_status=DagsterRunStatus.CANCELED, name="landscape_run_cancelled",
                   default_status=DefaultSensorStatus.RUNNING,
                   description="Records a cancelled Dagster run in its Landscape run: status "
                               "interrupted (resumable), reason user_abort.")
def landscape_run_cancelled(context: RunStatusSensorContext,
                            landscape: LandscapeResource) -> SkipReason:
    return record_dagster_outcome(context, landscape, RunStatus.INTERRUPTED,
                                  TerminationReason.USER_ABORT, "Dagster run cancelled")


def sweep_abandoned_runs(ls: Landscape, dagster_status: lifecycle.DagsterRunOver, *,
                         stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[str]:
    """Mark running Landscape runs abandoned when nothing drives them any more.

    Like the engine's ``sweep_abandoned`` (dead worker on this host, or a stale heartbeat), but a
    run whose Dagster run the instance reports as still in progress is left alone whatever its
    heartbeat says, and one whose Dagster run is over is abandoned at once.
    """
    with ls.engine.connect() as conn:
        rows = conn.execute(select(runs).where(runs.c.status == RunStatus.RUNNING.value)
                            ).mappings().all()
    found = []
    for row in rows:
        run = Run.from_row(row)
        over = dagster_status(run.dagster_run_id) if run.dagster_run_id else None
        if over is False:
            continue
        if over or is_abandoned(run, ls.clock, stale_after_s):
            if lifecycle.mark_abandoned(ls, run):
                found.append(run.run_id)
    return found


@sensor(name="landscape_abandoned_runs", minimum_interval_seconds=ABANDONED_CHECK_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Marks Landscape runs abandoned (with a run.abandoned event) when their "
                    "worker is gone or their heartbeat is stale and no Dagster run drives them.")
def landscape_abandoned_runs(context: SensorEvaluationContext,
                             landscape: LandscapeResource) -> SkipReason:
    def over(dagster_run_id: str) -> bool | None:
        record = context.instance.get_run_by_id(dagster_run_id)
        return None if record is None else record.status in _OVER

    with landscape.open() as ls:
        found = sweep_abandoned_runs(ls, over)
    if found:
        context.log.info(f"marked abandoned: {', '.join(found)}")
        return SkipReason(f"marked {len(found)} run(s) abandoned: {', '.join(found)}")
    return SkipReason("no abandoned runs")


SENSORS: tuple[SensorDefinition, ...] = (landscape_run_failure, landscape_run_cancelled,
                                         landscape_abandoned_runs)

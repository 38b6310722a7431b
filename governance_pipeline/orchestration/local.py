"""Running a pipeline job on the local Dagster instance from the command line.

``governance-pipeline run`` and ``resume`` execute the pipeline's job with ``execute_job`` on the
instance under ``DAGSTER_HOME`` (default ``$GOVERNANCE_HOME/dagster``), so command-line runs are
Dagster runs: the UI lists them with their events, and a failed one can be re-executed there.
The result the command prints still comes from the Landscape, not from Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance, execute_job
from dagster._core.execution.execution_result import ExecutionResult

from governance_pipeline.contracts.errors import (
    INTERNAL_ERROR,
    REGISTRY,
    GovernanceError,
    OperationalError,
)
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.runner import RunResult
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration import lifecycle
from governance_pipeline.orchestration.jobs import reconstructable_pipeline_job

EXECUTORS = ("in_process", "multiprocess")

#: Written to a default ``DAGSTER_HOME`` that has no instance configuration yet: storage stays
#: the local SQLite default, and nothing is sent anywhere.
DEFAULT_INSTANCE_YAML = """\
# Written by governance-pipeline: local storage under this directory, telemetry off.
# The repository's dagster.yaml documents PostgreSQL storage for scale.
telemetry:
  enabled: false
"""


def open_instance(settings: Settings) -> DagsterInstance:
    """The persistent local Dagster instance (``DAGSTER_HOME``, default under the home)."""
    home = settings.dagster_home
    if not os.environ.get("DAGSTER_HOME"):
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text(DEFAULT_INSTANCE_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


@dataclass(frozen=True)
class JobRun:
    dagster_run_id: str
    landscape_run_id: str | None
    success: bool


def run_config(*, resume_run_id: str | None = None, executor: str = "in_process",
               max_concurrent: int | None = None, log_level: str = "INFO",
               chunks_per_step: int = 0, policy_mode: str | None = None,
               approval_token: str | None = None, actor: str | None = None,
               tracebacks: bool = True) -> dict[str, Any]:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}")
    executor_config: dict[str, Any] = {}
    if executor == "multiprocess" and max_concurrent:
        executor_config["max_concurrent"] = max_concurrent
    return {"ops": {"open_run": {"config": {"resume_run_id": resume_run_id,
                                            "chunks_per_step": chunks_per_step,
                                            "policy_mode": policy_mode,
                                            "approval_token": approval_token,
                                            "actor": actor}}},
            "execution": {"config": {executor: executor_config}},
            "loggers": {"console": {"config": {"log_level": log_level,
                                               "tracebacks": tracebacks}}}}


def execute_pipeline(instance: DagsterInstance, path: Path, config: Mapping[str, Any],
                     tags: Mapping[str, str] | None = None) -> tuple[JobRun, ExecutionResult]:
    result = execute_job(reconstructable_pipeline_job(path), instance, run_config=dict(config),
                         tags=dict(tags or {}), raise_on_error=False)
    record = instance.get_run_by_id(result.run_id)
    landscape_run_id = record.tags.get(lifecycle.TAG_RUN_ID) if record else None
    return JobRun(result.run_id, landscape_run_id, result.success), result


def _problem_error(problem: Any, result: ExecutionResult,
                   landscape_run_id: str | None) -> GovernanceError | None:
    if not (isinstance(problem, dict) and problem.get("code") in REGISTRY):
        return None
    details = dict(problem.get("details") or {})
    if landscape_run_id:
        details.setdefault("run_id", landscape_run_id)
    details["dagster_run_id"] = result.run_id
    return GovernanceError(str(problem.get("detail", "")), code=REGISTRY[problem["code"]],
                           details=details)


def _stop_reported(result: ExecutionResult, landscape_run_id: str | None) -> GovernanceError | None:
    """An enforced policy stop, as the failed blocking policy check of a sink reports it."""
    for event in result.all_events:
        if event.event_type is not DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed or not evaluation.blocking or "problem" not in evaluation.metadata:
            continue
        error = _problem_error(getattr(evaluation.metadata["problem"], "data", None), result,
                               landscape_run_id)
        if error is not None:
            return error
    return None


def step_failure_error(result: ExecutionResult, landscape_run_id: str | None) -> GovernanceError:
    """The error a failed job run stands for, with the code the failing step raised."""
    stopped = _stop_reported(result, landscape_run_id)
    if stopped is not None:
        return stopped
    for event in result.all_events:
        if event.event_type is not DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and "problem" in user.metadata:
            error = _problem_error(getattr(user.metadata["problem"], "data", None), result,
                                   landscape_run_id)
            if error is not None:
                return error
        error_info = data.error
        while error_info is not None and error_info.cause is not None:  # Dagster wraps it
            error_info = error_info.cause
        message = error_info.message.strip() if error_info else "step failed"
        return OperationalError(
            f"step {event.step_key} failed: {message}", code=INTERNAL_ERROR,
            details={"run_id": landscape_run_id, "dagster_run_id": result.run_id,
                     "exception": error_info.cls_name if error_info else None})
    return OperationalError(f"Dagster run {result.run_id} did not succeed",
                            code=INTERNAL_ERROR,
                            details={"run_id": landscape_run_id,
                                     "dagster_run_id": result.run_id})


def finish(landscape: Landscape, job_run: JobRun, result: ExecutionResult) -> RunResult:
    """The Landscape's account of a job run; a failed job run raises its step's error.

    A step that died without recording its failure (a killed step process) leaves the Landscape
    run ``running`` under this Dagster run: it is closed as failed here, as the run-failure
    sensor would, so the command line never leaves a run that looks alive behind it.
    """
    if job_run.success and job_run.landscape_run_id:
        return lifecycle.run_result(landscape, job_run.landscape_run_id)
    error = step_failure_error(result, job_run.landscape_run_id)
    if job_run.landscape_run_id:
        lifecycle.record_failure(landscape, job_run.landscape_run_id,
                                 dagster_run_id=job_run.dagster_run_id,
                                 error={**error.problem(), "dagster_run_id": job_run.dagster_run_id})
    raise error

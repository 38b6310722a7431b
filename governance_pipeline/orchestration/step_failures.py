"""How a pipeline step fails: recorded in the Landscape run first, then reported to Dagster.

A ``GovernanceError`` fails the step with a ``Failure`` carrying the error's code and its RFC 9457
problem document; any other exception is recorded and re-raised unchanged. An enforced policy
stop is not an exception to Dagster: the op reports the sinks as published before the stop and
the stopping policy check failed and blocking, and Dagster fails the step on that check — so the
event log holds the code, rule, row and fix, and no stack frame of ours.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    Failure,
    MetadataValue,
    OpExecutionContext,
)

from governance_pipeline.contracts.errors import GovernanceError, PolicyStopError
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration import lifecycle
from governance_pipeline.orchestration.pipeline_assets import pipeline_assets
from governance_pipeline.orchestration.pipeline_reports import published_events


def problem_metadata(exc: GovernanceError, run_id: str | None) -> dict[str, Any]:
    problem = exc.problem()
    if run_id:
        problem.setdefault("details", {}).setdefault("run_id", run_id)
    return {"code": exc.code.code, "problem": MetadataValue.json(problem),
            **({"landscape_run_id": run_id} if run_id else {})}


@dataclass(slots=True)
class StopCatcher:
    """Where ``recording_failures`` puts an enforced policy stop for the op to report."""

    error: PolicyStopError | None = None


@contextmanager
def recording_failures(context: OpExecutionContext, ls: Landscape | None,
                       run_id: str | None, stop: StopCatcher | None = None) -> Iterator[None]:
    """Record a step's failure in the Landscape run, then fail the step with the error's code.

    An enforced policy stop is recorded with the stop itself (the run is failed_policy). Given a
    ``stop`` catcher, it is not raised: the op reports it as the failed, blocking policy check
    of the sinks (``report_stop``), which fails the step without a stack trace of ours."""
    try:
        yield
    except PolicyStopError as exc:
        if stop is not None:
            stop.error = exc
            return
        raise Failure(description=f"{exc.code.code}: {exc.message}",
                      metadata=problem_metadata(exc, run_id), allow_retries=False) from None
    except GovernanceError as exc:
        record(context, ls, run_id, exc.problem())
        raise Failure(description=f"{exc.code.code}: {exc.message}",
                      metadata=problem_metadata(exc, run_id), allow_retries=False) from exc
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised unchanged
        record(context, ls, run_id, {"title": type(exc).__name__, "detail": str(exc)})
        raise


def report_stop(context: OpExecutionContext, ls: Landscape, run_id: str, config: PipelineConfig,
                error: PolicyStopError) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """The sinks as published before the stop, and the policy checks: the stopping one failed
    and blocking (Dagster then fails the step, naming the check), its evaluation carrying the
    code, rule, row and fix."""
    context.log.error(f"{error.code.code}: {error.message}. fix: {error.code.fix}")
    yield from published_events(ls, run_id, pipeline_assets(config))


def record(context: OpExecutionContext, ls: Landscape | None, run_id: str | None,
           error: dict[str, Any]) -> None:
    if ls is None or run_id is None:
        return
    try:
        lifecycle.record_failure(ls, run_id, dagster_run_id=context.run_id,
                                 error={**error, "dagster_run_id": context.run_id,
                                        "step": context.op_handle.name})
    except GovernanceError as exc:
        # The database itself may be the failure: the run-failure sensor, or the abandoned-run
        # check on the stale heartbeat, records it later.
        context.log.error(f"could not record the failure in run {run_id}: {exc.message}")

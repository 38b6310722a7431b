"""Which Dagster run owns a Landscape run, and how ownership moves on re-execution.

A Landscape run is driven by one Dagster run at a time; ``runs.dagster_run_id`` names it. A
re-execution (Dagster's "re-execute from failure", from the UI, GraphQL or Python) is a new
Dagster run that continues the same Landscape run from its checkpoints: the first of its steps to
touch the Landscape claims the run — status back to ``running``, ``resume_count`` + 1, one
``run.resumed`` event, the new Dagster run id — and its sibling steps, which may start at the
same moment in other processes, find the claim made and go on.

Every ownership change is a conditional update: its key includes the status and the Dagster run
id the step read (the recorder's compare-and-set ``expect``), so of several steps racing for the
same change exactly one matches, and the others' units are discarded whole. All of it goes
through the recorder, so each change is in the run's ledger.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import ConfigError, StaleStateError
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine.resume import (
    DEFAULT_STALE_AFTER_S,
    PIPELINE_CHANGED,
    RUN_NOT_RESUMABLE,
    is_abandoned,
)
from governance_pipeline.engine.runner import RunResult, SinkSummary
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import artifacts, checkpoints, token_outcomes
from governance_pipeline.landscape.store import Landscape

#: Dagster run tags that tie a Dagster run to the Landscape (and back, via ``dagster_run_id``).
TAG_RUN_ID = "governance/run_id"
TAG_PIPELINE = "governance/pipeline"
TAG_PIPELINE_PATH = "governance/pipeline_path"

#: The answer of the Dagster instance about one of its runs: True if it is over (succeeded,
#: failed or was cancelled), False if it may still be executing, None if it does not know it.
DagsterRunOver = Callable[[str], bool | None]

_SOURCE = "orchestration"


def run_worker_identity() -> str:
    """``host:pid`` of the process that drives the Dagster run.

    Steps of the multiprocess executor run in children spawned by the run worker; the run is
    alive as long as that worker is, not the short-lived step process, so the Landscape names the
    worker (the abandoned-run check tests it). In-process steps run in the worker itself.
    """
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid is not None else os.getpid()
    return f"{socket.gethostname()}:{pid}"


def _conditional(landscape: Landscape, run: Run, expect: Mapping[str, Any],
                 values: Mapping[str, Any], event_type: str, payload: Mapping[str, Any],
                 *, stamp: str | None = None, seal: bool = False) -> bool:
    """Apply ``values`` (and the unit's time to column ``stamp``) to the run if it still has
    the ``expect``-ed column values, with one event; True if applied."""
    recorder = Recorder(landscape)
    uow = UnitOfWork(run.run_id, recorder.now())
    uow.update("runs", {"run_id": run.run_id}, {**values, **({stamp: uow.now} if stamp else {})},
               expect=expect)
    uow.add(make_event(event_type, scope=run.run_id, source=_SOURCE, tenant_id=run.tenant_id,
                       timestamp=uow.now, payload={"run_id": run.run_id, **payload}))
    try:
        recorder.commit(uow, seal=seal)
    except StaleStateError:
        return False
    return True


def link_dagster_run(landscape: Landscape, run_id: str, dagster_run_id: str, worker: str) -> None:
    """Record which Dagster run drives ``run_id`` (ledgered) and its worker (liveness)."""
    recorder = Recorder(landscape)
    with recorder.unit(run_id) as uow:
        uow.update("runs", {"run_id": run_id}, {"dagster_run_id": dagster_run_id})
    recorder.heartbeat(run_id, worker)


def mark_abandoned(landscape: Landscape, run: Run) -> bool:
    """Close a running run whose driver is gone as abandoned (resumable), once."""
    return _conditional(landscape, run, {"status": RunStatus.RUNNING,
                                         "dagster_run_id": run.dagster_run_id},
                        {"status": RunStatus.ABANDONED,
                         "termination_reason": TerminationReason.ABANDONED},
                        "run.abandoned", {"worker": run.worker, "last_heartbeat": run.heartbeat_at,
                                          "dagster_run_id": run.dagster_run_id},
                        stamp="ended_at", seal=True)


@dataclass(frozen=True, slots=True)
class Attachment:
    run: Run
    resumed: bool


def attach(landscape: Landscape, run_id: str, *, dagster_run_id: str, worker: str,
           config_hash: str, dagster_run_over: DagsterRunOver,
           stale_after_s: float = DEFAULT_STALE_AFTER_S) -> Attachment:
    """Make ``dagster_run_id`` the owner of ``run_id``, resuming it if another run owned it."""
    for _ in range(4):  # each pass either returns or sees a change another step made
        run = get_run(landscape, run_id)
        if run.config_hash != config_hash:
            raise ConfigError(
                f"run {run_id}: the pipeline changed since the run started (stored "
                f"{run.config_hash[:12]}…, this job's {config_hash[:12]}…)",
                code=PIPELINE_CHANGED,
                details={"stored_hash": run.config_hash, "current_hash": config_hash})
        if run.dagster_run_id == dagster_run_id or run.status is RunStatus.COMPLETED:
            return Attachment(run, resumed=False)
        if run.status is RunStatus.RUNNING:
            over = dagster_run_over(run.dagster_run_id) if run.dagster_run_id else None
            if not over and not is_abandoned(run, landscape.clock, stale_after_s):
                raise ConfigError(
                    f"run {run_id} is still driven by Dagster run {run.dagster_run_id} "
                    f"(worker {run.worker}); wait for it to end or cancel it",
                    code=RUN_NOT_RESUMABLE, details={"dagster_run_id": run.dagster_run_id})
            mark_abandoned(landscape, run)
            continue
        if not run.status.is_resumable:
            raise ConfigError(f"run {run_id} is {run.status.value}; it cannot be resumed",
                              code=RUN_NOT_RESUMABLE, details={"status": run.status.value})
        if claim(landscape, run, dagster_run_id):
            Recorder(landscape).heartbeat(run_id, worker)
            return Attachment(get_run(landscape, run_id), resumed=True)
    raise ConfigError(f"run {run_id}: could not take it over; its status keeps changing",
                      code=RUN_NOT_RESUMABLE)


def claim(landscape: Landscape, run: Run, dagster_run_id: str) -> bool:
    """Resume ``run`` (as read) for ``dagster_run_id``; False if it changed since it was read."""
    with landscape.engine.connect() as conn:
        done = sorted(conn.execute(select(checkpoints.c.chunk_index)
                                   .where(checkpoints.c.run_id == run.run_id)).scalars())
    return _conditional(
        landscape, run, {"status": run.status, "dagster_run_id": run.dagster_run_id},
        {"status": RunStatus.RUNNING, "termination_reason": None, "ended_at": None,
         "resume_count": run.resume_count + 1, "dagster_run_id": dagster_run_id},
        "run.resumed", {"from_status": run.status.value, "resume_count": run.resume_count + 1,
                        "checkpoints": len(done),
                        "chunks_done": [c for c in done if c >= 0][-1:],
                        "dagster_run_id": dagster_run_id,
                        "previous_dagster_run_id": run.dagster_run_id},
        stamp="last_resumed_at")


def record_failure(landscape: Landscape, run_id: str, *, dagster_run_id: str,
                   error: Mapping[str, Any], status: RunStatus = RunStatus.FAILED,
                   reason: TerminationReason = TerminationReason.SYSTEM_FAILURE) -> bool:
    """Close ``run_id`` as failed (or interrupted) if it is still running under ``dagster_run_id``.

    Called by a failing step, by the run-failure sensor and by the command line after a failed
    Dagster run; the first one records it, the others find it recorded (False). A run another
    Dagster run has taken over since is left alone.
    """
    run = get_run(landscape, run_id)
    if run.status is not RunStatus.RUNNING or run.dagster_run_id != dagster_run_id:
        return False
    return _conditional(landscape, run, {"status": RunStatus.RUNNING,
                                         "dagster_run_id": dagster_run_id},
                        {"status": status, "termination_reason": reason},
                        f"run.{status.value}",
                        {"status": status.value, "termination_reason": reason.value,
                         "error": dict(error), "dagster_run_id": dagster_run_id},
                        stamp="ended_at", seal=True)


def run_result(landscape: Landscape, run_id: str) -> RunResult:
    """What ``governance-pipeline run --json`` reports: status, outcome counts, sink digests."""
    run = get_run(landscape, run_id)
    with landscape.engine.connect() as conn:
        counts = dict(conn.execute(
            select(token_outcomes.c.outcome, func.count())
            .where(token_outcomes.c.run_id == run_id, token_outcomes.c.is_terminal == 1)
            .group_by(token_outcomes.c.outcome)).all())
        arts = conn.execute(select(artifacts).where(artifacts.c.run_id == run_id)
                            .order_by(artifacts.c.artifact_id)).mappings().all()
    sinks = [SinkSummary(a["sink_node_id"], a["path_or_uri"], a["row_count"],
                         a["content_hash"], a["size_bytes"]) for a in arts]
    return RunResult(run.run_id, run.status, run.termination_reason, counts, sinks)

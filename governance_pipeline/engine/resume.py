"""Resuming a run, and telling live runs from abandoned ones.

A run is resumed under its own id, from what its checkpoints say is finished, with the pipeline
it started with: the stored config hash must match the pipeline file as it is now. A run that
still says ``running`` is only taken over when its worker is provably gone (same host, process
no longer alive) or its heartbeat is stale; it is then marked ``abandoned`` first, so the trail
shows both the abandonment and the resume.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from governance_pipeline.contracts.clock import Clock, from_iso, to_iso
from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine import code_identity
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.policy_hook import PolicyHook
from governance_pipeline.engine.runner import Runner, config_hash
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import checkpoints, runs
from governance_pipeline.landscape.store import Landscape

#: A running run whose heartbeat is older than this is considered abandoned.
DEFAULT_STALE_AFTER_S = 300.0

RUN_NOT_RESUMABLE = register(
    "GP-RUN-002", "The run cannot be resumed",
    "Only failed, interrupted or abandoned runs resume. A completed run is final; a live run "
    "must finish or be stopped first (`governance-pipeline runs` shows statuses).",
    ExitCode.INVALID_INPUT)
PIPELINE_CHANGED = register(
    "GP-RUN-003", "The pipeline changed since the run started",
    "Resume with the pipeline file exactly as it was when the run started (its hash is stored "
    "on the run), or start a new run with the changed pipeline.",
    ExitCode.INVALID_INPUT)


def worker_alive(worker: str | None) -> bool | None:
    """True/False when the worker ran on this host; None when that cannot be known here."""
    if not worker or ":" not in worker:
        return None
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed but not yet reaped child is a zombie: it runs nothing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def is_abandoned(run: Run, clock: Clock, stale_after_s: float) -> bool:
    if run.status is not RunStatus.RUNNING:
        return False
    alive = worker_alive(run.worker)
    if alive is False:
        return True
    if run.heartbeat_at is None:
        return alive is None
    age = clock.now() - from_iso(run.heartbeat_at)
    return alive is None and age > timedelta(seconds=stale_after_s)


def mark_abandoned(landscape: Landscape, run: Run) -> None:
    recorder = Recorder(landscape)
    with recorder.unit(run.run_id, seal=True) as uow:
        uow.update("runs", {"run_id": run.run_id},
                   {"status": RunStatus.ABANDONED,
                    "termination_reason": TerminationReason.ABANDONED, "ended_at": uow.now})
        uow.add(make_event("run.abandoned", scope=run.run_id, source="engine",
                           tenant_id=run.tenant_id, timestamp=uow.now,
                           payload={"run_id": run.run_id, "worker": run.worker,
                                    "last_heartbeat": run.heartbeat_at}))


def sweep_abandoned(landscape: Landscape, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[str]:
    """Mark every running run whose worker is gone or silent as abandoned; returns their ids."""
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(runs).where(runs.c.status == RunStatus.RUNNING.value)
                            ).mappings().all()
    found = []
    for row in rows:
        run = Run.from_row(row)
        if is_abandoned(run, landscape.clock, stale_after_s):
            mark_abandoned(landscape, run)
            found.append(run.run_id)
    return found


def resume(landscape: Landscape, run_id: str, *, clock: Clock | None = None,
           stale_after_s: float = DEFAULT_STALE_AFTER_S,
           policy: PolicyHook | None = None) -> Runner:
    """Prepare ``run_id`` to continue: checks, resume marker, and a runner for the rest."""
    run = get_run(landscape, run_id)
    if run.status is RunStatus.RUNNING:
        if not is_abandoned(run, landscape.clock, stale_after_s):
            raise ConfigError(f"run {run_id} is still running (worker {run.worker}, heartbeat "
                              f"{run.heartbeat_at})", code=RUN_NOT_RESUMABLE)
        mark_abandoned(landscape, run)
        run = get_run(landscape, run_id)
    if not run.status.is_resumable:
        raise ConfigError(f"run {run_id} is {run.status.value}; it cannot be resumed",
                          code=RUN_NOT_RESUMABLE, details={"status": run.status.value})
    if not run.pipeline_path or not Path(run.pipeline_path).is_file():
        raise ConfigError(f"run {run_id}: its pipeline file {run.pipeline_path!r} is missing",
                          code=PIPELINE_CHANGED)
    path = Path(run.pipeline_path)
    config = load_pipeline(path)
    if config_hash(config) != run.config_hash:
        raise ConfigError(
            f"run {run_id}: {path} changed since the run started "
            f"(stored {run.config_hash[:12]}…, now {config_hash(config)[:12]}…)",
            code=PIPELINE_CHANGED,
            details={"stored_hash": run.config_hash, "current_hash": config_hash(config)})
    ctx = RunContext.build(run_id, config, path.parent, clock or landscape.clock,
                           run.policy_snapshot_id, policy=policy)
    with landscape.engine.connect() as conn:  # refused before the resume is recorded
        code_identity.require_unchanged(conn, run_id, code_identity.identities(
            run_id, ctx.graph, ctx.plugins, ""))
    _record_resume(landscape, run)
    return Runner(landscape, ctx)


def _record_resume(landscape: Landscape, run: Run) -> None:
    recorder = Recorder(landscape)
    with landscape.engine.connect() as conn:
        done = conn.execute(select(checkpoints.c.chunk_index)
                            .where(checkpoints.c.run_id == run.run_id)).scalars().all()
    with recorder.unit(run.run_id) as uow:
        uow.update("runs", {"run_id": run.run_id}, {
            "status": RunStatus.RUNNING, "termination_reason": None, "ended_at": None,
            "resume_count": run.resume_count + 1, "last_resumed_at": uow.now})
        uow.add(make_event("run.resumed", scope=run.run_id, source="engine",
                           tenant_id=run.tenant_id, timestamp=uow.now,
                           payload={"run_id": run.run_id, "from_status": run.status.value,
                                    "resume_count": run.resume_count + 1,
                                    "checkpoints": len(done),
                                    "chunks_done": sorted(c for c in done if c >= 0)[-1:]}))
    recorder.heartbeat(run.run_id, _worker())


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = ["resume", "sweep_abandoned", "mark_abandoned", "worker_alive", "to_iso"]

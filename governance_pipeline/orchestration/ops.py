"""The stages of a pipeline run as Dagster ops (annotations stay evaluated: Dagster reads them).

``open_run`` → ``read_source`` (one dynamic output per group of staged chunks) → ``process_chunks``
(mapped) → ``final_step`` (fan-in: end-of-source aggregation flushes) → ``close_run`` (sink
promotion, seal, sweep). The ops call the same engine steps the command line always called, so
the audit trail does not depend on the executor; what they pass each other is small: the
Landscape run id and references to chunk files staged on disk.

Every op after ``open_run`` first *attaches* to the Landscape run (``lifecycle.attach``): in the
Dagster run that opened it that is a read; in a re-execution it resumes the run exactly once;
chunks already checkpointed are skipped. A failing op records the failure in the Landscape run
before Dagster records it, so the audit trail says why even when no sensor is running.
"""


import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    Config,
    ConfigurableResource,
    DagsterRunStatus,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    op,
)
from pydantic import Field

from governance_pipeline.contracts.enums import RunStatus
from governance_pipeline.contracts.errors import (
    SWEEP_FINDINGS,
    ConfigError,
    GovernanceError,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.engine import code_identity
from governance_pipeline.engine.config import PipelineConfig, load_pipeline
from governance_pipeline.engine.confinement import check_sink_paths
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.resume import PIPELINE_CHANGED, RUN_NOT_RESUMABLE
from governance_pipeline.engine.runner import FINAL_CHUNK, Runner, config_hash, iter_chunks
from governance_pipeline.governance.policy.runtime import policy_for_new_run, policy_for_run
from governance_pipeline.governance.operator_log import OperatorAction, operator_action
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.orchestration import lifecycle, preflight
from governance_pipeline.orchestration.pipeline_assets import pipeline_assets
from governance_pipeline.orchestration.pipeline_reports import published_events
from governance_pipeline.orchestration.actors import run_actor, run_surface
from governance_pipeline.orchestration.run_audit import run_inputs, snapshot_inputs
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline.orchestration.step_failures import (
    StopCatcher,
    problem_metadata,
    recording_failures,
    report_stop,
)
from governance_pipeline.orchestration.staging import (
    ChunkGroup,
    discard_staging,
    group_chunks,
    load_chunk,
    stage_chunk,
)

#: With ``chunks_per_step`` 0, chunks are grouped so a run has at most this many chunk steps:
#: each step costs tens of milliseconds in process and seconds in a multiprocess executor.
MAX_CHUNK_STEPS = 50

_OVER = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class PipelineFile(ConfigurableResource):  # type: ignore[misc]
    """The pipeline YAML a job runs; bound per job by the job factory."""

    path: str = Field(description="Absolute path of the pipeline YAML.")
    ir_manifest: str = Field(
        default="", description="JSON of the IR (ir_hash and per-step hashes) this job was "
                                "built from when the code location loaded; a run whose "
                                "pipeline file no longer matches it is refused (GP-IR-002).")


class PipelineRunConfig(Config):  # type: ignore[misc]
    """Run configuration of a pipeline job (the ``open_run`` op's config).

    The chunk size is not here: it is part of the pipeline's hashed configuration, so a run and
    its resume always cut the source the same way. Change it in the YAML.
    """

    resume_run_id: str | None = Field(
        default=None, description="Continue this failed, interrupted or abandoned Landscape run "
                                  "from its checkpoints instead of starting a new one.")
    chunks_per_step: int = Field(
        default=0, ge=0, description="Chunks each process_chunks step handles; 0 chooses so a "
                                     f"run has at most {MAX_CHUNK_STEPS} chunk steps. Any value "
                                     "gives the same audit trail and outputs.")
    approval_token: str | None = Field(
        default=None, description="Approval token for a pipeline of risk tier 2 or more "
                                  "(`governance-pipeline approvals request`); consumed when the "
                                  "run starts: single use.")
    actor: str | None = Field(default=None, description="Who starts the run (recorded with the "
                                                        "approval it consumes).")
    policy_mode: str | None = Field(
        default=None, description="Mode of the policies that do not state their own, for a new "
                                  "run (off, advisory, enforced); unset: GOVERNANCE_POLICY_MODE "
                                  "or advisory. The kill switch still caps enforced. Recorded in "
                                  "the run's policy snapshot; a resume keeps the snapshot's.")


@dataclass(frozen=True, slots=True)
class OpenedRun:
    """What ``open_run`` hands on: the Landscape run and how to cut the work into steps."""

    run_id: str
    pipeline: str
    config_hash: str
    chunks_per_step: int


@dataclass(frozen=True, slots=True)
class ChunkReport:
    chunks: tuple[int, ...]
    skipped: tuple[int, ...]
    counts: dict[str, int] = field(default_factory=dict)


# --- shared step plumbing ------------------------------------------------------------------------
def _load(pipeline: PipelineFile, landscape: LandscapeResource) -> tuple[Path, PipelineConfig]:
    path = Path(pipeline.path)
    env = landscape.pipeline_env()
    config = load_pipeline(path, env=env)
    # In every step's process, before its sinks are built: no sink may write where it must not.
    check_sink_paths(config, path, landscape.settings(), env)
    return path, config


def _over(context: OpExecutionContext) -> lifecycle.DagsterRunOver:
    def answer(dagster_run_id: str) -> bool | None:
        record = context.instance.get_run_by_id(dagster_run_id)
        return None if record is None else record.status in _OVER
    return answer


def _attached_runner(context: OpExecutionContext, ls: Landscape, opened: OpenedRun,
                     path: Path, config: PipelineConfig) -> Runner:
    worker = lifecycle.run_worker_identity()
    attachment = lifecycle.attach(ls, opened.run_id, dagster_run_id=context.run_id,
                                  worker=worker, config_hash=config_hash(config),
                                  dagster_run_over=_over(context))
    if attachment.resumed:
        context.log.info(f"Landscape run {opened.run_id} resumed by this Dagster run "
                         f"(resume #{attachment.run.resume_count})")
        _tag(context, opened.run_id, path, config)
    ctx = RunContext.build(opened.run_id, config, path.parent, ls.clock,
                           attachment.run.policy_snapshot_id,
                           policy=policy_for_run(ls, attachment.run, config))
    runner = Runner(ls, ctx)
    runner.worker = worker
    return runner


def _tag(context: OpExecutionContext, run_id: str, path: Path, config: PipelineConfig) -> None:
    context.instance.add_run_tags(context.run_id, {
        lifecycle.TAG_RUN_ID: run_id, lifecycle.TAG_PIPELINE: config.name,
        lifecycle.TAG_PIPELINE_PATH: str(path)})


def _counts_metadata(counts: dict[str, int]) -> dict[str, Any]:
    return {f"outcome/{k}": MetadataValue.int(v) for k, v in sorted(counts.items())}


# --- the ops -------------------------------------------------------------------------------------
@op(out=Out(OpenedRun), description="Open the Landscape run (new, or a resume): validate the "
    "pipeline, record run, nodes and edges, link the Dagster run.")
def open_run(context: OpExecutionContext, config: PipelineRunConfig,
             landscape: LandscapeResource, pipeline: PipelineFile) -> OpenedRun:
    run_id = config.resume_run_id
    with recording_failures(context, None, None):  # nothing to record in before a run exists
        path, pipeline_config = _load(pipeline, landscape)
        ls = landscape.landscape()
        actor, surface = run_actor(config.actor, context.run.tags), run_surface(context.run.tags)
        inputs = run_inputs(path, pipeline_config, policy_mode=config.policy_mode,
                            dagster_run_id=context.run_id)
        if run_id is None:
            run_id = new_id("run_")
            with operator_action(ls, action=OperatorAction.RUN, actor=actor, subject=run_id,
                                 surface=surface, inputs=inputs) as act:
                preflight.clear_to_start(ls, pipeline_config, path, run_id=run_id,
                                         manifest=pipeline.ir_manifest or None,
                                         approval_token=config.approval_token, actor=actor)
                # The policies in force now, stored before the run is: the run names it.
                policy = policy_for_new_run(ls, pipeline_config, path.parent, run_id,
                                            mode_override=config.policy_mode)
                act.inputs.update(snapshot_inputs(policy))
                Runner.start(ls, pipeline_config, base_dir=path.parent, pipeline_path=path,
                             run_id=run_id, policy=policy,
                             records=[act.event_for(run_id, Recorder(ls).now())])
            lifecycle.link_dagster_run(ls, run_id, context.run_id,
                                       lifecycle.run_worker_identity())
        else:
            with operator_action(ls, action=OperatorAction.RESUME, actor=actor, subject=run_id,
                                 surface=surface, inputs=inputs) as act:
                _check_resumable(ls, run_id, path)
                with ls.engine.connect() as conn:  # GP-CODE-001 before the run is claimed
                    code_identity.require_unchanged(conn, run_id, code_identity.current_identities(
                        run_id, pipeline_config, path.parent, ""))
                # A resume runs under the stored snapshot, verified, never the policy files now.
                resumed = get_run(ls, run_id)
                policy = policy_for_run(ls, resumed, pipeline_config)
                act.inputs.update(snapshot_inputs(policy) if policy else {})
                lifecycle.attach(ls, run_id, dagster_run_id=context.run_id,
                                 worker=lifecycle.run_worker_identity(),
                                 config_hash=config_hash(pipeline_config),
                                 dagster_run_over=_over(context))
    _tag(context, run_id, path, pipeline_config)
    verb = "resumed" if config.resume_run_id else "started"
    context.log.info(f"Landscape run {run_id} {verb}: pipeline {pipeline_config.name}")
    context.add_output_metadata({"landscape_run_id": run_id, "pipeline": pipeline_config.name,
                                 "config_hash": config_hash(pipeline_config),
                                 "chunk_size": pipeline_config.chunk_size})
    return OpenedRun(run_id, pipeline_config.name, config_hash(pipeline_config),
                     config.chunks_per_step)


def _check_resumable(ls: Landscape, run_id: str, path: Path) -> None:
    """A resume names a run of this job's pipeline file that is not finished."""
    run = get_run(ls, run_id)
    if run.pipeline_path is None or Path(run.pipeline_path) != path:
        raise ConfigError(f"run {run_id} ran {run.pipeline_path}, not this job's {path}: resume "
                          "it with the job of its own pipeline", code=PIPELINE_CHANGED,
                          details={"run_pipeline": run.pipeline_path, "job_pipeline": str(path)})
    if run.status is RunStatus.FAILED_POLICY:
        raise ConfigError(f"run {run_id} was stopped by an enforced policy; it is not resumed: "
                          "`governance-pipeline incidents` shows why — start a new run once it "
                          "is dealt with", code=RUN_NOT_RESUMABLE, details={"status": "failed_policy"})
    if run.status is RunStatus.COMPLETED or run.status is RunStatus.CANCELLED:
        raise ConfigError(f"run {run_id} is {run.status.value}; it cannot be resumed",
                          code=RUN_NOT_RESUMABLE, details={"status": run.status.value})


@op(out={"chunks": DynamicOut(ChunkGroup), "manifest": Out(tuple)},
    description="Read the source once and stage every unfinished chunk on disk; one output per "
                "group of chunks (references, not rows), and the list of them all.")
def read_source(context: OpExecutionContext, opened: OpenedRun, landscape: LandscapeResource,
                pipeline: PipelineFile) -> Iterator[DynamicOutput[ChunkGroup] | Output[tuple]]:
    ls = landscape.landscape()
    with recording_failures(context, ls, opened.run_id):
        path, config = _load(pipeline, landscape)
        runner = _attached_runner(context, ls, opened, path, config)
        done = runner.done_chunks()
        size = config.chunk_size
        start = 0
        while start // size in done:  # the finished prefix is not even read
            start += size
        directory = landscape.staging_dir(opened.run_id)
        staged = [stage_chunk(directory, index, records)
                  for index, records in iter_chunks(runner.ctx.plugins.source.read(start),
                                                    size, start)
                  if index not in done]
        per_step = opened.chunks_per_step or max(1, math.ceil(len(staged) / MAX_CHUNK_STEPS))
        groups = group_chunks(staged, per_step)
        context.log.info(f"staged {len(staged)} chunk(s), {sum(s.rows for s in staged)} "
                         f"record(s), in {len(groups)} step(s); {len(done)} checkpoint(s) done")
    yield Output(tuple(staged), output_name="manifest",
                 metadata={"chunks": len(staged), "records": sum(s.rows for s in staged)})
    for group in groups:
        yield DynamicOutput(group, mapping_key=group.mapping_key, output_name="chunks",
                            metadata={"chunks": len(group.chunks), "records": group.rows})


@op(out=Out(ChunkReport), description="Process, sink and checkpoint each chunk of the group; "
    "chunks already checkpointed are skipped. An enforced policy stop fails the sinks' policy "
    "check (blocking), which fails the step.")
def process_chunks(context: OpExecutionContext, opened: OpenedRun, group: ChunkGroup,
                   landscape: LandscapeResource, pipeline: PipelineFile) -> Iterator[Any]:
    ls = landscape.landscape()
    stop = StopCatcher()
    counts: dict[str, int] = {}
    processed: list[int] = []
    with recording_failures(context, ls, opened.run_id, stop):
        path, config = _load(pipeline, landscape)
        runner = _attached_runner(context, ls, opened, path, config)
        runner.on_chunk = _progress(context, opened.run_id)
        done = runner.done_chunks()
        for staged in group.chunks:
            if staged.index in done:
                context.log.info(f"chunk {staged.index} already checkpointed: skipped")
                continue
            if _stopped_by_policy(ls, opened.run_id):
                context.log.warning(f"run {opened.run_id} was stopped by an enforced policy: "
                                    f"chunk {staged.index} not processed")
                break
            processed.append(staged.index)
            _add(counts, runner.process_chunk(staged.index, load_chunk(staged)))
    if stop.error is not None:
        yield from report_stop(context, ls, opened.run_id, config, stop.error)
    skipped = tuple(c.index for c in group.chunks if c.index not in processed)
    yield Output(ChunkReport(tuple(processed), skipped, counts),
                 metadata={"chunks_processed": len(processed), "chunks_skipped": len(skipped),
                           **_counts_metadata(counts)})


def _stopped_by_policy(ls: Landscape, run_id: str) -> bool:
    return get_run(ls, run_id).status is RunStatus.FAILED_POLICY


def _progress(context: OpExecutionContext, run_id: str) -> Any:
    def on_chunk(index: int, counts: dict[str, int]) -> None:
        label = "final step" if index < 0 else f"chunk {index}"
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no tokens"
        context.log.info(f"{run_id} {label}: {summary}")
    return on_chunk


@op(out=Out(ChunkReport), description="After every chunk: process any chunk whose step did "
    "not (see below), then flush what aggregations still buffer (end-of-source batches).")
def final_step(context: OpExecutionContext, opened: OpenedRun, manifest: tuple,
               reports: list[ChunkReport], landscape: LandscapeResource,
               pipeline: PipelineFile) -> Iterator[Any]:
    ls = landscape.landscape()
    stop = StopCatcher()
    counts: dict[str, int] = {}
    processed: list[int] = []
    missing: list[Any] = []
    with recording_failures(context, ls, opened.run_id, stop):
        path, config = _load(pipeline, landscape)
        runner = _attached_runner(context, ls, opened, path, config)
        runner.on_chunk = _progress(context, opened.run_id)
        done = runner.done_chunks()
        # Dagster's re-execution from failure re-runs failed mapped steps but drops those that
        # never started: a chunk is only done when its checkpoint says so, whoever processed it.
        missing = [staged for staged in manifest if staged.index not in done]
        if missing:
            context.log.warning(f"{len(missing)} chunk(s) had no step that processed them "
                                f"({', '.join(str(s.index) for s in missing)}): processed here")
        for staged in missing:
            processed.append(staged.index)
            _add(counts, runner.process_chunk(staged.index, load_chunk(staged)))
        if FINAL_CHUNK not in done:
            processed.append(FINAL_CHUNK)
            _add(counts, runner.process_chunk(FINAL_CHUNK, []))
    if stop.error is not None:
        yield from report_stop(context, ls, opened.run_id, config, stop.error)
    yield Output(ChunkReport(tuple(processed), (), counts),
                 metadata={"chunk_steps": len(reports), "chunks_caught_up": len(missing),
                           **_counts_metadata(counts)})


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for outcome, n in counts.items():
        total[outcome] = total.get(outcome, 0) + n


@op(out=Out(dict), description="Promote sink parts to final artifacts, record them, close and "
    "seal the run, sweep it; materialise the sink assets (rows, sha256, Landscape run id) and "
    "evaluate their policy checks; metadata: outcome counts and sink digests.")
def close_run(context: OpExecutionContext, opened: OpenedRun, final: ChunkReport,
              landscape: LandscapeResource, pipeline: PipelineFile) -> dict[str, Any]:
    ls = landscape.landscape()
    with recording_failures(context, ls, opened.run_id):
        path, config = _load(pipeline, landscape)
        runner = _attached_runner(context, ls, opened, path, config)
        if get_run(ls, opened.run_id).status is RunStatus.COMPLETED:
            result = lifecycle.run_result(ls, opened.run_id)
        else:
            result = runner.finalize()
        discard_staging(landscape.staging_dir(opened.run_id))
    swept = sweep(ls, opened.run_id)
    doc = result.as_dict()
    context.add_output_metadata({
        "landscape_run_id": result.run_id, "status": result.status.value,
        **_counts_metadata(result.outcome_counts),
        "sinks": MetadataValue.json(doc["sinks"]),
        **{f"sink/{s.sink}/sha256": s.sha256 for s in result.sinks},
        **{f"sink/{s.sink}/rows": MetadataValue.int(s.row_count) for s in result.sinks},
        "sweep_findings": MetadataValue.int(len(swept.findings))})
    for finding in swept.findings:
        context.log.error(f"[{finding.check}] {finding.table} {finding.key}: {finding.message}")
    # The sink assets and their policy checks, as the Landscape recorded the run.
    for event in published_events(ls, opened.run_id, pipeline_assets(config)):
        context.log_event(event)
    if swept.findings:
        exc = GovernanceError(f"the sweep of run {result.run_id} found {len(swept.findings)} "
                              "broken invariant(s)", code=SWEEP_FINDINGS,
                              details={"run_id": result.run_id,
                                       "findings": [f.as_dict() for f in swept.findings[:50]]})
        raise Failure(description=f"{exc.code.code}: {exc.message}",
                      metadata=problem_metadata(exc, result.run_id), allow_retries=False)
    context.log.info(f"Landscape run {result.run_id} {result.status.value}: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(result.outcome_counts.items())))
    return doc

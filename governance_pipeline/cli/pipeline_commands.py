"""Pipeline commands: ``validate``, ``run`` and ``resume`` (``explain`` is explain_commands.py).

``run`` and ``resume`` execute the pipeline's Dagster job on the local instance
(``governance_pipeline.orchestration.local``): every run is a Dagster run, whoever starts it.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.approval_commands import default_actor
from governance_pipeline.cli.ir_report import report_lines, validation_report
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.clock import SYSTEM_CLOCK
from governance_pipeline.contracts.enums import PolicyMode, RunStatus
from governance_pipeline.contracts.errors import ConfigError, ExitCode
from governance_pipeline.contracts.records import Run
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine import code_identity
from governance_pipeline.engine.config import PipelineConfig, load_pipeline
from governance_pipeline.engine.confinement import check_sink_paths
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.runner import RunResult, config_hash
from governance_pipeline.governance.ir.record import record_validation
from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorResult,
    operator_action,
    record_operator_action,
)
from governance_pipeline.governance.ir.risk import Outcome, rejection, validate_ir
from governance_pipeline.governance.policy.runtime import preview_policy
from governance_pipeline.landscape.code_manifest import identity_view


def _pipeline_env(settings: Settings) -> None:
    """Pipelines may write under ``${GOVERNANCE_HOME}``: make it the resolved, absolute home."""
    os.environ["GOVERNANCE_HOME"] = str(settings.home)


def _load(state: CliState, path: Path) -> PipelineConfig:
    _pipeline_env(state.settings())
    return load_pipeline(path.resolve())


@click.command("validate")
@reporting
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--record", is_flag=True,
              help="Also record the ir.validated_* event in the Landscape (GOVERNANCE_DB_URL).")
def validate_cmd(state: CliState, pipeline: Path, record: bool) -> int:
    """Check a pipeline file: schema, wiring, plugins and their options, expressions; then its
    risk tier (pass / escalate / reject) and IR hash. Exits 2 when the IR is rejected."""
    config = _load(state, pipeline)
    validation = validate_ir(config)
    base_dir = pipeline.resolve().parent
    preview = preview_policy(config, base_dir)
    ctx = RunContext.build("validate", config, base_dir, SYSTEM_CLOCK, policy=preview)
    check_sink_paths(config, pipeline.resolve(), state.settings())
    if record:
        with open_landscape(state.settings(), create=True) as landscape:
            record_validation(landscape, validation, tenant_id=config.tenant)
    rejected = rejection(validation) if validation.outcome is Outcome.REJECT else None
    doc = {"file": str(pipeline), "valid": rejected is None, "pipeline": config.name,
           "tenant": config.tenant, "config_hash": config_hash(config),
           "chunk_size": config.chunk_size,
           "nodes": [{"id": n.id, "kind": n.kind} for n in ctx.graph.order],
           "sinks": {name: s.plugin for name, s in config.sinks.items()},
           "policies": preview.describe() if preview is not None else None,
           # The code a run started now would record (its manifest), each node's identity.
           "code": [identity_view(r) for r in code_identity.identities(
               "validate", ctx.graph, ctx.plugins, "")],
           **validation_report(config, pipeline, validation)}
    if state.json:
        if rejected is not None:
            doc["problem"] = rejected.problem()
        state.emit(doc)
        return int(rejected.exit_code) if rejected else 0
    verdict = "valid" if rejected is None else "rejected"
    state.say(f"{pipeline}: {verdict} pipeline '{config.name}' (tenant {config.tenant})")
    state.say(f"config hash {doc['config_hash']}")
    state.say("nodes: " + " → ".join(f"{n['id']} ({n['kind']})" for n in doc["nodes"]))
    state.say("sinks: " + ", ".join(f"{k} ({v})" for k, v in doc["sinks"].items()))
    for node in doc["code"]:
        if node["function"]:
            state.say(f"code: {node['node_id']} runs {node['function']} ({node['module_path']}, "
                      f"sha256 {node['source_sha256']})")
    if preview is not None:
        policies = doc["policies"]
        state.say(f"policies (snapshot sha256 {policies['snapshot_hash']} if a run started now; "
                  f"default mode {policies['default_mode']}"
                  + (", KILL SWITCH ON" if policies["kill_switch"] else "") + "):")
        for p in policies["policies"]:
            how = "declared" if p["declared_mode"] else "default"
            state.say(f"  {p['policy']} v{p['version']}: {p['mode']} ({how}), {p['rules']} "
                      f"rule(s), evaluated at {', '.join(p['evaluated_at']) or 'nowhere'}")
    for line in report_lines(doc):
        state.say(line)
    if rejected is not None:
        click.echo(f"error {rejected.code.code}: {rejected.message}", err=True)
        click.echo(f"fix: {rejected.code.fix}", err=True)
        return int(rejected.exit_code)
    return 0


def _report(state: CliState, result: RunResult) -> int:
    code = 0 if result.status is RunStatus.COMPLETED else 1
    if state.json:
        state.emit(result.as_dict())
        return code
    state.say(f"run {result.run_id}: {result.status.value} "
              f"({result.termination_reason.value if result.termination_reason else '-'})")
    state.say("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.outcome_counts.items())))
    for line in table(["sink", "rows", "sha256", "path"],
                      [[s.sink, str(s.row_count), s.sha256[:16] + "…", s.path_or_uri]
                       for s in result.sinks]):
        state.say(line)
    state.note(f"next: governance-pipeline explain {result.run_id} --row 0 · "
               f"governance-pipeline verify {result.run_id}")
    return code


_EXECUTOR = click.option(
    "--executor", type=click.Choice(["in_process", "multiprocess"]), default="in_process",
    show_default=True, help="Dagster executor: steps in this process, or in subprocesses "
                            "(same audit trail and outputs either way).")


def _run_job(state: CliState, path: Path, *, executor: str,
             resume_run_id: str | None = None, policy_mode: str | None = None,
             approval_token: str | None = None) -> int:
    """Execute the pipeline's Dagster job on the local instance and report its Landscape run."""
    from governance_pipeline.orchestration import local

    settings = state.settings()
    config = local.run_config(resume_run_id=resume_run_id, executor=executor,
                              log_level="WARNING" if state.json else "INFO",
                              policy_mode=policy_mode, approval_token=approval_token,
                              actor=default_actor(), tracebacks=state.debug)
    with open_landscape(settings, create=resume_run_id is None) as landscape, \
            local.open_instance(settings) as instance:
        job_run, result = local.execute_pipeline(instance, path, config,
                                                 tags={"governance/launched_by": "cli"})
        state.note(f"Dagster run {job_run.dagster_run_id} (Landscape run "
                   f"{job_run.landscape_run_id or '-'})")
        return _report(state, local.finish(landscape, job_run, result))


@click.command("run")
@reporting
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@_EXECUTOR
@click.option("--policy-mode", type=click.Choice([m.value for m in PolicyMode]), default=None,
              help="Mode of the policies that do not state their own, for this run (default: "
                   "$GOVERNANCE_POLICY_MODE or advisory); the kill switch still applies.")
@click.option("--approval-token", envvar="GOVERNANCE_APPROVAL_TOKEN", default=None,
              help="Approval token for a pipeline of risk tier 2 or more (from `approvals "
                   "request`); consumed when the run starts. Also $GOVERNANCE_APPROVAL_TOKEN.")
def run_cmd(state: CliState, pipeline: Path, executor: str, policy_mode: str | None,
            approval_token: str | None) -> int:
    """Run a pipeline as a Dagster run on the local instance (DAGSTER_HOME, default
    $GOVERNANCE_HOME/dagster); progress on stderr, the result (counts, sinks and digests) on
    stdout. Exit 3 if an enforced policy stops it (see `incidents`)."""
    path = pipeline.resolve()
    _load(state, path)  # configuration errors are reported here, before any run exists
    return _run_job(state, path, executor=executor, policy_mode=policy_mode,
                    approval_token=approval_token)


@click.command("resume")
@reporting
@click.argument("run_id")
@_EXECUTOR
def resume_cmd(state: CliState, run_id: str, executor: str) -> int:
    """Continue a failed, interrupted or abandoned run from its checkpoints (a new Dagster run
    of the pipeline's job, continuing the same Landscape run)."""
    from governance_pipeline.engine.resume import PIPELINE_CHANGED, RUN_NOT_RESUMABLE
    from governance_pipeline.landscape.queries import get_run

    _pipeline_env(state.settings())
    with open_landscape(state.settings()) as landscape:
        run = get_run(landscape, run_id)
        if run.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
            refused = ConfigError(f"run {run_id} is {run.status.value}; it cannot be resumed",
                                  code=RUN_NOT_RESUMABLE, details={"status": run.status.value})
            # Refused here, before any Dagster run: logged here (the job logs the others).
            record_operator_action(landscape, action=OperatorAction.RESUME,
                                   actor=default_actor(), subject=run_id,
                                   inputs={"run_id": run_id, "status": run.status.value},
                                   result=OperatorResult.REFUSED, code=refused.code,
                                   detail=refused.message)
            raise refused
    if run.status is RunStatus.FAILED_POLICY:
        return _finish_stopped(state, run)
    if not run.pipeline_path or not Path(run.pipeline_path).is_file():
        raise ConfigError(f"run {run_id}: its pipeline file {run.pipeline_path!r} is missing",
                          code=PIPELINE_CHANGED, details={"run_id": run_id})
    return _run_job(state, Path(run.pipeline_path), executor=executor, resume_run_id=run_id)


def _finish_stopped(state: CliState, run: Run) -> int:
    """A run stopped by policy is not resumed; if its process died before it published the rows
    written before the stop, they are published now. Exit 3 either way: the run stays stopped."""
    from governance_pipeline.engine.resume import RUN_NOT_RESUMABLE
    from governance_pipeline.governance.policy.runtime import publish_stopped_run

    with open_landscape(state.settings()) as landscape, \
            operator_action(landscape, action=OperatorAction.RESUME, actor=default_actor(),
                            subject=run.run_id, inputs={"run_id": run.run_id,
                                                        "status": run.status.value,
                                                        "publishes_stopped_output": True}):
        published, result = publish_stopped_run(landscape, run)
        if not published:  # logged as refused: nothing to publish, the run stays stopped
            raise ConfigError(f"run {run.run_id} was stopped by an enforced policy; it is not "
                              "resumed: `governance-pipeline incidents --run RUN_ID` shows why; "
                              "start a new run once that is dealt with", code=RUN_NOT_RESUMABLE,
                              details={"status": run.status.value})
    state.note(f"run {run.run_id} was stopped by an enforced policy; the rows written before "
               "the stop were not yet published and now are (the run stays stopped)")
    _report(state, result)
    return int(ExitCode.POLICY_STOP)


COMMANDS = (validate_cmd, run_cmd, resume_cmd)

"""Recording a policy stop: the inflection point, the incident and the closed run, in one commit.

``record_stop`` adds to the stopping chunk's own unit, so the chunk's records, its checkpoint
(the rows before the inflection point were written durably), the inflection point, the incident
and the run's new status ``failed_policy`` are one transaction: there is no state in which the
run stopped without an incident, or an incident exists for a run still taking chunks.
``publish_stopped_output`` then promotes what the sinks hold — only rows before the inflection
point — to the run's artifacts, which the incident's lineage lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from governance_pipeline.contracts.enums import (
    IncidentSeverity,
    IncidentStatus,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import Incident, InflectionPoint
from governance_pipeline.engine.trail import dumps
from governance_pipeline.landscape.recorder import UnitOfWork
from governance_pipeline.landscape.schema import artifacts, checkpoints, token_outcomes

if TYPE_CHECKING:
    from governance_pipeline.engine.processor import ChunkProcessor
    from governance_pipeline.engine.runner import Runner

_SEVERITY = {"info": IncidentSeverity.LOW, "low": IncidentSeverity.LOW,
             "medium": IncidentSeverity.MEDIUM, "high": IncidentSeverity.HIGH,
             "critical": IncidentSeverity.CRITICAL}


def inflection_id(run_id: str) -> str:
    return f"{run_id}.inflection"


def _written_before(runner: Runner, proc: ChunkProcessor) -> dict[str, Any]:
    """What the run wrote before the stop: checkpointed chunks, and rows per sink."""
    with runner.landscape.engine.connect() as conn:
        chunks = sorted(conn.execute(select(checkpoints.c.chunk_index)
                                     .where(checkpoints.c.run_id == runner.run_id)).scalars())
        per_sink = dict(conn.execute(
            select(token_outcomes.c.sink_name, func.count())
            .where(token_outcomes.c.run_id == runner.run_id,
                   token_outcomes.c.sink_name.is_not(None), token_outcomes.c.is_terminal == 1)
            .group_by(token_outcomes.c.sink_name)).all())
    for sink, rows in proc.written.items():
        per_sink[sink] = per_sink.get(sink, 0) + rows
    return {"chunks": [*chunks, proc.chunk_index],
            "rows_per_sink": {name: per_sink.get(name, 0) for name in runner.ctx.config.sinks}}


def record_stop(runner: Runner, uow: UnitOfWork, proc: ChunkProcessor) -> None:
    stop = proc.stop
    assert stop is not None
    ctx, block, now = runner.ctx, stop.block, uow.now
    hook = ctx.policy
    assert hook is not None and ctx.policy_snapshot_id is not None
    run_id = runner.run_id
    point = InflectionPoint(inflection_id(run_id), run_id, stop.token_id, stop.row_index,
                            stop.node_id, stop.step_index, block.decision_id,
                            ctx.policy_snapshot_id, block.policy_id, block.rule_id, block.reason,
                            now)
    written = _written_before(runner, proc)
    summary = (f"Run {run_id} of pipeline {ctx.config.name} was stopped by enforced policy "
               f"{block.policy_id} (rule {block.rule_id}, {block.severity}) at source row "
               f"{stop.row_index}, node {stop.node_id}.")
    context = {"decision_id": block.decision_id, "snapshot_hash": hook.snapshot_hash,
               "severity": block.severity, "fix": block.fix, "row_index": stop.row_index,
               "pipeline": ctx.config.name, "chunk_index": proc.chunk_index,
               "blocked_tokens": sorted(proc.blocked), "written_before_stop": written}
    incident = Incident(new_id("inc_"), run_id, _SEVERITY[block.severity], IncidentStatus.OPEN,
                        summary, ctx.policy_snapshot_id, block.policy_id, block.rule_id,
                        stop.token_id, stop.node_id, stop.step_index, block.reason,
                        dumps(context), now, point.inflection_id)
    uow.add(point)
    uow.add(incident)
    tenant = ctx.config.tenant
    uow.add(make_event("policy.blocked", scope=run_id, source="policy", tenant_id=tenant,
                       timestamp=now, payload={
                           "run_id": run_id, "decision_id": block.decision_id,
                           "policy_id": block.policy_id, "rule_id": block.rule_id,
                           "severity": block.severity, "token_id": stop.token_id,
                           "row_index": stop.row_index, "node_id": stop.node_id,
                           "step_index": stop.step_index, "snapshot_id": ctx.policy_snapshot_id,
                           "snapshot_hash": hook.snapshot_hash, "reason": block.reason}))
    uow.add(make_event("incident.opened", scope=run_id, source="policy", tenant_id=tenant,
                       timestamp=now, payload={
                           "incident_id": incident.incident_id, "run_id": run_id,
                           "severity": incident.severity.value, "summary": summary,
                           "inflection_id": point.inflection_id}))
    runner.close_in(uow, RunStatus.FAILED_POLICY, TerminationReason.POLICY_BLOCK,
                    {"code": "GP-POLICY-001", "incident_id": incident.incident_id,
                     "inflection_id": point.inflection_id})


def output_published(runner: Runner) -> bool:
    with runner.landscape.engine.connect() as conn:
        return conn.execute(select(artifacts.c.artifact_id)
                            .where(artifacts.c.run_id == runner.run_id).limit(1)).first() \
            is not None


def publish_stopped_output(runner: Runner) -> bool:
    """Promote the rows written before the inflection point to the run's artifacts; False if
    they already were. Safe to repeat after a crash between the stop and the promotion: a sink
    that promoted its parts already reports its finished output."""
    if output_published(runner):
        return False
    with runner.recorder.unit(runner.run_id, seal=True) as uow:
        promoted = runner.promote_sinks(uow)
        uow.add(make_event("run.output_published", scope=runner.run_id, source="engine",
                           tenant_id=runner.ctx.config.tenant, timestamp=uow.now, payload={
                               "run_id": runner.run_id, "reason": "policy_stop",
                               "artifacts": [{"sink": a.sink_node_id, "path": a.path_or_uri,
                                              "rows": a.row_count, "sha256": a.content_hash}
                                             for a in promoted]}))
    return True

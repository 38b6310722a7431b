"""The executive debrief of one incident: what happened, in plain language, and what it cost.

Built from the incident, its run, the run's inflection point, the policy snapshot (for the
violated rule's suggested fix), the run's token outcomes (rows delivered and stopped) and its
recorded calls (cost).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, distinct, func, select

from governance_pipeline.contracts.clock import from_iso, to_iso
from governance_pipeline.contracts.enums import NodeType, Outcome, RunStatus
from governance_pipeline.contracts.errors import NotFoundError
from governance_pipeline.contracts.records import Incident, InflectionPoint, PolicySnapshotRecord, Run
from governance_pipeline.governance.exports import reads
from governance_pipeline.governance.exports.models import (
    BusinessImpact,
    ExecutiveDebrief,
    TimelineEntry,
)
from governance_pipeline.landscape.queries import get_run, reading
from governance_pipeline.landscape.schema import (
    calls,
    incidents,
    inflection_points,
    nodes,
    policy_snapshots,
    rows,
    token_outcomes,
    tokens,
)
from governance_pipeline.landscape.store import Landscape

_DELIVERED = (Outcome.COMPLETED.value, Outcome.ROUTED.value)


def build_debrief(landscape: Landscape, incident_id: str) -> ExecutiveDebrief:
    """The debrief of ``incident_id`` (``NotFoundError`` if there is no such incident)."""
    with reading(landscape, snapshot=True) as conn:
        row = conn.execute(select(incidents).where(incidents.c.incident_id == incident_id)
                           ).mappings().first()
        if row is None:
            raise NotFoundError(f"no incident {incident_id!r} in this Landscape",
                                details={"incident_id": incident_id})
        incident = Incident.from_row(row)
        run = get_run(conn, incident.run_id)
        # The incident names its inflection point; an incident without one (raised another
        # way) is not explained by the run's stop.
        point_row = None if incident.inflection_id is None else conn.execute(
            select(inflection_points).where(
                inflection_points.c.inflection_id == incident.inflection_id)).mappings().first()
        point = InflectionPoint.from_row(point_row) if point_row else None
        impact = _impact(conn, run)
        entered = _row_entered(conn, run.run_id, point)
        ttd, basis = _time_to_detect(run, incident, point, entered)
        cost, n_calls = conn.execute(select(func.coalesce(func.sum(calls.c.cost), 0.0),
                                            func.count()).where(calls.c.run_id == run.run_id)).one()
        policy_id = point.policy_id if point else incident.policy_id
        rule_id = point.rule_id if point else incident.rule_id
        reason = point.reason if point else incident.reason
        return ExecutiveDebrief(
            title=f"Executive debrief: incident {incident_id}", subject=incident_id,
            tenant_id=run.tenant_id, generated_at=to_iso(landscape.clock.now()),
            ledger_heads=reads.ledger_heads(conn, [run.run_id]), run_id=run.run_id,
            pipeline_name=run.pipeline_name,
            summary=_summary(run, incident, point, impact, policy_id, rule_id, reason),
            risk_level=incident.severity.value, policy_id=policy_id, rule_id=rule_id,
            violation_reason=reason, business_impact=impact,
            timeline=_timeline(run, incident, point, entered), time_to_detect_seconds=ttd,
            time_to_detect_basis=basis, cost=float(cost), cost_calls=int(n_calls),
            recommended_actions=_actions(conn, run, policy_id, rule_id, incident),
            remediation_status=incident.status.value, resolution=incident.resolution)


def _impact(conn: Connection, run: Run) -> BusinessImpact:
    read = conn.execute(select(func.count()).select_from(rows)
                        .where(rows.c.run_id == run.run_id)).scalar_one()
    written = conn.execute(
        select(func.count(distinct(tokens.c.row_id)))
        .join(token_outcomes, token_outcomes.c.token_id == tokens.c.token_id)
        .where(tokens.c.run_id == run.run_id, token_outcomes.c.outcome.in_(_DELIVERED))
    ).scalar_one()
    stopped = read - written
    sinks: list[str] = []
    if run.status is not RunStatus.COMPLETED:
        sinks = list(conn.execute(select(nodes.c.node_id).where(
            nodes.c.run_id == run.run_id, nodes.c.node_type == NodeType.SINK.value)
            .order_by(nodes.c.position, nodes.c.node_id)).scalars())
    if run.status is RunStatus.COMPLETED:
        text = (f"The run completed: all {read} rows read were processed; {written} were "
                "delivered to the pipeline's outputs.")
    else:
        text = (f"The run ended before finishing ({run.status.value}). {written} of the {read} "
                f"rows read had been delivered; {stopped} were held back and not delivered. "
                f"Outputs affected: {', '.join(sinks) or 'none recorded'}.")
    return BusinessImpact(rows_read=read, rows_written_before_stop=written, rows_stopped=stopped,
                          sinks_affected=sinks, description=text)


def _row_entered(conn: Connection, run_id: str, point: InflectionPoint | None) -> str | None:
    if point is None:
        return None
    return conn.execute(select(rows.c.created_at).where(
        rows.c.run_id == run_id, rows.c.row_index == point.row_index)).scalar_one_or_none()


def _time_to_detect(run: Run, incident: Incident, point: InflectionPoint | None,
                    entered: str | None) -> tuple[float | None, str]:
    if point is not None and entered is not None:
        seconds = (from_iso(point.occurred_at) - from_iso(entered)).total_seconds()
        return max(seconds, 0.0), "from the violating row's entry into the run to the stop"
    if point is not None:
        return ((from_iso(point.occurred_at) - from_iso(run.started_at)).total_seconds(),
                "from the run's start to the stop")
    return ((from_iso(incident.detected_at) - from_iso(run.started_at)).total_seconds(),
            "from the run's start to the incident's detection")


def _summary(run: Run, incident: Incident, point: InflectionPoint | None, impact: BusinessImpact,
             policy_id: str | None, rule_id: str | None, reason: str | None) -> str:
    day = run.started_at[:10]
    if point is not None:
        what = (f"On {day} the data pipeline '{run.pipeline_name}' was stopped automatically by "
                f"policy '{policy_id}' (rule '{rule_id}') while processing source row "
                f"{point.row_index} at step '{point.node_id}'.")
    else:
        what = (f"On {day} an incident was raised for the data pipeline "
                f"'{run.pipeline_name}': {incident.summary}.")
    why = f" Reason: {reason}." if reason else ""
    return (f"{what}{why} {impact.rows_written_before_stop} rows had been delivered before the "
            f"stop and {impact.rows_stopped} were held back. The incident is "
            f"{incident.status.value}.")


def _timeline(run: Run, incident: Incident, point: InflectionPoint | None,
              entered: str | None) -> list[TimelineEntry]:
    entries = [TimelineEntry(at=run.started_at, event=f"Run {run.run_id} started")]
    if point is not None and entered is not None:
        entries.append(TimelineEntry(at=entered, event=f"Row {point.row_index} entered the run"))
    if point is not None:
        entries.append(TimelineEntry(at=point.occurred_at, event=(
            f"Policy {point.policy_id} rule {point.rule_id} stopped the run at step "
            f"{point.node_id} (inflection point)")))
    entries.append(TimelineEntry(at=incident.detected_at,
                                 event=f"Incident {incident.incident_id} opened ({incident.severity.value})"))
    if run.ended_at is not None:
        entries.append(TimelineEntry(at=run.ended_at, event=f"Run ended: {run.status.value}"))
    if incident.resolved_at is not None:
        entries.append(TimelineEntry(at=incident.resolved_at, event="Incident resolved"))
    return sorted(entries, key=lambda e: e.at)


def _actions(conn: Connection, run: Run, policy_id: str | None, rule_id: str | None,
             incident: Incident) -> list[str]:
    actions = []
    # The stop records the violated rule's fix with the incident; else look it up in the run's
    # policy snapshot.
    fix = json.loads(incident.context_json).get("fix") if incident.context_json else None
    if not fix and run.policy_snapshot_id is not None and policy_id is not None:
        snap = PolicySnapshotRecord.from_row(conn.execute(select(policy_snapshots).where(
            policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).mappings().one())
        fix = rule_fix(json.loads(snap.policies_json), policy_id, rule_id)
    if fix:
        actions.append(fix)
    actions.append(f"Review the rows held back by run {run.run_id} "
                   f"(`governance-pipeline explain {run.run_id} --row N`) before re-running.")
    if incident.status.value != "resolved":
        actions.append("Assign an owner and record the resolution on the incident.")
    return actions


def rule_fix(policies: Any, policy_id: str, rule_id: str | None) -> str | None:
    """The violated rule's ``fix`` text in a policy snapshot (a list of policies or a mapping
    of policy id to policy; each policy with ``rules`` as a list or a mapping)."""
    if isinstance(policies, dict) and "policies" in policies:
        policies = policies["policies"]
    # A stored snapshot lists {"policy": id, "definition": {... "rules": [...]}}.
    candidates = (policies.items() if isinstance(policies, dict)
                  else ((p.get("policy") or p.get("id") or p.get("policy_id"),
                         p.get("definition", p)) for p in policies
                        if isinstance(p, dict)) if isinstance(policies, list) else ())
    for pid, policy in candidates:
        if pid != policy_id or not isinstance(policy, dict):
            continue
        rules = policy.get("rules", [])
        pairs = (rules.items() if isinstance(rules, dict)
                 else ((r.get("id") or r.get("rule_id"), r) for r in rules if isinstance(r, dict)))
        for rid, rule in pairs:
            if rid == rule_id and isinstance(rule, dict) and isinstance(rule.get("fix"), str):
                return str(rule["fix"])
        if isinstance(policy.get("fix"), str):
            return str(policy["fix"])
    return None

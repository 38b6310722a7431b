"""Incidents: what an enforced policy stop opened, with its inflection point and lineage.

Read models for the ``incidents`` command and the debrief, and the one state change an operator
makes on an incident (acknowledge, resolve), recorded in the run's ledger with an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from governance_pipeline.contracts.enums import IncidentStatus
from governance_pipeline.contracts.errors import ConfigError, NotFoundError
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import (
    Artifact,
    Incident,
    InflectionPoint,
    PolicyDecision,
    Run,
)
from governance_pipeline.landscape.explain import (
    Explanation,
    decision_view,
    explain,
    inflection_view,
)
from governance_pipeline.landscape.queries import get_run, reading
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import (
    artifacts,
    incidents,
    inflection_points,
    policy_decisions,
    policy_snapshots,
)
from governance_pipeline.landscape.store import Landscape

from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)


@dataclass(frozen=True)
class IncidentView:
    incident: Incident
    run: Run
    inflection: InflectionPoint | None
    decision: PolicyDecision | None
    snapshot_hash: str | None
    artifacts: list[Artifact]
    lineage: Explanation | None

    @property
    def context(self) -> dict[str, Any]:
        return orjson.loads(self.incident.context_json) if self.incident.context_json else {}

    def as_dict(self) -> dict[str, Any]:
        i = self.incident
        return {
            **incident_summary(i),
            "run": {"run_id": self.run.run_id, "pipeline": self.run.pipeline_name,
                    "status": self.run.status.value,
                    "termination_reason": self.run.termination_reason
                    and self.run.termination_reason.value,
                    "started_at": self.run.started_at, "ended_at": self.run.ended_at},
            "reason": i.reason, "policy_snapshot_id": i.policy_snapshot_id,
            "snapshot_hash": self.snapshot_hash,
            "inflection_point": inflection_view(self.inflection) if self.inflection else None,
            "decision": decision_view(self.decision) if self.decision else None,
            "written_before_stop": {
                **self.context.get("written_before_stop", {}),
                "artifacts": [{"sink": a.sink_node_id, "path": a.path_or_uri,
                               "rows": a.row_count, "sha256": a.content_hash}
                              for a in self.artifacts]},
            "fix": self.context.get("fix"), "resolution": i.resolution,
            "resolved_at": i.resolved_at,
            "lineage": self.lineage.as_dict() if self.lineage else None}


def incident_summary(i: Incident) -> dict[str, Any]:
    return {"incident_id": i.incident_id, "run_id": i.run_id, "severity": i.severity.value,
            "status": i.status.value, "summary": i.summary, "policy_id": i.policy_id,
            "rule_id": i.rule_id, "node_id": i.node_id, "step_index": i.step_index,
            "token_id": i.token_id, "detected_at": i.detected_at}


def list_incidents(landscape: Landscape, *, run_id: str | None = None,
                   status: IncidentStatus | None = None) -> list[Incident]:
    query = select(incidents).order_by(incidents.c.detected_at, incidents.c.incident_id)
    if run_id is not None:
        query = query.where(incidents.c.run_id == run_id)
    if status is not None:
        query = query.where(incidents.c.status == status.value)
    with reading(landscape) as conn:
        return [Incident.from_row(r) for r in conn.execute(query).mappings()]


def get_incident(landscape: Landscape, incident_id: str) -> IncidentView:
    with reading(landscape, snapshot=True) as conn:
        row = conn.execute(select(incidents).where(
            incidents.c.incident_id == incident_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no incident {incident_id!r} in this Landscape",
                                details={"incident_id": incident_id})
        incident = Incident.from_row(row)
        run = get_run(conn, incident.run_id)
        point_row = conn.execute(select(inflection_points).where(
            inflection_points.c.run_id == incident.run_id)).mappings().first()
        point = InflectionPoint.from_row(point_row) if point_row else None
        decision = None
        if point is not None:
            found = conn.execute(select(policy_decisions).where(
                policy_decisions.c.decision_id == point.decision_id)).mappings().first()
            decision = PolicyDecision.from_row(found) if found else None
        snapshot_hash = conn.execute(select(policy_snapshots.c.content_hash).where(
            policy_snapshots.c.snapshot_id == incident.policy_snapshot_id)).scalar()
        arts = [Artifact.from_row(r) for r in conn.execute(
            select(artifacts).where(artifacts.c.run_id == incident.run_id)
            .order_by(artifacts.c.artifact_id)).mappings()]
        lineage = (explain(conn, incident.run_id, token_id=point.token_id)
                   if point is not None else None)
    return IncidentView(incident, run, point, decision, snapshot_hash, arts, lineage)


_MOVES = {IncidentStatus.OPEN: {IncidentStatus.ACKNOWLEDGED, IncidentStatus.RESOLVED},
          IncidentStatus.ACKNOWLEDGED: {IncidentStatus.RESOLVED},
          IncidentStatus.RESOLVED: set()}


def update_incident(landscape: Landscape, incident_id: str, *, status: IncidentStatus,
                    actor: str, note: str | None = None) -> Incident:
    """Acknowledge or resolve an incident; recorded (and sealed) in its run's ledger, with its
    operator-log entry in the same transaction (a refusal is logged on its own)."""
    action = OperatorAction.INCIDENT_RESOLVE if status is IncidentStatus.RESOLVED \
        else OperatorAction.INCIDENT_ACKNOWLEDGE
    with operator_action(landscape, action=action, actor=actor, subject=incident_id,
                         inputs={"incident_id": incident_id}) as act:
        return _update_incident(act, landscape, incident_id, status=status, actor=actor,
                                note=note)


def _update_incident(act: OperatorActionScope, landscape: Landscape, incident_id: str, *,
                     status: IncidentStatus, actor: str, note: str | None) -> Incident:
    current = get_incident(landscape, incident_id).incident
    act.inputs.update(run_id=current.run_id, previous_status=current.status.value,
                      note_sha256=sha256_hex(note.encode()) if note else None)
    if status not in _MOVES[current.status]:
        raise ConfigError(f"incident {incident_id} is {current.status.value}; it cannot become "
                          f"{status.value}", details={"incident_id": incident_id})
    if status is IncidentStatus.RESOLVED and not note:
        raise ConfigError("resolving an incident needs a resolution note (--resolve TEXT)")
    recorder = Recorder(landscape)
    with recorder.unit(current.run_id, seal=True) as uow:
        values: dict[str, Any] = {"status": status}
        if status is IncidentStatus.RESOLVED:
            values.update(resolved_at=uow.now, resolution=f"{note} (by {actor})")
        uow.update("incidents", {"incident_id": incident_id}, values,
                   expect={"status": current.status})
        act.record_in(uow)
        uow.add(make_event(f"incident.{status.value}", scope=current.run_id, source="policy",
                           timestamp=uow.now, payload={
                               "incident_id": incident_id, "run_id": current.run_id,
                               "status": status.value, "actor": actor, "note": note}))
    return get_incident(landscape, incident_id).incident

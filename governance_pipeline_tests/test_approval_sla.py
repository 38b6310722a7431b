"""SLA escalation on an injected clock (no sleeping): an overdue active stage is escalated once,
with its event; an export request's escalation records the export guard's verdict; the Dagster
sensor runs the same pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dagster import build_sensor_context

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import Decision
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.approvals.export_guard import export_subject_hash
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline.orchestration.approval_sensors import approval_sla_sensor
from governance_pipeline.orchestration.resources import LandscapeResource

from governance_pipeline_tests.approval_fixtures import (
    REQUESTER,
    TENANT,
    catalog,
    events_of,
    subject,
)


def _request(service: ApprovalService, **kw: object) -> str:
    args: dict[str, object] = {"tenant_id": TENANT, "subject_type": "pipeline",
                               "subject_hash": subject(), "subject_ref": "p.yaml",
                               "requested_by": REQUESTER, "ladder": "two_stage", **kw}
    return service.request(**args)[0].approval_id  # type: ignore[arg-type]


def test_overdue_stage_escalates_exactly_once(landscape: Landscape, clock: ManualClock) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    aid = _request(service)
    clock.advance(3599)
    assert service.escalate_overdue() == []
    clock.advance(1)  # due_at reached: 1 h SLA
    (esc,) = service.escalate_overdue()
    assert (esc.approval_id, esc.stage, esc.role) == (aid, "data_owner", "data_owner")
    assert esc.approvers == ("olga", "oscar") and esc.overdue_seconds == 0
    assert esc.export_guard is None
    clock.advance(600)
    assert service.escalate_overdue() == []
    (event,) = events_of(landscape, "approval.stage_escalated")
    assert event["payload"]["stage_id"] == esc.stage_id and event["source"] == "approvals"
    assert service.get(aid).stages[0].escalated_at == "2026-01-01T01:00:00.000000Z"

    # the next stage gets its own SLA from its activation, and escalates on its own
    service.decide(aid, actor="oscar", role="data_owner", decision=Decision.APPROVE)
    clock.advance(7199)
    assert service.escalate_overdue() == []
    clock.advance(1)
    (second,) = service.escalate_overdue()
    assert second.stage == "compliance"
    assert len(events_of(landscape, "approval.stage_escalated")) == 2
    assert verify(landscape, "global").ok


def test_decided_and_reset_requests_follow_their_new_state(landscape: Landscape,
                                                           clock: ManualClock) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    rejected = _request(service)
    service.decide(rejected, actor="olga", role="data_owner", decision=Decision.REJECT)
    reset = _request(service, subject_hash=subject("other"))
    clock.advance(4000)
    (esc,) = service.escalate_overdue()  # the rejected request is not pending: never escalated
    assert esc.approval_id == reset
    view = service.reset(reset, actor=REQUESTER, reason="new owner")
    assert view.stages[0].escalated_at is None  # a new round has a fresh SLA
    clock.advance(3600)
    (again,) = service.escalate_overdue()
    assert again.approval_id == reset


def test_export_escalation_rechecks_the_export_guard(landscape: Landscape,
                                                     clock: ManualClock) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    digest = export_subject_hash("soc2", "2026-01", TENANT)
    aid = _request(service, subject_type="export", subject_hash=digest, subject_ref="soc2 2026-01",
                   ladder="export")
    clock.advance(24 * 3600)
    (esc,) = service.escalate_overdue()
    assert esc.export_guard == {"clear": False, "reason": "not_approved",
                                "waiting_for": "compliance"}
    payload = events_of(landscape, "approval.stage_escalated")[0]["payload"]
    assert payload["approval_id"] == aid and payload["export_guard"]["clear"] is False
    assert payload["subject_type"] == "export"


def test_the_sensor_escalates_and_expires(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'landscape.db'}"
    resource = LandscapeResource(db_url=url, home=str(home))
    past = ManualClock(datetime(2020, 1, 1, tzinfo=UTC))  # long before the sensor's own clock
    landscape = Landscape.open(url, home / "keys", clock=past)
    try:
        service = ApprovalService(landscape, ladders=catalog())
        aid = _request(service, ttl_seconds=10 * 365 * 24 * 3600)
        short = _request(service, subject_hash=subject("short"), ttl_seconds=60)
    finally:
        landscape.dispose()
    with build_sensor_context(resources={"landscape": resource}) as context:
        result = approval_sla_sensor(context)
        assert json.loads(context.cursor or "{}") == {"escalated": 2, "expired": 1}
    assert "escalated 2 stage(s)" in (result.skip_message or "")
    with build_sensor_context(resources={"landscape": resource}) as context:
        second = approval_sla_sensor(context)
    assert second.skip_message == "no overdue approval stages, no expired tokens"
    with resource.open() as ls:
        assert len(events_of(ls, "approval.stage_escalated")) == 2
        assert [e["payload"]["approval_id"] for e in events_of(ls, "ir.approval_expired")] == \
            [short]
        assert ApprovalService(ls).get(aid).approval.status.value == "pending"

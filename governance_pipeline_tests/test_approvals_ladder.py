"""Approval ladders on both backends: stages in order, quorum, rejection, delegation, reset, and
the refusals (self-approval, wrong role, non-approver, double vote). Every action is checked in
the tables, the events and the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance_pipeline.contracts.enums import ApprovalStatus, Decision, StageStatus
from governance_pipeline.contracts.errors import ConfigError, ExitCode, GovernanceError
from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.governance.approvals import ApprovalService, load_ladders
from governance_pipeline.governance.approvals.codes import (
    DECISION_REFUSED,
    DELEGATION_REFUSED,
    NOT_OPEN,
)
from governance_pipeline.governance.approvals.ladders import LADDERS_ENV, LADDERS_INVALID
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify

from governance_pipeline_tests.approval_fixtures import (
    REQUESTER,
    TENANT,
    catalog,
    events_of,
    subject,
)


@pytest.fixture
def service(landscape: Landscape) -> ApprovalService:
    return ApprovalService(landscape, ladders=catalog())


def _request(service: ApprovalService, ladder: str = "two_stage") -> str:
    approval, _ = service.request(tenant_id=TENANT, subject_type="pipeline",
                                  subject_hash=subject(), subject_ref="p.yaml",
                                  requested_by=REQUESTER, ladder=ladder)
    return approval.approval_id


def test_two_stage_ladder_runs_in_order_and_is_ledgered(service: ApprovalService,
                                                        clock: ManualClock,
                                                        landscape: Landscape) -> None:
    aid = _request(service)
    view = service.get(aid)
    first, second = view.stages
    assert view.approval.status is ApprovalStatus.PENDING
    assert (first.status, second.status) == (StageStatus.ACTIVE, StageStatus.WAITING)
    assert first.due_at == "2026-01-01T01:00:00.000000Z" and second.due_at is None

    clock.advance(600)
    view = service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE,
                          reason="data fit")
    first, second = view.stages
    assert first.status is StageStatus.APPROVED and first.completed_at is not None
    assert second.status is StageStatus.ACTIVE
    assert second.due_at == "2026-01-01T02:10:00.000000Z"  # activated at 00:10, SLA 2 h
    assert view.approval.status is ApprovalStatus.PENDING

    view = service.decide(aid, actor="carl", role="compliance", decision=Decision.APPROVE)
    assert view.approval.status is ApprovalStatus.APPROVED
    assert [s.status for s in view.stages] == [StageStatus.APPROVED, StageStatus.APPROVED]
    assert [(d.actor, d.role, d.decision, d.round) for d in view.decisions] == [
        ("olga", "data_owner", Decision.APPROVE, 0), ("carl", "compliance", Decision.APPROVE, 0)]

    types = [e["type"] for e in events_of(landscape)]
    assert types == ["ir.approval_created", "approval.decided", "approval.stage_completed",
                     "approval.decided", "approval.stage_completed", "approval.approved"]
    created = events_of(landscape, "ir.approval_created")[0]
    assert created["source"] == "ir_governance" and created["scope"] == "global"
    assert created["payload"]["ir_hash"] == subject()
    assert created["payload"]["created_by"] == REQUESTER
    assert verify(landscape, "global").ok


def test_quorum_needs_that_many_distinct_approvers(service: ApprovalService) -> None:
    aid = _request(service, "quorum2")
    view = service.decide(aid, actor="ann", role="board", decision=Decision.APPROVE)
    assert view.stages[0].status is StageStatus.ACTIVE
    assert view.approval.status is ApprovalStatus.PENDING
    with pytest.raises(GovernanceError) as again:
        service.decide(aid, actor="ann", role="board", decision=Decision.APPROVE)
    assert again.value.code is DECISION_REFUSED
    view = service.decide(aid, actor="cid", role="board", decision=Decision.APPROVE)
    assert view.stages[0].status is StageStatus.APPROVED
    assert view.approval.status is ApprovalStatus.APPROVED


def test_a_rejection_rejects_the_whole_request(service: ApprovalService,
                                               landscape: Landscape) -> None:
    aid = _request(service)
    view = service.decide(aid, actor="oscar", role="data_owner", decision=Decision.REJECT,
                          reason="missing DPIA")
    assert view.approval.status is ApprovalStatus.REJECTED
    assert [s.status for s in view.stages] == [StageStatus.REJECTED, StageStatus.WAITING]
    assert events_of(landscape, "approval.rejected")[0]["payload"]["stage"] == "data_owner"
    with pytest.raises(GovernanceError) as closed:
        service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    assert closed.value.code is NOT_OPEN


def test_the_requester_cannot_approve_their_own_request(service: ApprovalService) -> None:
    aid = _request(service)
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    # rita is a listed compliance approver, but she requested this one
    with pytest.raises(GovernanceError) as refused:
        service.decide(aid, actor=REQUESTER, role="compliance", decision=Decision.APPROVE)
    assert refused.value.code is DECISION_REFUSED
    assert refused.value.exit_code is ExitCode.INVALID_INPUT
    assert service.get(aid).stages[1].status is StageStatus.ACTIVE
    assert len(service.get(aid).decisions) == 1


def test_wrong_role_and_non_approvers_are_refused(service: ApprovalService) -> None:
    aid = _request(service)
    with pytest.raises(GovernanceError, match="decided by role 'data_owner'") as wrong_role:
        service.decide(aid, actor="carl", role="compliance", decision=Decision.APPROVE)
    assert wrong_role.value.code is DECISION_REFUSED
    with pytest.raises(GovernanceError, match="not an approver") as outsider:
        service.decide(aid, actor="mallory", role="data_owner", decision=Decision.APPROVE)
    assert outsider.value.code is DECISION_REFUSED
    assert service.get(aid).decisions == ()


def test_delegation_passes_one_vote(service: ApprovalService, landscape: Landscape) -> None:
    aid = _request(service)
    view = service.delegate(aid, from_actor="olga", to_actor="dave", role="data_owner",
                            reason="on leave")
    assert [(d.from_actor, d.to_actor, d.round) for d in view.delegations] == [("olga", "dave", 0)]
    with pytest.raises(GovernanceError, match="delegated their vote"):
        service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    view = service.decide(aid, actor="dave", role="data_owner", decision=Decision.APPROVE)
    assert view.decisions[0].delegated_from == "olga"
    assert view.stages[0].status is StageStatus.APPROVED
    assert events_of(landscape, "approval.delegated")[0]["payload"]["to_actor"] == "dave"


@pytest.mark.parametrize(("from_actor", "to_actor", "role"), [
    ("mallory", "dave", "data_owner"),   # not an approver
    ("olga", REQUESTER, "data_owner"),   # the requester cannot hold a vote
    ("olga", "oscar", "data_owner"),     # already an approver of that stage
    ("olga", "dave", "security"),        # no such stage
])
def test_invalid_delegations_are_refused(service: ApprovalService, from_actor: str,
                                         to_actor: str, role: str) -> None:
    aid = _request(service)
    with pytest.raises(GovernanceError) as refused:
        service.delegate(aid, from_actor=from_actor, to_actor=to_actor, role=role)
    assert refused.value.code is DELEGATION_REFUSED
    assert service.get(aid).delegations == ()


def test_reset_starts_a_new_round_and_keeps_old_decisions(service: ApprovalService,
                                                          clock: ManualClock,
                                                          landscape: Landscape) -> None:
    aid = _request(service)
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    service.decide(aid, actor="carl", role="compliance", decision=Decision.REJECT, reason="no")
    clock.advance(100)
    view = service.reset(aid, actor=REQUESTER, reason="fixed the retention clause")
    assert view.approval.status is ApprovalStatus.PENDING and view.approval.round == 1
    assert [s.status for s in view.stages] == [StageStatus.ACTIVE, StageStatus.WAITING]
    assert view.stages[0].activated_at == "2026-01-01T00:01:40.000000Z"
    assert [d.round for d in view.decisions] == [0, 0]
    # olga voted in round 0 and may vote again in round 1
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    view = service.decide(aid, actor="carl", role="compliance", decision=Decision.APPROVE)
    assert view.approval.status is ApprovalStatus.APPROVED
    assert [d.round for d in view.decisions] == [0, 0, 1, 1]
    assert events_of(landscape, "approval.reset")[0]["payload"]["previous_status"] == "rejected"
    with pytest.raises(GovernanceError) as outsider:
        service.reset(aid, actor="mallory", reason="x")
    assert outsider.value.code is DECISION_REFUSED
    assert verify(landscape, "global").ok


def test_ladders_file_overrides_builtins(tmp_path: Path) -> None:
    path = tmp_path / "ladders.yaml"
    path.write_text("ladders:\n  export:\n    stages:\n"
                    "      - {name: dpo, role: dpo, approvers: [dana, dirk], quorum: 2,"
                    " sla_seconds: 60}\n", encoding="utf-8")
    ladders = load_ladders(env={LADDERS_ENV: str(path)})
    assert [s.name for s in ladders.get("export").stages] == ["dpo"]
    assert ladders.get("export").stages[0].quorum == 2
    assert [s.name for s in ladders.get("pipeline_tier2").stages] == ["data_owner", "compliance"]
    assert [s.name for s in load_ladders(env={}).get("export").stages] == \
        ["compliance", "security"]


@pytest.mark.parametrize("text", [
    "ladders:\n  x:\n    stages: []\n",
    "ladders:\n  x:\n    stages:\n      - {name: a, role: r, approvers: [p], quorum: 2}\n",
    "ladders:\n  x:\n    stages:\n      - {name: a, role: r, approvers: [p], sla_seconds: 0}\n",
    "ladders:\n  x:\n    stages:\n      - {name: a, role: r, approvers: [p], colour: red}\n",
    "ladders: [\n",
])
def test_invalid_ladders_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ladders.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_ladders(path)
    assert bad.value.code is LADDERS_INVALID


def test_unknown_ladder_is_refused(service: ApprovalService) -> None:
    with pytest.raises(ConfigError) as unknown:
        _request(service, "nope")
    assert unknown.value.code is LADDERS_INVALID
    assert service.list() == []

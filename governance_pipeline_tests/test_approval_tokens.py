"""Tokens and the run gate on both backends: shown once and stored as a hash, single use, TTL
on an injected clock, every refusal reason recorded with its event, and the gate's exit 4."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import ApprovalStatus, Decision
from governance_pipeline.contracts.errors import BlockedError, ExitCode
from governance_pipeline.governance.approvals import ApprovalService, InvalidReason, TokenRefused
from governance_pipeline.governance.approvals.codes import APPROVAL_REQUIRED
from governance_pipeline.governance.approvals.gate import require_run_approval
from governance_pipeline.governance.approvals.tokens import TOKEN_PREFIX, hash_token, token_matches
from governance_pipeline.landscape.schema import approvals, events
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


def _approved(service: ApprovalService, *, ttl: int | None = None,
              subject_hash: str | None = None) -> tuple[str, str]:
    approval, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                      subject_hash=subject_hash or subject(),
                                      subject_ref="p.yaml", requested_by=REQUESTER,
                                      ladder="two_stage", ttl_seconds=ttl)
    service.decide(approval.approval_id, actor="olga", role="data_owner",
                   decision=Decision.APPROVE)
    service.decide(approval.approval_id, actor="carl", role="compliance",
                   decision=Decision.APPROVE)
    return approval.approval_id, token


def _refusal(service: ApprovalService, token: str, *, tenant: str = TENANT,
             subject_hash: str | None = None) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        service.consume(token, tenant_id=tenant, subject_hash=subject_hash or subject(),
                        actor="runner")
    assert refused.value.exit_code is ExitCode.BLOCKED
    return refused.value


def test_token_is_random_prefixed_and_only_its_hash_is_stored(service: ApprovalService,
                                                              landscape: Landscape) -> None:
    a1, t1 = service.request(tenant_id=TENANT, subject_type="pipeline", subject_hash=subject(),
                             subject_ref="p.yaml", requested_by=REQUESTER, ladder="two_stage")
    _, t2 = service.request(tenant_id=TENANT, subject_type="pipeline", subject_hash=subject(),
                            subject_ref="p.yaml", requested_by=REQUESTER, ladder="two_stage")
    assert t1.startswith(TOKEN_PREFIX) and t1 != t2 and len(t1) >= 40
    assert a1.token_hash == hash_token(t1) and token_matches(t1, a1.token_hash)
    assert not token_matches(t2, a1.token_hash)
    with landscape.engine.connect() as conn:
        stored = [str(v) for table in (approvals, events)
                  for row in conn.execute(select(table)).all() for v in row]
    assert not any(t1 in v or t2 in v for v in stored)


def test_consume_once_then_already_consumed(service: ApprovalService, clock: ManualClock,
                                            landscape: Landscape) -> None:
    aid, token = _approved(service)
    clock.advance(90)
    consumed = service.consume(token, tenant_id=TENANT, subject_hash=subject(), actor="runner",
                               consumed_for="run_1")
    assert consumed.status is ApprovalStatus.CONSUMED and consumed.consumed_for == "run_1"
    assert consumed.consumed_by == "runner"
    payload = events_of(landscape, "ir.approval_consumed")[0]["payload"]
    assert payload["approval_id"] == aid and payload["time_to_consume_seconds"] == 90
    assert payload["was_expired"] is False and payload["consumed_by"] == "runner"

    again = _refusal(service, token)
    assert again.reason is InvalidReason.ALREADY_CONSUMED and again.approval_id == aid
    invalid = events_of(landscape, "ir.approval_invalid")
    assert [e["payload"]["reason"] for e in invalid] == ["already_consumed"]
    assert invalid[0]["payload"]["attempted_by"] == "runner"
    assert len(events_of(landscape, "ir.approval_consumed")) == 1
    assert verify(landscape, "global").ok


@pytest.mark.parametrize("reason", ["token_not_found", "tenant_mismatch", "ir_hash_mismatch",
                                    "not_approved", "rejected"])
def test_each_refusal_reason_is_recorded(service: ApprovalService, landscape: Landscape,
                                         reason: str) -> None:
    aid, token = _approved(service)
    kwargs: dict[str, str] = {}
    if reason == "token_not_found":
        token = TOKEN_PREFIX + "x" * 43
    elif reason == "tenant_mismatch":
        kwargs["tenant"] = "other-tenant"
    elif reason == "ir_hash_mismatch":
        kwargs["subject_hash"] = subject("pipeline-v2")
    else:
        pending, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                         subject_hash=subject(), subject_ref="p.yaml",
                                         requested_by=REQUESTER, ladder="two_stage")
        aid = pending.approval_id
        if reason == "rejected":
            service.decide(aid, actor="olga", role="data_owner", decision=Decision.REJECT)
    refused = _refusal(service, token, **kwargs)
    assert refused.reason.value == reason
    assert refused.code is InvalidReason(reason).code
    invalid = events_of(landscape, "ir.approval_invalid")
    assert [e["payload"]["reason"] for e in invalid] == [reason]
    assert invalid[0]["payload"]["approval_id"] == (None if reason == "token_not_found" else aid)
    assert invalid[0]["source"] == "ir_governance" and invalid[0]["tenant_id"] == \
        kwargs.get("tenant", TENANT)
    assert events_of(landscape, "ir.approval_consumed") == []


def test_ttl_expiry_on_consume_is_recorded(service: ApprovalService, clock: ManualClock,
                                           landscape: Landscape) -> None:
    aid, token = _approved(service, ttl=300)
    clock.advance(299)
    assert service.expire_due() == []
    clock.advance(1)
    refused = _refusal(service, token)
    assert refused.reason is InvalidReason.EXPIRED
    assert service.get(aid).approval.status is ApprovalStatus.EXPIRED
    expired = events_of(landscape, "ir.approval_expired")
    assert len(expired) == 1
    assert expired[0]["payload"]["ttl_seconds"] == 300
    assert expired[0]["payload"]["expired_at"] == "2026-01-01T00:05:00.000000Z"
    assert [e["payload"]["reason"] for e in events_of(landscape, "ir.approval_invalid")] == \
        ["expired"]
    again = _refusal(service, token)
    assert again.reason is InvalidReason.EXPIRED
    assert len(events_of(landscape, "ir.approval_expired")) == 1


def test_expire_due_marks_each_request_once(service: ApprovalService, clock: ManualClock,
                                            landscape: Landscape) -> None:
    aid, _ = _approved(service, ttl=60)
    clock.advance(61)
    assert [a.approval_id for a in service.expire_due()] == [aid]
    assert service.expire_due() == []
    assert len(events_of(landscape, "ir.approval_expired")) == 1
    assert verify(landscape, "global").ok


def test_gate_lets_low_tiers_through_without_recording(landscape: Landscape) -> None:
    for tier in (0, 1):
        assert require_run_approval(landscape, tenant_id=TENANT, ir_hash=subject(),
                                    risk_tier=tier, token=None, actor="ci",
                                    run_id="run_x") is None
    assert events_of(landscape) == []


def test_gate_blocks_tier2_until_approved_then_consumes(service: ApprovalService,
                                                        landscape: Landscape) -> None:
    with pytest.raises(BlockedError) as blocked:
        require_run_approval(landscape, tenant_id=TENANT, ir_hash=subject(), risk_tier=2,
                             token=None, actor="ci", run_id="run_a",
                             pipeline_ref="examples/p.yaml")
    assert blocked.value.code is APPROVAL_REQUIRED and blocked.value.exit_code == 4
    assert "governance-pipeline approvals request examples/p.yaml" in blocked.value.message
    aid, token = _approved(service)
    approval = require_run_approval(landscape, tenant_id=TENANT, ir_hash=subject(),
                                    risk_tier=2, token=token, actor="ci", run_id="run_b")
    assert approval is not None and approval.approval_id == aid
    assert approval.consumed_for == "run_b"
    with pytest.raises(TokenRefused) as reused:
        require_run_approval(landscape, tenant_id=TENANT, ir_hash=subject(), risk_tier=3,
                             token=token, actor="ci", run_id="run_c")
    assert reused.value.reason is InvalidReason.ALREADY_CONSUMED
    assert "run was not started" in reused.value.message
    runs_blocked = [e["payload"] for e in events_of(landscape, "run.blocked")]
    assert [(p["run_id"], p["reason"]) for p in runs_blocked] == [
        ("run_a", "approval_required"), ("run_c", "already_consumed")]
    assert all(e["scope"] == "global" for e in events_of(landscape, "run.blocked"))

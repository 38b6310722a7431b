"""The operator audit log on both backends: every action family leaves one entry (ok, refused
with its GP code, failed), in the ledger (an edit or deletion is named by ``verify``, an
untouched twin verifies clean), never holding a token; the read filters; the SOC 2 controls."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import Decision, IncidentStatus
from governance_pipeline.contracts.errors import ConfigError, GovernanceError, OperationalError
from governance_pipeline.contracts.operator_records import (
    OperatorAction,
    OperatorEvent,
    OperatorResult,
    OperatorSurface,
)
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.approvals.codes import TokenRefused
from governance_pipeline.governance.exports.soc2_controls import CheckContext, Period
from governance_pipeline.governance.exports.soc2_operator_controls import OPERATOR_CONTROLS
from governance_pipeline.governance.operator_log import (
    acting_via,
    operator_action,
    record_operator_action,
)
from governance_pipeline.governance.operator_reads import (
    OperatorFilter,
    actions_matching,
    list_operator_events,
    parse_time,
)
from governance_pipeline.governance.policy.incidents import update_incident
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, incidents, operator_events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests import policy_fixtures as pf
from governance_pipeline_tests.approval_fixtures import REQUESTER, TENANT, catalog, subject
from governance_pipeline_tests.tamper import raw_connection


@pytest.fixture
def service(landscape: Landscape) -> ApprovalService:
    return ApprovalService(landscape, ladders=catalog())


def entries(landscape: Landscape, action: OperatorAction | None = None) -> list[OperatorEvent]:
    flt = OperatorFilter(actions=(action,) if action else ())
    return list_operator_events(landscape, flt)


def inputs(event: OperatorEvent) -> dict:
    return orjson.loads(event.inputs_json)


# --- approvals and tokens --------------------------------------------------------------------------
def test_approval_actions_are_logged_with_actor_inputs_and_result(
        landscape: Landscape, service: ApprovalService, clock: ManualClock) -> None:
    approval, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                      subject_hash=subject(), subject_ref="p.yaml",
                                      requested_by=REQUESTER, ladder="two_stage")
    aid = approval.approval_id
    clock.advance(1)
    service.delegate(aid, from_actor="olga", to_actor="dora", role="data_owner")
    with pytest.raises(GovernanceError) as self_vote:
        service.decide(aid, actor=REQUESTER, role="data_owner", decision=Decision.APPROVE)
    service.decide(aid, actor="dora", role="data_owner", decision=Decision.APPROVE)
    service.decide(aid, actor="carl", role="compliance", decision=Decision.REJECT)
    service.reset(aid, actor=REQUESTER, reason="new evidence")

    log = entries(landscape)
    assert [(e.action, e.actor, e.result) for e in log] == [
        (OperatorAction.APPROVAL_REQUEST, REQUESTER, OperatorResult.OK),
        (OperatorAction.APPROVAL_DELEGATE, "olga", OperatorResult.OK),
        (OperatorAction.APPROVAL_APPROVE, REQUESTER, OperatorResult.REFUSED),
        (OperatorAction.APPROVAL_APPROVE, "dora", OperatorResult.OK),
        (OperatorAction.APPROVAL_REJECT, "carl", OperatorResult.OK),
        (OperatorAction.APPROVAL_RESET, REQUESTER, OperatorResult.OK)]
    assert all(e.subject == aid and e.scope == GLOBAL_SCOPE for e in log)
    assert log[2].code == self_vote.value.code.code and "cannot approve" in (log[2].detail or "")
    assert all(e.code is None for e in log if e.result is OperatorResult.OK)
    assert inputs(log[0])["subject_hash"] == subject() and inputs(log[0])["ladder"] == "two_stage"
    assert inputs(log[3]) == {"approval_id": aid, "role": "data_owner",
                              "subject_hash": subject(), "round": 0, "stage": "data_owner"}
    assert inputs(log[5])["previous_status"] == "rejected"
    assert {e.occurred_at for e in log[:1]} == {approval.created_at}  # the injected clock
    assert all(token not in e.inputs_json for e in log)
    assert verify(landscape, GLOBAL_SCOPE).ok


def test_token_consumption_logs_the_approval_never_the_token(
        landscape: Landscape, service: ApprovalService) -> None:
    approval, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                      subject_hash=subject(), subject_ref="p.yaml",
                                      requested_by=REQUESTER, ladder="quorum2")
    with pytest.raises(TokenRefused) as early:
        service.consume(token, tenant_id=TENANT, subject_hash=subject(), actor="ci")
    for actor in ("ann", "ben"):
        service.decide(approval.approval_id, actor=actor, role="board", decision=Decision.APPROVE)
    service.consume(token, tenant_id=TENANT, subject_hash=subject(), actor="ci",
                    consumed_for="run_x")
    with pytest.raises(TokenRefused) as unknown:
        service.consume("gpa_" + "x" * 40, tenant_id=TENANT, subject_hash=subject(), actor="eve")

    consumed = entries(landscape, OperatorAction.TOKEN_CONSUME)
    assert [(e.actor, e.result, e.code) for e in consumed] == [
        ("ci", OperatorResult.REFUSED, early.value.code.code), ("ci", OperatorResult.OK, None),
        ("eve", OperatorResult.REFUSED, unknown.value.code.code)]
    assert inputs(consumed[1]) == {"tenant_id": TENANT, "subject_hash": subject(),
                                   "consumed_for": "run_x",
                                   "approval_id": approval.approval_id}
    assert consumed[2].subject is None and "approval_id" not in inputs(consumed[2])
    with landscape.engine.connect() as conn:
        stored = " ".join(conn.execute(select(operator_events.c.inputs_json,
                                              operator_events.c.detail)).scalars())
    assert token not in stored and "gpa_" not in stored


# --- incidents --------------------------------------------------------------------------------------
def test_incident_acknowledge_and_resolve_are_logged_in_the_run_ledger(
        landscape: Landscape, tmp_path: Path) -> None:
    outcome = pf.execute(landscape, pf.screening(tmp_path / "pipeline"))
    run_id = outcome.run_id
    with landscape.engine.connect() as conn:
        incident_id = conn.execute(select(incidents.c.incident_id)
                                   .where(incidents.c.run_id == run_id)).scalar_one()
    update_incident(landscape, incident_id, status=IncidentStatus.ACKNOWLEDGED, actor="sre")
    with pytest.raises(ConfigError):  # a resolution needs its note: refused, logged
        update_incident(landscape, incident_id, status=IncidentStatus.RESOLVED, actor="sre")
    update_incident(landscape, incident_id, status=IncidentStatus.RESOLVED, actor="lead",
                    note="rule tuned")

    log = [e for e in entries(landscape) if e.action.value.startswith("incident.")]
    assert [(e.action, e.actor, e.result) for e in log] == [
        (OperatorAction.INCIDENT_ACKNOWLEDGE, "sre", OperatorResult.OK),
        (OperatorAction.INCIDENT_RESOLVE, "sre", OperatorResult.REFUSED),
        (OperatorAction.INCIDENT_RESOLVE, "lead", OperatorResult.OK)]
    # In the same transaction as the state change: the run's own chain.
    assert [e.scope for e in log] == [run_id, GLOBAL_SCOPE, run_id]
    assert inputs(log[2])["previous_status"] == "acknowledged"
    assert len(inputs(log[2])["note_sha256"]) == 64
    assert verify(landscape, run_id).ok


# --- the API -----------------------------------------------------------------------------------------
def test_an_action_that_fails_is_logged_failed_and_its_error_propagates(
        landscape: Landscape) -> None:
    with pytest.raises(OperationalError):
        with operator_action(landscape, action=OperatorAction.PURGE, actor="ops",
                             inputs={"older_than_days": 200}):
            raise OperationalError("disk full")
    with pytest.raises(ZeroDivisionError):
        with operator_action(landscape, action=OperatorAction.KEYS_ROTATE, actor="ops"):
            _ = 1 / 0
    with acting_via(OperatorSurface.CLI):
        with operator_action(landscape, action=OperatorAction.ERASE, actor="dpo",
                             inputs={"field": "customer", "value_sha256": "ab" * 32}):
            pass
    log = entries(landscape)
    assert [(e.action, e.result, e.code, e.surface) for e in log] == [
        (OperatorAction.PURGE, OperatorResult.FAILED, "GP-DB-001", OperatorSurface.API),
        (OperatorAction.KEYS_ROTATE, OperatorResult.FAILED, "GP-INTERNAL-001",
         OperatorSurface.API),
        (OperatorAction.ERASE, OperatorResult.OK, None, OperatorSurface.CLI)]
    assert log[1].detail == "ZeroDivisionError: division by zero"


@pytest.mark.parametrize("secret", [{"token": "anything"}, {"approval_token": "x"},
                                    {"password": "x"}, {"note": "gpa_" + "k" * 30}])
def test_a_secret_in_the_inputs_is_refused(landscape: Landscape, secret: dict) -> None:
    with pytest.raises(ValueError):
        record_operator_action(landscape, action=OperatorAction.EXPORT, actor="a", inputs=secret)
    assert entries(landscape) == []


def test_identifiers_and_hashes_are_accepted(landscape: Landscape) -> None:
    event = record_operator_action(landscape, action=OperatorAction.EXPORT, actor="a",
                                   inputs={"approval_id": "appr_1", "token_hash": "c" * 64,
                                           "note": "gpa_short"})
    assert entries(landscape) == [event]


def test_ok_with_a_code_or_refused_without_one_cannot_be_built(landscape: Landscape) -> None:
    with pytest.raises(GovernanceError):
        record_operator_action(landscape, action=OperatorAction.RUN, actor="a", inputs={},
                               result=OperatorResult.REFUSED)
    with pytest.raises(GovernanceError):
        record_operator_action(landscape, action=OperatorAction.RUN, actor="a", inputs={},
                               code="GP-DB-001")
    assert entries(landscape) == []


# --- tamper evidence --------------------------------------------------------------------------------
def _two_entries(landscape: Landscape) -> tuple[OperatorEvent, OperatorEvent]:
    first = record_operator_action(landscape, action=OperatorAction.EXPORT, actor="alice",
                                   inputs={"export_id": "exp_1"}, subject="soc2 2026-01")
    with Recorder(landscape).unit(GLOBAL_SCOPE, seal=True) as uow:
        second = record_operator_action(uow, action=OperatorAction.APPROVAL_RESET, actor="bob",
                                        inputs={"approval_id": "appr_1"})
    return first, second


def test_untouched_operator_log_verifies_clean(landscape: Landscape) -> None:
    _two_entries(landscape)
    report = verify(landscape, GLOBAL_SCOPE)
    assert report.ok and report.records_checked >= 2


def test_an_edited_operator_entry_is_named_by_verify(landscape: Landscape, db_url: str) -> None:
    first, second = _two_entries(landscape)
    with raw_connection(db_url) as db:
        db.execute("UPDATE operator_events SET actor = 'mallory' WHERE event_id = ?",
                   (first.event_id,))
    report = verify(landscape)
    assert [(f.table, f.key, f.message.split(":")[0]) for f in report.findings] == [
        ("operator_events", first.event_id, "modified")]


def test_a_deleted_operator_entry_is_named_by_verify(landscape: Landscape, db_url: str) -> None:
    first, second = _two_entries(landscape)
    with raw_connection(db_url) as db:
        db.execute("DELETE FROM operator_events WHERE event_id = ?", (second.event_id,))
    report = verify(landscape, GLOBAL_SCOPE)
    assert [(f.table, f.key) for f in report.findings] == [("operator_events", second.event_id)]
    assert report.findings[0].message.startswith("deleted")


# --- reads -------------------------------------------------------------------------------------------
def test_filters_by_actor_time_action_and_result(landscape: Landscape, clock: ManualClock) -> None:
    record_operator_action(landscape, action=OperatorAction.RUN, actor="alice", inputs={})
    clock.advance(3600)
    middle = to_iso(clock.now())
    record_operator_action(landscape, action=OperatorAction.APPROVAL_APPROVE, actor="bob",
                           inputs={}, result=OperatorResult.REFUSED, code="GP-APPROVAL-003")
    clock.advance(3600)
    record_operator_action(landscape, action=OperatorAction.APPROVAL_RESET, actor="alice",
                           inputs={})

    def actors(**kw: object) -> list[str]:
        return [e.actor for e in list_operator_events(landscape, OperatorFilter(**kw))]

    assert actors() == ["alice", "bob", "alice"]
    assert actors(actor="alice") == ["alice", "alice"]
    assert actors(actor="nobody") == []
    assert actors(since=middle) == ["bob", "alice"]
    assert actors(since=parse_time("90m", now=clock.now())) == ["bob", "alice"]
    assert actors(until=middle) == ["alice"]
    assert actors(actions=tuple(actions_matching("approval"))) == ["bob", "alice"]
    assert actors(actions=tuple(actions_matching("approval.reset"))) == ["alice"]
    assert actors(result=OperatorResult.REFUSED) == ["bob"]


@pytest.mark.parametrize("text,expected", [
    ("2026-12-01", "2026-12-01T00:00:00.000000Z"),
    ("2026-12-01T08:30:00Z", "2026-12-01T08:30:00.000000Z"),
    ("2026-12-01T09:30:00+01:00", "2026-12-01T08:30:00.000000Z"),
    ("2d", "2025-12-30T00:00:00.000000Z"), ("45m", "2025-12-31T23:15:00.000000Z")])
def test_times_are_read_as_iso_or_a_span(text: str, expected: str) -> None:
    assert parse_time(text, now=ManualClock().now()) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "5y", "", "-3d"])
def test_a_bad_time_is_gp_ops_001(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_time(text, now=ManualClock().now())
    assert err.value.code.code == "GP-OPS-001" and "24h" in err.value.code.fix


def test_an_unknown_action_is_gp_ops_002() -> None:
    with pytest.raises(ConfigError) as err:
        actions_matching("approvals")
    assert err.value.code.code == "GP-OPS-002"
    assert actions_matching("token") == [OperatorAction.TOKEN_CONSUME]


# --- SOC 2 ------------------------------------------------------------------------------------------
def test_soc2_controls_test_entries_against_the_state_they_claim(
        landscape: Landscape, service: ApprovalService) -> None:
    approval, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                      subject_hash=subject(), subject_ref="p.yaml",
                                      requested_by=REQUESTER, ladder="quorum2")
    for actor in ("ann", "ben"):
        service.decide(approval.approval_id, actor=actor, role="board", decision=Decision.APPROVE)
    service.consume(token, tenant_id=TENANT, subject_hash=subject(), actor="ci")
    forged = record_operator_action(landscape, action=OperatorAction.TOKEN_CONSUME,
                                    actor="mallory", subject=approval.approval_id,
                                    inputs={"approval_id": approval.approval_id})
    access, change = OPERATOR_CONTROLS
    period = Period("2025-12-01T00:00:00.000000Z", "2026-02-01T00:00:00.000000Z", None)
    with landscape.engine.connect() as conn:
        ctx = CheckContext(landscape, conn, lambda r: 0, lambda r: "")
        population = dict(conn.execute(access.population(period)).all())
        verdicts = {key: access.test(ctx, key, scope)[0].value
                    for key, scope in population.items()}
        tenant_only = conn.execute(access.population(Period(period.start, period.end,
                                                            "other"))).all()
        changes = conn.execute(change.population(period)).all()
    log = entries(landscape)
    assert set(population) == {e.event_id for e in log}
    assert verdicts[forged.event_id] == "fail"
    assert [v for k, v in verdicts.items() if k != forged.event_id] == ["pass"] * (len(log) - 1)
    assert tenant_only == [] and changes == []

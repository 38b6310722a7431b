"""Retention and purge on a real Landscape, SQLite file and PostgreSQL.

Purge removes payload contents past retention and keeps their hashes: ``verify`` still checks
every record and reports the purged payloads as purged, while contents missing without a purge
record stay a finding. The floor, legal holds, shared payloads and failing runs each stop a
purge (with a twin that does purge), and every refusal leaves the database byte-for-byte as it
was. Time moves only through the injected clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.data_protection import HoldTarget
from governance_pipeline.contracts.enums import IncidentSeverity, IncidentStatus
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.records import Incident
from governance_pipeline.governance.data_protection.holds import (
    list_holds,
    place_hold,
    release_hold,
)
from governance_pipeline.governance.data_protection.purge import plan_purge, purge
from governance_pipeline.governance.data_protection.retention import (
    FLOOR_ENV,
    PAYLOADS_ENV,
    RetentionDefaults,
)
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.payloads import PayloadRedacted, load_payload
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import node_states, payloads, rows
from governance_pipeline.landscape.schema_data_protection import purged_runs
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.data_protection_fixtures import (
    CLAIMS,
    DAY,
    claims_pipeline,
    run_claims,
    state_snapshot,
)

FLOOR = RetentionDefaults(payloads_days=None, runs_days=None, floor_days=183)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))


def _source(landscape: Landscape, run_id: str, index: int = 0) -> str:
    with landscape.engine.connect() as conn:
        return conn.execute(select(rows.c.source_data_hash).where(
            rows.c.run_id == run_id, rows.c.row_index == index)).scalar_one()


def _run(landscape: Landscape, clock: ManualClock, tmp_path: Path, *, name: str = "pipeline",
         retention: dict[str, str] | None = None, subject: bool = False,
         claims: list[tuple[Any, ...]] = CLAIMS) -> str:
    path = claims_pipeline(tmp_path, retention=retention or {"payloads": "200d"}, name=name,
                           subject_fields=["customer"] if subject else None, claims=claims)
    return run_claims(landscape, clock, path)


@pytest.mark.parametrize("subject", [False, True], ids=["clear", "sealed"])
def test_purge_past_retention_keeps_hashes_and_verify_lists_them(
        landscape: Landscape, clock: ManualClock, tmp_path: Path, subject: bool) -> None:
    run_id = _run(landscape, clock, tmp_path, subject=subject)
    clock.advance(201 * DAY)
    plan = plan_purge(landscape, defaults=FLOOR)
    (due,) = plan.runs
    assert (due.run_id, due.scope.value, due.retention_days, due.origin) == (
        run_id, "payloads", 200, "pipeline")
    assert plan.dry_run and verify(landscape).redacted.counts["purged"] == 0  # dry run: none
    done = purge(landscape, actor="ops", reason="retention", defaults=FLOOR)
    assert done.purge_id and done.payload_hashes == plan.payload_hashes
    report = verify(landscape)
    assert report.ok, report.findings
    assert report.redacted.counts["purged"] == len(plan.payload_hashes)
    assert set(report.redacted.hashes["purged"]) == set(plan.payload_hashes)
    assert report.records_checked > 0
    with landscape.engine.connect() as conn:  # rows and hashes stay, contents go
        assert conn.execute(select(payloads.c.data).where(
            payloads.c.content_hash.in_(plan.payload_hashes))).scalars().all() == [b""] * len(
            plan.payload_hashes)
    with pytest.raises(PayloadRedacted) as gone:
        load_payload(landscape, _source(landscape, run_id))
    assert gone.value.redaction.event_id == done.purge_id
    assert explain(landscape, run_id, row_index=0).source_payload["note"] == (
        "purged on 2026-07-21 (retention)")
    assert plan_purge(landscape, defaults=FLOOR).runs == []  # nothing left to purge


def test_nothing_is_purged_inside_retention(landscape: Landscape, clock: ManualClock,
                                            tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    clock.advance(199 * DAY)
    before = state_snapshot(landscape)
    done = purge(landscape, actor="ops", defaults=FLOOR)
    assert done.runs == [] and done.purge_id is None
    assert state_snapshot(landscape) == before
    load_payload(landscape, _source(landscape, run_id))


def test_missing_contents_without_a_purge_record_are_a_finding(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    target = _source(landscape, run_id)
    with landscape.engine.begin() as conn:
        conn.execute(update(payloads).where(payloads.c.content_hash == target).values(data=b""))
    findings = verify(landscape).findings
    assert [(f.table, f.key) for f in findings] == [("payloads", target)]
    assert "no purge or erasure record" in findings[0].message
    assert not verify(landscape, run_id).ok


def test_retention_under_the_floor_is_refused_and_changes_nothing(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    _run(landscape, clock, tmp_path, retention={"payloads": "100d"})
    clock.advance(101 * DAY)
    before = state_snapshot(landscape)
    for attempt in (plan_purge, lambda ls, **kw: purge(ls, actor="ops", **kw)):
        with pytest.raises(GovernanceError) as refused:
            attempt(landscape, defaults=FLOOR)
        assert refused.value.code.code == "GP-RETENTION-002"
        assert "100 days is under the floor of 183 days" in refused.value.message
    assert state_snapshot(landscape) == before
    lowered = RetentionDefaults(None, None, floor_days=90)  # the twin: a lower floor purges
    assert purge(landscape, actor="ops", defaults=lowered).purge_id is not None


def test_the_floor_and_defaults_come_from_the_environment() -> None:
    assert RetentionDefaults.from_env({}).floor_days == 183
    assert RetentionDefaults.from_env({FLOOR_ENV: "30d", PAYLOADS_ENV: "5w"}) == \
        RetentionDefaults(35, None, 30)
    with pytest.raises(GovernanceError) as under:
        RetentionDefaults.from_env({PAYLOADS_ENV: "90d"})
    assert under.value.code.code == "GP-RETENTION-002"
    with pytest.raises(GovernanceError) as bad:
        RetentionDefaults.from_env({FLOOR_ENV: "six months"})
    assert bad.value.code.code == "GP-RETENTION-001"


def test_environment_default_applies_to_pipelines_without_retention(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path))
    clock.advance(250 * DAY)
    assert plan_purge(landscape, defaults=FLOOR).runs == []  # no retention: kept
    (due,) = plan_purge(landscape, defaults=RetentionDefaults(240, None, 183)).runs
    assert (due.run_id, due.origin, due.retention_days) == (run_id, "environment", 240)


def test_a_legal_hold_blocks_purge_until_released(landscape: Landscape, clock: ManualClock,
                                                  tmp_path: Path) -> None:
    held = _run(landscape, clock, tmp_path, name="held")
    free = _run(landscape, clock, tmp_path, name="free", subject=True,
                claims=[(7, "customer-7", "north", 10.0, "other")])
    hold = place_hold(landscape, HoldTarget.RUN, held, actor="legal", reason="case 12")
    clock.advance(201 * DAY)
    with pytest.raises(GovernanceError) as refused:
        purge(landscape, actor="ops", run_id=held, defaults=FLOOR)
    assert refused.value.code.code == "GP-RETENTION-005"
    done = purge(landscape, actor="ops", defaults=FLOOR)
    assert [r.run_id for r in done.runs] == [free] and done.held == {held: [hold.hold_id]}
    load_payload(landscape, _source(landscape, held))  # the held run keeps its contents
    with pytest.raises(PayloadRedacted):
        load_payload(landscape, _source(landscape, free))
    release_hold(landscape, hold.hold_id, actor="legal", reason="case closed")
    assert list_holds(landscape) == []
    assert [h.release_reason for h in list_holds(landscape, include_released=True)] == [
        "case closed"]
    again = purge(landscape, actor="ops", run_id=held, defaults=FLOOR)
    assert [r.run_id for r in again.runs] == [held]
    assert verify(landscape).ok


def test_a_hold_on_an_incident_holds_its_run(landscape: Landscape, clock: ManualClock,
                                             tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    with Recorder(landscape).unit(run_id, seal=True) as uow:
        uow.add(Incident("inc_1", run_id, IncidentSeverity.HIGH, IncidentStatus.OPEN, "probe",
                         None, None, None, None, None, None, None, None, uow.now))
    place_hold(landscape, HoldTarget.INCIDENT, "inc_1", actor="legal", reason="inquiry")
    clock.advance(201 * DAY)
    assert plan_purge(landscape, defaults=FLOOR).held == {run_id: [
        list_holds(landscape)[0].hold_id]}
    assert purge(landscape, actor="ops", defaults=FLOOR).runs == []


@pytest.mark.parametrize("kind, target, code", [
    (HoldTarget.RUN, "run_missing", "GP-RETENTION-003"),
    (HoldTarget.INCIDENT, "inc_missing", "GP-RETENTION-003"),
])
def test_holding_an_unknown_target_is_refused(landscape: Landscape, kind: HoldTarget,
                                              target: str, code: str) -> None:
    before = state_snapshot(landscape)
    with pytest.raises(GovernanceError) as refused:
        place_hold(landscape, kind, target, actor="legal", reason="x")
    assert refused.value.code.code == code and state_snapshot(landscape) == before
    with pytest.raises(GovernanceError) as release:
        release_hold(landscape, "hold_missing", actor="legal", reason="x")
    assert release.value.code.code == "GP-RETENTION-004" and state_snapshot(landscape) == before


def test_purging_an_unknown_run_is_refused_and_changes_nothing(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    _run(landscape, clock, tmp_path)
    clock.advance(201 * DAY)
    before = state_snapshot(landscape)
    with pytest.raises(GovernanceError) as refused:
        purge(landscape, actor="ops", run_id="run_missing", defaults=FLOOR)
    assert refused.value.code.code == "GP-RETENTION-003" and refused.value.code.fix
    assert state_snapshot(landscape) == before


def test_a_run_that_does_not_verify_is_not_purged(landscape: Landscape, clock: ManualClock,
                                                  tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    with landscape.engine.begin() as conn:  # tamper: a node state's duration changes
        state = conn.execute(select(node_states.c.state_id).where(
            node_states.c.run_id == run_id).limit(1)).scalar_one()
        conn.execute(update(node_states).where(node_states.c.state_id == state)
                     .values(duration_ms=123456.0))
    clock.advance(201 * DAY)
    before = state_snapshot(landscape)
    with pytest.raises(GovernanceError) as refused:
        purge(landscape, actor="ops", defaults=FLOOR)
    assert refused.value.code.code == "GP-RETENTION-006" and run_id in refused.value.message
    assert state_snapshot(landscape) == before


def test_a_payload_shared_with_a_retained_run_is_kept(landscape: Landscape, clock: ManualClock,
                                                      tmp_path: Path) -> None:
    old = _run(landscape, clock, tmp_path, name="old")
    clock.advance(150 * DAY)
    new = _run(landscape, clock, tmp_path, name="new")  # the same claims: the same payloads
    assert _source(landscape, old) == _source(landscape, new)
    clock.advance(51 * DAY)  # old is past its 200 days, new is not
    assert purge(landscape, actor="ops", defaults=FLOOR).payload_hashes == []
    load_payload(landscape, _source(landscape, new))
    clock.advance(150 * DAY)  # now both are past retention
    done = purge(landscape, actor="ops", defaults=FLOOR)
    assert {r.run_id for r in done.runs} == {old, new}
    assert verify(landscape).ok


def test_run_retention_tombstones_the_run(landscape: Landscape, clock: ManualClock,
                                          tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path, retention={"payloads": "200d", "runs": "1y"})
    clock.advance(201 * DAY)
    first = purge(landscape, actor="ops", defaults=FLOOR)
    assert [r.scope.value for r in first.runs] == ["payloads"]
    clock.advance(200 * DAY)
    second = purge(landscape, actor="ops", defaults=FLOOR)
    (tomb,) = second.runs
    assert (tomb.scope.value, tomb.retention_days, tomb.payload_hashes) == ("run", 365, ())
    with landscape.engine.connect() as conn:
        recorded = conn.execute(select(purged_runs).where(
            purged_runs.c.run_id == run_id).order_by(purged_runs.c.created_at)).mappings().all()
    assert [r["scope"] for r in recorded] == ["payloads", "run"]
    assert recorded[1]["ledger_seq"] >= 1 and len(recorded[1]["ledger_head"]) == 64
    assert plan_purge(landscape, defaults=FLOOR).runs == []  # tombstoned: never again
    report = verify(landscape)
    assert report.ok and orjson.dumps(report.as_dict())


def test_data_protection_records_map_onto_their_ledgered_tables() -> None:
    from governance_pipeline.contracts import data_protection as records
    from governance_pipeline.landscape import bulk
    from governance_pipeline.landscape.recorder import _layout
    from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED, metadata

    classes = [cls for cls in vars(records).values() if isinstance(cls, type)
               and issubclass(cls, records.AuditRecord) and "TABLE" in cls.__dict__]
    assert {cls.TABLE for cls in classes} == {
        "legal_holds", "purges", "purged_runs", "payload_redactions", "erasures"}
    for cls in classes:
        assert LEDGERED[cls.TABLE].scope_column is None  # every one in the global scope
        table = metadata.tables[cls.TABLE]
        assert _layout(cls).columns == tuple(c.name for c in table.columns)
        assert all(bulk.pg_type(c) for c in table.columns)
    assert GLOBAL_SCOPE == "global"

"""Purge, legal holds and erasure in the operator audit log, on SQLite and PostgreSQL.

Each action that changes state writes its entry in its own transaction (the entry names the
purge, hold or erasure it made); a refused action writes a ``refused`` entry with its GP code and
nothing else; an erasure's entry names the field and the value's keyed HMAC, never the value.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.data_protection import HoldTarget
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.operator_records import (
    OperatorAction,
    OperatorEvent,
    OperatorResult,
)
from governance_pipeline.governance.data_protection.erase import erase
from governance_pipeline.governance.data_protection.holds import place_hold, release_hold
from governance_pipeline.governance.data_protection.purge import plan_purge, purge
from governance_pipeline.governance.data_protection.retention import RetentionDefaults
from governance_pipeline.governance.operator_reads import OperatorFilter, list_operator_events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.data_protection_fixtures import (
    DAY,
    claims_pipeline,
    run_claims,
)

FLOOR = RetentionDefaults(payloads_days=None, runs_days=None, floor_days=183)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))


def logged(landscape: Landscape, action: OperatorAction) -> list[OperatorEvent]:
    return list_operator_events(landscape, OperatorFilter(actions=(action,)))


def inputs(event: OperatorEvent) -> dict:
    return orjson.loads(event.inputs_json)


def _run(landscape: Landscape, clock: ManualClock, tmp_path: Path, *,
         subject: bool = False) -> str:
    return run_claims(landscape, clock, claims_pipeline(
        tmp_path, retention={"payloads": "200d"},
        subject_fields=["customer"] if subject else None))


def test_a_purge_is_logged_with_what_it_removed(landscape: Landscape, clock: ManualClock,
                                                tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    clock.advance(201 * DAY)
    plan_purge(landscape, defaults=FLOOR)  # a dry run changes nothing: no entry
    assert logged(landscape, OperatorAction.PURGE) == []
    done = purge(landscape, actor="ops", reason="retention", defaults=FLOOR)
    (entry,) = logged(landscape, OperatorAction.PURGE)
    assert (entry.actor, entry.result, entry.code) == ("ops", OperatorResult.OK, None)
    assert inputs(entry)["purge_id"] == done.purge_id
    assert inputs(entry)["payloads"] == len(done.payload_hashes) > 0
    assert [r.run_id for r in done.runs] == [run_id]
    assert verify(landscape).ok


def test_a_refused_purge_is_logged_refused_with_its_code(landscape: Landscape,
                                                         clock: ManualClock,
                                                         tmp_path: Path) -> None:
    _run(landscape, clock, tmp_path)
    clock.advance(201 * DAY)
    with pytest.raises(GovernanceError) as refused:
        purge(landscape, actor="ops", run_id="run_missing", defaults=FLOOR)
    (entry,) = logged(landscape, OperatorAction.PURGE)
    assert (entry.result, entry.code, entry.subject) == (
        OperatorResult.REFUSED, refused.value.code.code, "run_missing")
    assert verify(landscape).ok


def test_holds_placed_released_and_refused_are_logged(landscape: Landscape, clock: ManualClock,
                                                      tmp_path: Path) -> None:
    run_id = _run(landscape, clock, tmp_path)
    hold = place_hold(landscape, HoldTarget.RUN, run_id, actor="legal", reason="case 12")
    release_hold(landscape, hold.hold_id, actor="legal", reason="case closed")
    with pytest.raises(GovernanceError):
        release_hold(landscape, hold.hold_id, actor="legal", reason="again")
    placed, released, refused = logged(landscape, OperatorAction.LEGAL_HOLD)
    assert (inputs(placed)["operation"], inputs(placed)["hold_id"], placed.result) == (
        "add", hold.hold_id, OperatorResult.OK)
    assert (inputs(released)["operation"], released.result) == ("remove", OperatorResult.OK)
    assert (refused.result, refused.code) == (OperatorResult.REFUSED, "GP-RETENTION-004")


def test_an_erasure_is_logged_with_the_value_hmac_never_the_value(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    _run(landscape, clock, tmp_path, subject=True)
    result = erase(landscape, actor="dpo", reason="GDPR art. 17", field="customer",
                   value="customer-1")
    with pytest.raises(GovernanceError) as again:  # nothing left to erase: refused
        erase(landscape, actor="dpo", reason="twice", field="customer", value="customer-1")
    ok, refused = logged(landscape, OperatorAction.ERASE)
    assert (ok.actor, ok.result) == ("dpo", OperatorResult.OK)
    assert inputs(ok)["erasure_id"] == result.record.erasure_id
    assert inputs(ok)["value_hmac"] == result.record.value_hmac
    assert inputs(ok)["field"] == "customer"
    assert "customer-1" not in ok.inputs_json and "customer-1" not in (ok.detail or "")
    assert (refused.result, refused.code) == (OperatorResult.REFUSED, again.value.code.code)
    assert verify(landscape).ok

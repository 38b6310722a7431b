"""The SOC 2 bundle over a governed month (several runs, an incident, an approval) on both
backends: populations re-derived from their own SQL, samples reproducible, exceptions found
where the records break a control, untested criteria listed as not assessed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.governance.exports.models import ControlStatus, SampleResult, SOC2Bundle
from governance_pipeline.governance.exports.render_json import render_json
from governance_pipeline.governance.exports.soc2 import build_soc2, period_bounds
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_fixtures import (
    GovernedPeriod,
    governed_period,
    query,
    record_approval,
    run_claims,
)


@pytest.fixture
def month(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> GovernedPeriod:
    return governed_period(landscape, clock, tmp_path)


def controls(b: SOC2Bundle) -> dict[str, object]:
    return {c.control_id: c for c in b.controls}


def test_controls_over_a_governed_month(landscape: Landscape, month: GovernedPeriod) -> None:
    b = build_soc2(landscape, month.period)
    assert b.run_ids == sorted([month.approved_run, month.stopped_run, month.plain_run])
    assert (b.period_start, b.period_end) == period_bounds("2026-01")
    by_id = {c.control_id: c for c in b.controls}
    status = {k: c.status for k, c in by_id.items()}
    assert status["GP-CC6.1"] is ControlStatus.EFFECTIVE
    assert status["GP-CC7.3"] is ControlStatus.EFFECTIVE
    assert status["GP-CC8.1"] is ControlStatus.EFFECTIVE
    for pi in ("GP-PI1.1", "GP-PI1.2", "GP-PI1.3", "GP-PI1.4", "GP-PI1.5"):
        assert status[pi] is ControlStatus.EFFECTIVE, by_id[pi].exceptions
    # the plain run was started without a policy snapshot: CC7.2 says so
    cc72 = by_id["GP-CC7.2"]
    assert cc72.status is ControlStatus.EXCEPTIONS_NOTED
    assert [(e.key, e.result) for e in cc72.exceptions] == [(month.plain_run, SampleResult.FAIL)]
    assert "no policy snapshot" in cc72.exceptions[0].reason
    cc73 = by_id["GP-CC7.3"]
    assert cc73.population is not None and cc73.population.count == 1
    assert month.incident_id in cc73.results[0].reason
    assert by_id["GP-CC8.1"].population.keys == [month.approved_run]  # type: ignore[union-attr]
    for criterion in ("CC6.2", "CC6.3", "CC6.6", "CC7.1", "CC7.4", "A1.2"):
        c = by_id[f"GP-{criterion}"]
        assert c.status is ControlStatus.NOT_ASSESSED and c.not_assessed_reason
        assert c.population is None and c.results == []
    criteria = {x for c in b.controls for x in c.criteria}
    assert {"CC6.1", "CC7.2", "CC7.3", "CC8.1", "PI1.1", "PI1.2", "PI1.3", "PI1.4",
            "PI1.5"} <= criteria
    assert b.statement.prepared_by == "management" and b.statement.is_auditor_opinion is False
    assert "not an auditor's opinion" in b.statement.text
    assert SOC2Bundle.model_validate_json(render_json(b)) == b


def test_populations_are_what_their_query_returns(landscape: Landscape,
                                                  month: GovernedPeriod) -> None:
    b = build_soc2(landscape, month.period)
    for c in b.controls:
        if c.population is None:
            continue
        keys = sorted(r[0] for r in query(landscape, c.population.query))
        if c.control_id == "GP-CC8.1":   # the risk-tier filter is applied after the SQL
            assert set(c.population.keys) <= set(keys)
        else:
            assert keys == c.population.keys, c.control_id
        assert c.population.count == len(c.population.keys)
        assert c.population.digest == stable_hash(sorted(c.population.keys))
        assert c.sample is not None and c.sample.drawn == [r.key for r in c.results]
        assert set(c.sample.drawn) <= set(c.population.keys)


def test_samples_are_reproducible_and_bounded(landscape: Landscape, month: GovernedPeriod) -> None:
    first = build_soc2(landscape, month.period, sample_size=2)
    again = build_soc2(landscape, month.period, sample_size=2)
    assert render_json(first) == render_json(again)
    pi = {c.control_id: c for c in first.controls}["GP-PI1.1"]
    assert pi.population.count == 3 and len(pi.results) == 2  # type: ignore[union-attr]
    seeded = build_soc2(landscape, month.period, sample_size=2, seed="auditor-chosen")
    assert seeded.seed == "auditor-chosen" and seeded.seed != first.seed
    records = first.sampled_records()
    assert ("runs", pi.results[0].key, pi.results[0].key) in records
    cc61 = {c.control_id: c for c in first.controls}["GP-CC6.1"]
    assert ("approval_decisions", cc61.results[0].key, "global") in records


def test_self_approval_and_unapproved_high_risk_run_are_exceptions(
        landscape: Landscape, clock: ManualClock, tmp_path: Path, month: GovernedPeriod) -> None:
    record_approval(landscape, clock, "sha256:" + "0" * 64, consumed_for=None,
                    requester="dev.carol", approver="dev.carol")
    record_approval(landscape, clock, "sha256:" + "1" * 64, consumed_for=None,
                    approver="ops.dave", role="operator")
    risky = run_claims(landscape, clock, tmp_path, "risky", rows_count=5, pii=True)
    by_id = {c.control_id: c for c in build_soc2(landscape, month.period).controls}
    reasons = sorted(e.reason for e in by_id["GP-CC6.1"].exceptions)
    assert len(reasons) == 2 and by_id["GP-CC6.1"].status is ControlStatus.EXCEPTIONS_NOTED
    assert any("self-approval" in r for r in reasons)
    assert any("requires role risk_officer" in r for r in reasons)
    cc81 = by_id["GP-CC8.1"]
    assert [e.key for e in cc81.exceptions] == [risky]
    assert "without a consumed approval" in cc81.exceptions[0].reason


def test_an_empty_period_lists_every_control_as_not_assessed(landscape: Landscape,
                                                             month: GovernedPeriod) -> None:
    full = build_soc2(landscape, month.period)
    empty = build_soc2(landscape, "2025-12")
    assert [c.control_id for c in empty.controls] == [c.control_id for c in full.controls]
    assert all(c.status is ControlStatus.NOT_ASSESSED for c in empty.controls)
    tested = [c for c in empty.controls if c.population is not None]
    assert tested and all(c.population.count == 0 and "No population" in c.not_assessed_reason
                          for c in tested)  # type: ignore[union-attr, operator]
    other = build_soc2(landscape, month.period, tenant_id="globex")
    assert other.run_ids == [] and other.tenant_id == "globex"


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "26-01", "2026-01-01", ""])
def test_a_malformed_period_is_refused(landscape: Landscape, period: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_soc2(landscape, period)
    assert caught.value.code.code == "GP-INPUT-002"


def test_a_tampered_record_turns_storage_control_into_an_exception(
        landscape: Landscape, month: GovernedPeriod) -> None:
    with landscape.engine.begin() as conn:
        conn.execute(text("UPDATE rows SET created_at = '2026-01-01T09:09:09.000000Z' "
                          "WHERE run_id = :r AND row_index = 3"), {"r": month.plain_run})
    pi15 = {c.control_id: c for c in build_soc2(landscape, month.period).controls}["GP-PI1.5"]
    assert pi15.status is ControlStatus.EXCEPTIONS_NOTED
    assert [e.key for e in pi15.exceptions] == [month.plain_run]
    assert "ledger verification" in pi15.exceptions[0].reason

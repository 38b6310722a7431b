"""Evidence bundle and executive debrief built from a governed month on both backends: every
figure is checked against the Landscape (plain SQL) or the files the sinks wrote."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import NotFoundError
from governance_pipeline.governance.exports.debrief import build_debrief, rule_fix
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.models import EvidenceBundle, ExecutiveDebrief
from governance_pipeline.governance.exports.render_json import render_json
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_fixtures import (
    POLICIES,
    GovernedPeriod,
    governed_period,
    query,
)


@pytest.fixture
def month(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> GovernedPeriod:
    return governed_period(landscape, clock, tmp_path)


def test_evidence_of_a_stopped_run_matches_the_landscape(landscape: Landscape,
                                                         month: GovernedPeriod) -> None:
    run_id = month.stopped_run
    b = build_evidence(landscape, run_id, sample_size=5)
    assert b.subject == b.run.run_id == run_id
    assert (b.run.status, b.run.termination_reason) == ("failed_policy", "policy_block")
    assert b.policy_snapshot is not None and b.policy_snapshot.snapshot_id == month.snapshot_id
    counts = dict(query(landscape, "SELECT outcome, count(*) FROM token_outcomes WHERE run_id = :r "
                                   "AND is_terminal = 1 GROUP BY outcome", r=run_id))
    assert b.outcome_counts == counts and sum(counts.values()) == b.token_count == 25
    assert [n.node_id for n in b.nodes][:3] == ["source", "normalize", "by_value"]
    assert b.decisions.evaluated == 50 and b.decisions.blocked == 1
    assert b.decisions.would_block == 2 and len(b.decisions.failures) == 2
    p = b.inflection_point
    assert p is not None and (p.row_index, p.node_id, p.policy_id) == (12, "normalize",
                                                                         "claims-guard")
    assert [i.incident_id for i in b.incidents] == [month.incident_id]
    assert b.incidents[0].inflection_id == p.inflection_id
    for artifact in b.artifacts:  # the digests are those of the files the sinks wrote
        data = Path(artifact.path_or_uri).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact.content_hash
        assert len(data) == artifact.size_bytes
    assert b.approvals == []


def test_evidence_lists_the_consumed_approval_with_its_votes(landscape: Landscape,
                                                             month: GovernedPeriod) -> None:
    b = build_evidence(landscape, month.approved_run)
    (a,) = b.approvals
    assert (a.approval_id, a.status, a.consumed_for) == (month.approval_id, "consumed",
                                                         month.approved_run)
    assert [(v.actor, v.role, v.decision) for v in a.decisions] == [
        ("risk.bob", "risk_officer", "approve")]
    assert b.inflection_point is None and b.incidents == []


def test_lineage_sample_is_seeded_reproducible_and_cited(landscape: Landscape,
                                                         month: GovernedPeriod) -> None:
    run_id = month.approved_run
    first = build_evidence(landscape, run_id, sample_size=6)
    again = build_evidence(landscape, run_id, sample_size=6)
    other = build_evidence(landscape, run_id, sample_size=6, seed="another seed")
    assert first.lineage_sample == again.lineage_sample and len(first.lineage) == 6
    assert other.lineage_sample.seed == "another seed"
    assert other.lineage_sample.population_digest == first.lineage_sample.population_digest
    row_ids = sorted(r[0] for r in query(landscape, "SELECT row_id FROM rows WHERE run_id = :r",
                                         r=run_id))
    assert first.lineage_sample.population_size == len(row_ids) == 30
    assert set(first.lineage_sample.drawn) <= set(row_ids)
    assert first.sampled_records() == [("rows", item.row_id, run_id) for item in first.lineage]
    for item in first.lineage:
        (stored,) = query(landscape, "SELECT row_index, source_data_hash FROM rows "
                                     "WHERE row_id = :i", i=item.row_id)
        assert (item.row_index, item.source_data_hash) == tuple(stored)
        assert len(item.outcomes) == 1 and " -> " in item.outcomes[0]
    everything = build_evidence(landscape, run_id, sample_size=1000)
    assert everything.lineage_sample.drawn == row_ids


def test_bundle_json_round_trips_and_models_refuse_unknown_fields(
        landscape: Landscape, month: GovernedPeriod) -> None:
    b = build_evidence(landscape, month.stopped_run)
    assert EvidenceBundle.model_validate_json(render_json(b)) == b
    assert render_json(b) == render_json(build_evidence(landscape, month.stopped_run))
    with pytest.raises(ValidationError):
        EvidenceBundle.model_validate({**b.model_dump(), "opinion": "unqualified"})
    with pytest.raises(ValidationError):
        b.title = "changed"  # type: ignore[misc]


def test_unknown_run_and_incident_are_not_found(landscape: Landscape) -> None:
    with pytest.raises(NotFoundError):
        build_evidence(landscape, "run_missing")
    with pytest.raises(NotFoundError):
        build_debrief(landscape, "inc_missing")


def test_debrief_explains_the_incident(landscape: Landscape, month: GovernedPeriod) -> None:
    d = build_debrief(landscape, month.incident_id)
    assert (d.subject, d.run_id, d.risk_level) == (month.incident_id, month.stopped_run, "high")
    assert "claims-guard" in d.summary and "row 12" in d.summary
    assert d.remediation_status == "open" and d.resolution is None
    assert d.cost == 0.75 and d.cost_calls == 1
    # rows entered when the run read them; the stop was recorded 2.5 s later (fixture clock)
    assert d.time_to_detect_seconds == 2.5
    assert d.recommended_actions[0] == POLICIES[0]["rules"][0]["fix"]
    assert [t.at for t in d.timeline] == sorted(t.at for t in d.timeline)
    assert any("inflection point" in t.event for t in d.timeline)
    delivered = query(landscape, "SELECT count(DISTINCT t.row_id) FROM tokens t JOIN "
                                 "token_outcomes o ON o.token_id = t.token_id WHERE t.run_id = :r "
                                 "AND o.outcome IN ('completed', 'routed')", r=month.stopped_run)
    impact = d.business_impact
    assert impact.rows_written_before_stop == delivered[0][0]
    assert impact.rows_read == 25 and impact.rows_stopped == 25 - delivered[0][0]
    assert "standard" in impact.sinks_affected
    assert ExecutiveDebrief.model_validate_json(render_json(d)) == d
    assert d.sampled_records() == [("incidents", month.incident_id, month.stopped_run)]


def test_rule_fix_reads_lists_and_mappings() -> None:
    assert rule_fix(POLICIES, "claims-guard", "max-amount") == POLICIES[0]["rules"][0]["fix"]
    mapping = {"p": {"rules": {"r": {"fix": "do this"}}}}
    assert rule_fix(mapping, "p", "r") == "do this"
    assert rule_fix(POLICIES, "claims-guard", "no-such-rule") is None
    assert rule_fix(POLICIES, "no-such-policy", "max-amount") is None


def test_rule_fix_reads_a_stored_policy_snapshot() -> None:
    snapshot = {"format": 1, "policies": [{"policy": "note_privacy", "version": 1,
                                           "definition": {"rules": [
                                               {"id": "no-secrets", "fix": "Rotate it."}]}}]}
    assert rule_fix(snapshot, "note_privacy", "no-secrets") == "Rotate it."
    assert rule_fix(snapshot, "note_privacy", "no-such-rule") is None

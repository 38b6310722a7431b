"""Runtime governance in the engine: snapshot at start, decisions per token, the stop at the
inflection point, the incident, and parity between advisory and enforced runs.

Every run is a real engine run on a real Landscape (SQLite file and PostgreSQL); expectations
come from the input (the rows where the notes carry personal data or a secret), never from the
code under test.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, text

from governance_pipeline.contracts.enums import (
    IncidentSeverity,
    IncidentStatus,
    Outcome,
    PolicyMode,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.errors import AuditIntegrityError, PolicyStopError
from governance_pipeline.contracts.records import Incident, InflectionPoint, TokenOutcome
from governance_pipeline.governance.policy.incidents import get_incident, list_incidents
from governance_pipeline.governance.policy.snapshot import load_snapshot
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.payloads import load_payload
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.schema import (
    checkpoints,
    events,
    incidents,
    inflection_points,
    node_states,
    policy_snapshots,
    token_outcomes,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.policy_fixtures import (
    PLANTED,
    attach,
    decisions,
    execute,
    note_rows,
    policy_doc,
    published_claim_ids,
    row_of,
    screening,
    start,
    would_block,
)

FIRST = min(PLANTED)
NODE = "publish_ready"


def _one(landscape: Landscape, table, run_id: str):  # type: ignore[no-untyped-def]
    with landscape.engine.connect() as conn:
        return conn.execute(select(table).where(table.c.run_id == run_id)).mappings().all()


def _event_types(landscape: Landscape, run_id: str) -> list[str]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(select(events.c.type).where(events.c.scope == run_id)
                                 .order_by(events.c.event_id)).scalars())


def test_enforced_policy_stops_at_the_first_violating_row(landscape: Landscape,
                                                          tmp_path: Path) -> None:
    path = screening(tmp_path, chunk_size=25)
    result = execute(landscape, path)
    assert isinstance(result.stopped, PolicyStopError)
    assert result.stopped.exit_code == 3 and result.stopped.code.code == "GP-POLICY-001"
    run = get_run(landscape, result.run_id)
    assert run.status is RunStatus.FAILED_POLICY
    assert run.termination_reason is TerminationReason.POLICY_BLOCK

    # The inflection point: the first planted row, at the node the policy is attached to.
    (point_row,) = _one(landscape, inflection_points, result.run_id)
    point = InflectionPoint.from_row(point_row)
    assert (point.row_index, point.node_id, point.rule_id) == (FIRST, NODE, PLANTED[FIRST])
    assert row_of(point.token_id) == FIRST and point.policy_id == "note_privacy"

    # Nothing at or after the inflection point reached the sink; everything before it did.
    rows = note_rows()
    expected = [int(r["claim_id"]) for r in rows[:FIRST]]
    assert published_claim_ids(tmp_path / "out" / "published.csv") == expected

    # Chunks after the stop were never taken; the stopping chunk was checkpointed.
    done = sorted(r["chunk_index"] for r in _one(landscape, checkpoints, result.run_id))
    assert done == [0, FIRST // 25]

    # Every token of the stopping chunk from the inflection row on failed, saying why.
    with landscape.engine.connect() as conn:
        outs = [TokenOutcome.from_row(r) for r in conn.execute(
            select(token_outcomes).where(token_outcomes.c.run_id == result.run_id))
            .mappings()]
        reasons = {row_of(o.token_id): orjson.loads(load_payload(conn, o.error_hash))
                   for o in outs if o.outcome is Outcome.FAILED}
    chunk_end = (FIRST // 25 + 1) * 25
    assert sorted(reasons) == list(range(FIRST, chunk_end))
    assert reasons[FIRST]["code"] == "GP-POLICY-002"
    assert reasons[FIRST]["rule"] == PLANTED[FIRST]
    assert {reasons[r]["code"] for r in range(FIRST + 1, chunk_end)} == {"GP-POLICY-003"}
    assert sum(o.outcome is Outcome.COMPLETED for o in outs) == FIRST

    # The stop, its incident and its events were recorded; the trail is sound and verifies.
    assert {"policy.blocked", "incident.opened", "run.failed_policy",
            "run.output_published"} <= set(_event_types(landscape, result.run_id))
    assert sweep(landscape, result.run_id).findings == []
    assert verify(landscape, result.run_id).findings == []


def test_the_incident_is_opened_with_the_stop_and_lists_what_was_written(
        landscape: Landscape, tmp_path: Path) -> None:
    result = execute(landscape, screening(tmp_path, chunk_size=25))
    (found,) = list_incidents(landscape, run_id=result.run_id)
    view = get_incident(landscape, found.incident_id)
    incident = view.incident
    assert incident.status is IncidentStatus.OPEN
    assert incident.severity is IncidentSeverity.CRITICAL  # the rule's severity
    assert (incident.rule_id, incident.node_id) == (PLANTED[FIRST], NODE)
    assert incident.inflection_id == view.inflection.inflection_id  # type: ignore[union-attr]
    # Opened in the same transaction as the stop: same timestamp as the inflection point.
    assert incident.detected_at == view.inflection.occurred_at  # type: ignore[union-attr]
    doc = view.as_dict()
    assert doc["written_before_stop"]["rows_per_sink"] == {"published": FIRST}
    (artifact,) = doc["written_before_stop"]["artifacts"]
    assert artifact["rows"] == FIRST
    assert doc["snapshot_hash"] == load_snapshot(landscape,
                                                 incident.policy_snapshot_id).content_hash
    assert doc["lineage"]["inflection_point"]["row_index"] == FIRST
    assert doc["decision"]["blocked"] is True


def test_advisory_and_enforced_flag_the_same_rows_and_enforced_stops_at_the_first(
        landscape: Landscape, tmp_path: Path) -> None:
    advisory = execute(landscape, screening(tmp_path / "a", mode="advisory"))
    assert advisory.stopped is None
    assert get_run(landscape, advisory.run_id).status is RunStatus.COMPLETED
    flagged = would_block(landscape, advisory.run_id)
    assert flagged == {(row, NODE, rule) for row, rule in PLANTED.items()}
    assert len(published_claim_ids(tmp_path / "a" / "out" / "published.csv")) == len(note_rows())

    enforced = execute(landscape, screening(tmp_path / "e", mode="enforced"))
    assert enforced.stopped is not None
    evaluated = {row_of(d.token_id) for d in decisions(landscape, enforced.run_id)}
    # On every row both runs evaluated, the decisions agree rule by rule …
    def by_row(run_id: str) -> dict[tuple[int, str], tuple[str, bool]]:
        return {(row_of(d.token_id), d.rule_id): (d.result.value, d.would_block)
                for d in decisions(landscape, run_id) if row_of(d.token_id) in evaluated}
    assert by_row(enforced.run_id) == by_row(advisory.run_id)
    # … and the stop is exactly at the first row advisory flagged.
    point = InflectionPoint.from_row(_one(landscape, inflection_points, enforced.run_id)[0])
    assert point.row_index == min(row for row, _, _ in flagged)


@pytest.mark.parametrize("declared,default,kill,expect", [
    ("off", None, False, None),
    ("advisory", None, False, PolicyMode.ADVISORY),
    ("enforced", None, False, PolicyMode.ENFORCED),
    ("off", None, True, None),
    ("advisory", None, True, PolicyMode.ADVISORY),
    ("enforced", None, True, PolicyMode.ADVISORY),     # the kill switch caps enforcement
    (None, "enforced", False, PolicyMode.ENFORCED),     # undeclared: the global default
    (None, "off", False, None),
    (None, None, False, PolicyMode.ADVISORY),           # no default set: advisory
    (None, "enforced", True, PolicyMode.ADVISORY),
])
def test_mode_matrix(landscape: Landscape, tmp_path: Path, declared: str | None,
                     default: str | None, kill: bool, expect: PolicyMode | None) -> None:
    env = {"GOVERNANCE_POLICY_KILL_SWITCH": "1" if kill else "0"}
    if default:
        env["GOVERNANCE_POLICY_MODE"] = default
    result = execute(landscape, screening(tmp_path, mode=declared), env=env)
    recorded = decisions(landscape, result.run_id)
    snapshot = load_snapshot(landscape, get_run(landscape, result.run_id).policy_snapshot_id)
    (entry,) = snapshot.content["policies"]
    assert snapshot.content["kill_switch"] is kill
    if expect is None:  # off: nothing evaluated, nothing recorded, the run completes
        assert entry["mode"] == "off" and recorded == [] and result.stopped is None
        return
    assert entry["mode"] == expect.value
    assert {d.mode for d in recorded} == {expect}
    assert {row_of(d.token_id) for d in recorded if d.would_block} >= {FIRST}
    assert (result.stopped is not None) is (expect is PolicyMode.ENFORCED)


def test_decisions_and_node_states_name_the_snapshot_and_its_hash(
        landscape: Landscape, tmp_path: Path) -> None:
    result = execute(landscape, screening(tmp_path, mode="advisory"))
    run = get_run(landscape, result.run_id)
    with landscape.engine.connect() as conn:
        stored = conn.execute(select(policy_snapshots).where(
            policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).mappings().one()
        state_snapshots = set(conn.execute(select(node_states.c.policy_snapshot_id).where(
            node_states.c.run_id == result.run_id)).scalars())
    recorded = decisions(landscape, result.run_id)
    rules = len(policy_doc()["rules"])
    assert len(recorded) == len(note_rows()) * rules  # every rule, every token, pass or fail
    assert {(d.snapshot_id, d.snapshot_hash) for d in recorded} == \
        {(stored["snapshot_id"], stored["content_hash"])}
    assert state_snapshots == {stored["snapshot_id"]}


def test_editing_the_policy_file_during_a_run_changes_nothing_for_that_run(
        landscape: Landscape, tmp_path: Path) -> None:
    path = screening(tmp_path, chunk_size=25, mode="enforced")
    runner = start(landscape, path)
    records = list(runner.ctx.plugins.source.read(0))
    runner.process_chunk(0, records[:25])
    # Mid-run, someone switches the policy off and drops its personal-data rule …
    edited = policy_doc("off")
    edited["rules"] = [r for r in edited["rules"] if r["id"] != "no-personal-data"]
    (tmp_path / "note_privacy.yaml").write_text(orjson.dumps(edited).decode())
    # … and the run continues in another process: it reads its stored snapshot, not the file.
    later = attach(landscape, runner.run_id, path)
    with pytest.raises(PolicyStopError):
        later.process_chunk(1, records[25:50])
    point = InflectionPoint.from_row(_one(landscape, inflection_points, runner.run_id)[0])
    assert (point.row_index, point.rule_id) == (FIRST, "no-personal-data")


def test_a_tampered_stored_snapshot_is_refused_at_resume(landscape: Landscape,
                                                         tmp_path: Path) -> None:
    path = screening(tmp_path, chunk_size=25, mode="enforced")
    runner = start(landscape, path)
    runner.process_chunk(0, list(runner.ctx.plugins.source.read(0))[:25])
    snapshot_id = get_run(landscape, runner.run_id).policy_snapshot_id
    attach(landscape, runner.run_id, path)  # untouched: accepted
    with landscape.engine.begin() as conn:  # soften the policy behind the run's back
        conn.execute(text("UPDATE policy_snapshots SET policies_json = "
                          "REPLACE(policies_json, '\"mode\":\"enforced\"', '\"mode\":\"off\"') "
                          "WHERE snapshot_id = :sid"), {"sid": snapshot_id})
    with pytest.raises(AuditIntegrityError) as caught:
        attach(landscape, runner.run_id, path)
    assert caught.value.code.code == "GP-POLICY-005"
    assert any(f.table == "policy_snapshots" for f in verify(landscape, "global").findings)


def test_a_missing_snapshot_is_refused(landscape: Landscape) -> None:
    with pytest.raises(AuditIntegrityError) as caught:
        load_snapshot(landscape, "pol_" + "0" * 32)
    assert caught.value.code.code == "GP-POLICY-004"


def test_runs_under_the_same_policies_share_one_snapshot(landscape: Landscape,
                                                         tmp_path: Path) -> None:
    first = execute(landscape, screening(tmp_path / "1", mode="advisory"))
    second = execute(landscape, screening(tmp_path / "2", mode="advisory"))
    third = execute(landscape, screening(tmp_path / "3", mode="enforced"))
    ids = [get_run(landscape, r.run_id).policy_snapshot_id for r in (first, second, third)]
    assert ids[0] == ids[1] != ids[2]


def test_output_boundary_policies_stop_before_any_sink_writes(landscape: Landscape,
                                                              tmp_path: Path) -> None:
    result = execute(landscape, screening(tmp_path, chunk_size=50, at_output=True))
    assert result.stopped is not None
    point = InflectionPoint.from_row(_one(landscape, inflection_points, result.run_id)[0])
    assert (point.row_index, point.node_id) == (FIRST, "published")  # the sink's boundary
    assert published_claim_ids(tmp_path / "out" / "published.csv") == \
        [int(r["claim_id"]) for r in note_rows()[:FIRST]]


def test_a_budget_counts_across_chunks_and_processes(landscape: Landscape,
                                                     tmp_path: Path) -> None:
    budget = {"policy": "note_privacy", "version": 1, "mode": "enforced", "rules": [
        {"id": "row-budget", "kind": "budget", "max_rows": 30, "severity": "high",
         "fix": "Raise the budget or split the input."}]}
    path = screening(tmp_path, chunk_size=25, policy=budget)
    runner = start(landscape, path)
    records = list(runner.ctx.plugins.source.read(0))
    runner.process_chunk(0, records[:25])
    later = attach(landscape, runner.run_id, path)  # counters come back from the checkpoint
    with pytest.raises(PolicyStopError):
        later.process_chunk(1, records[25:50])
    point = InflectionPoint.from_row(_one(landscape, inflection_points, runner.run_id)[0])
    assert (point.row_index, point.rule_id) == (30, "row-budget")


def test_an_incident_is_acknowledged_then_resolved_in_the_ledger(landscape: Landscape,
                                                                 tmp_path: Path) -> None:
    from governance_pipeline.governance.policy.incidents import update_incident

    result = execute(landscape, screening(tmp_path))
    (found,) = list_incidents(landscape, run_id=result.run_id)
    update_incident(landscape, found.incident_id, status=IncidentStatus.ACKNOWLEDGED,
                    actor="oncall")
    done = update_incident(landscape, found.incident_id, status=IncidentStatus.RESOLVED,
                           actor="oncall", note="source system masks e-mail addresses now")
    assert done.status is IncidentStatus.RESOLVED and done.resolved_at is not None
    with pytest.raises(Exception, match="cannot become"):
        update_incident(landscape, found.incident_id, status=IncidentStatus.ACKNOWLEDGED,
                        actor="oncall")
    assert verify(landscape, result.run_id).findings == []
    with landscape.engine.connect() as conn:
        row = conn.execute(select(incidents).where(
            incidents.c.incident_id == found.incident_id)).mappings().one()
    assert Incident.from_row(row).resolution.startswith("source system")  # type: ignore[union-attr]


def test_explain_shows_the_inflection_and_the_decisions_of_a_token(landscape: Landscape,
                                                                   tmp_path: Path) -> None:
    result = execute(landscape, screening(tmp_path))
    doc = explain(landscape, result.run_id, row_index=FIRST).as_dict()
    assert doc["inflection_point"]["rule_id"] == PLANTED[FIRST]
    (token,) = doc["tokens"]
    failed = [d for d in token["policy_decisions"] if d["result"] == "fail"]
    assert [(d["rule_id"], d["blocked"]) for d in failed] == [(PLANTED[FIRST], True)]
    assert "j***@e***.com" in orjson.dumps(failed[0]["detail"]).decode()
    assert "jane.doe@example.com" not in orjson.dumps(token["policy_decisions"]).decode()
    before = explain(landscape, result.run_id, row_index=FIRST - 1).as_dict()
    assert before["inflection_point"] is None
    assert all(d["result"] == "pass" for d in before["tokens"][0]["policy_decisions"]
               if d["rule_id"] != "amount-recorded")


@pytest.mark.parametrize("tamper,check", [
    ("UPDATE policy_decisions SET snapshot_hash = :zeros WHERE decision_id = "
     "(SELECT MIN(decision_id) FROM policy_decisions WHERE run_id = :run)",
     "decision_not_under_run_snapshot"),
    ("DELETE FROM incidents WHERE run_id = :run", "policy_stop_unexplained"),
    ("UPDATE inflection_points SET decision_id = (SELECT MIN(decision_id) FROM policy_decisions "
     "WHERE run_id = :run AND would_block = 0) WHERE run_id = :run", "inflection_point_invalid"),
])
def test_the_sweep_names_a_broken_governance_record(landscape: Landscape, tmp_path: Path,
                                                    tamper: str, check: str) -> None:
    result = execute(landscape, screening(tmp_path))
    assert sweep(landscape, result.run_id).findings == []  # the untouched twin is clean
    with landscape.engine.begin() as conn:
        conn.execute(text(tamper), {"run": result.run_id, "zeros": "0" * 64})
    found = sweep(landscape, result.run_id).by_check(check)
    assert len(found) == 1 and found[0].scope == result.run_id


def test_validate_previews_the_snapshot_a_run_then_stores(landscape: Landscape,
                                                          tmp_path: Path) -> None:
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.governance.policy.runtime import preview_policy

    path = screening(tmp_path, mode=None)
    config = load_pipeline(path, env={})
    preview = preview_policy(config, path.parent, env={"GOVERNANCE_POLICY_MODE": "enforced"})
    assert preview is not None
    described = preview.describe()
    assert [(p["policy"], p["mode"], p["evaluated_at"]) for p in described["policies"]] == \
        [("note_privacy", "enforced", [NODE])]
    runner = start(landscape, path, env={"GOVERNANCE_POLICY_MODE": "enforced"})
    stored = load_snapshot(landscape, get_run(landscape, runner.run_id).policy_snapshot_id)
    assert stored.content_hash == described["snapshot_hash"]
    # Another default mode is another snapshot: the preview tells them apart.
    other = preview_policy(config, path.parent, env={}).describe()  # type: ignore[union-attr]
    assert other["snapshot_hash"] != described["snapshot_hash"]


def test_the_debrief_of_a_real_stop_tells_what_happened_and_what_to_do(
        landscape: Landscape, tmp_path: Path) -> None:
    from governance_pipeline.governance.exports.debrief import build_debrief

    result = execute(landscape, screening(tmp_path))
    (found,) = list_incidents(landscape, run_id=result.run_id)
    debrief = build_debrief(landscape, found.incident_id)
    fix = next(r["fix"] for r in policy_doc()["rules"] if r["id"] == PLANTED[FIRST])
    assert debrief.recommended_actions[0] == fix
    assert f"row {FIRST}" in debrief.summary and debrief.risk_level == "critical"
    assert debrief.business_impact.rows_written_before_stop == FIRST
    assert "jane.doe@example.com" not in debrief.model_dump_json()


def test_the_evidence_pdf_lists_the_rules_not_their_deny_list_terms(landscape: Landscape,
                                                                     tmp_path: Path) -> None:
    import io

    from pypdf import PdfReader

    from governance_pipeline.governance.exports.evidence import build_evidence
    from governance_pipeline.governance.exports.render_json import bundle_digest, render_json
    from governance_pipeline.governance.exports.render_pdf import render_pdf
    from governance_pipeline.governance.policy.text_rules import shipped_list

    result = execute(landscape, screening(tmp_path))
    bundle = build_evidence(landscape, result.run_id)
    pdf = render_pdf(bundle, bundle_digest=bundle_digest(bundle))
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert all(rule["id"] in text for rule in policy_doc()["rules"])
    assert "bundle.json" in text
    terms = shipped_list("profanity")
    assert not [t for t in terms if f'"{t}"' in text]  # the list is in the JSON only
    stored = orjson.loads(render_json(bundle))["policy_snapshot"]["policies_json"]
    assert sum(f'"{t}"' in stored for t in terms) == len(terms)

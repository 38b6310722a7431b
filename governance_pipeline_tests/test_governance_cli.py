"""The shipped governance examples through the real command line, as a user runs them.

Each ``run`` is a Dagster run on a local instance in a real subprocess: the enforced policy
example stops with exit 3 at its first violating row and ``incidents``/``explain`` show why;
the kill switch makes the same run advisory; the tier-2 example is refused (exit 4) until a
two-stage ladder approves it and its token is consumed, and the token cannot be used twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from governance_pipeline.contracts.events import envelope
from governance_pipeline.governance.events.catalog import validate_event
from governance_pipeline.governance.events.outbox import read_events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.policy_fixtures import PLANTED, REPO, note_rows
from governance_pipeline_tests.test_cli import Result, run, sql

pytestmark = pytest.mark.slow

FIRST = min(PLANTED)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working copy of the examples (pipelines, policies, data) and an empty home."""
    for part in ("pipelines", "policies", "data"):
        shutil.copytree(REPO / "examples" / part, tmp_path / "examples" / part)
    return tmp_path / "home"


def _db(home: Path) -> str:
    return f"sqlite:///{home / 'landscape.db'}"


def _example(home: Path, name: str) -> str:
    return str(home.parent / "examples" / "pipelines" / name)


def _every_event_matches_its_schema(home: Path) -> set[str]:
    """All events the flows wrote, each validated against the JSON Schema of its type."""
    landscape = Landscape.open(_db(home), home / "keys")
    try:
        found = read_events(landscape)
    finally:
        landscape.dispose()
    for event in found:
        validate_event(envelope(event))
    return {e.type for e in found}


def _ok(result: Result, code: int = 0) -> Result:
    assert result.code == code, result.err[-2000:]
    return result


def test_enforced_example_stops_with_exit_3_and_incidents_and_explain_show_why(
        home: Path) -> None:
    screening = _example(home, "claims_screening.yaml")
    stopped = _ok(run(home, "run", screening, "--json"), 3)
    problem = stopped.json()
    assert problem["code"] == "GP-POLICY-001" and problem["details"]["row_index"] == FIRST
    run_id = problem["details"]["run_id"]

    (listed,) = _ok(run(home, "incidents", "--json")).json()
    shown = _ok(run(home, "incidents", listed["incident_id"], "--json")).json()
    point = shown["inflection_point"]
    assert (point["row_index"], point["rule_id"]) == (FIRST, PLANTED[FIRST])
    stored_hash = sql(_db(home), "SELECT content_hash FROM policy_snapshots WHERE snapshot_id = ?",
                      (shown["policy_snapshot_id"],))[0][0]
    assert shown["snapshot_hash"] == stored_hash
    assert shown["written_before_stop"]["rows_per_sink"] == {"published": FIRST}
    text = _ok(run(home, "incidents", listed["incident_id"])).out
    assert f"row {FIRST}" in text and stored_hash in text and "written before the stop" in text

    lineage = _ok(run(home, "explain", run_id, "--row", str(FIRST), "--json")).json()
    assert lineage["inflection_point"]["decision_id"] == point["decision_id"]
    blocked = [d for d in lineage["tokens"][0]["policy_decisions"] if d["blocked"]]
    assert [d["rule_id"] for d in blocked] == [PLANTED[FIRST]]
    assert "INFLECTION POINT" in _ok(run(home, "explain", run_id, "--row", str(FIRST))).out

    # The same pipeline with the kill switch: advisory, completes, the same rows flagged.
    advisory = _ok(run(home, "run", screening, "--json",
                       GOVERNANCE_POLICY_KILL_SWITCH="1")).json()
    assert advisory["status"] == "completed"
    assert advisory["sinks"]["published"]["rows"] == len(note_rows())
    flagged = sql(_db(home), "SELECT token_id, rule_id FROM policy_decisions "
                             "WHERE run_id = ? AND would_block = 1", (advisory["run_id"],))
    rows = {(int(t.split(".r")[1].split(".")[0]), rule) for t, rule in flagged}
    assert rows == set(PLANTED.items())
    # A run stopped by policy is not resumed: a new run is the way forward.
    refused = run(home, "resume", run_id)
    assert refused.code == 2, refused.err
    assert "stopped by an enforced policy" in refused.err
    assert {"policy.blocked", "incident.opened", "run.failed_policy", "run.output_published",
            "ir.validated_pass", "ir.dag_diff_ok"} <= _every_event_matches_its_schema(home)


def test_tier2_example_is_refused_until_a_two_stage_ladder_approves_it(home: Path) -> None:
    partner = _example(home, "partner_export.yaml")
    blocked = _ok(run(home, "run", partner, "--json"), 4).json()
    assert blocked["code"] == "GP-APPROVAL-001"
    assert sql(_db(home), "SELECT count(*) FROM events WHERE type = 'run.blocked'") == [(1,)]

    request = _ok(run(home, "approvals", "request", partner, "--actor", "analyst",
                      "--json")).json()
    approval_id, token = request["approval"]["approval_id"], request["token"]
    early = _ok(run(home, "run", partner, "--approval-token", token, "--json"), 4).json()
    assert early["code"].startswith("GP-APPROVAL-")  # the ladder is not complete yet
    _ok(run(home, "approvals", "decide", approval_id, "approve", "--role", "data_owner",
            "--actor", "data-owner"))
    _ok(run(home, "approvals", "decide", approval_id, "approve", "--role", "compliance",
            "--actor", "compliance-officer"))

    ran = _ok(run(home, "run", partner, "--approval-token", token, "--json")).json()
    assert ran["status"] == "completed" and ran["sinks"]["shared"]["rows"] > 0
    consumed = sql(_db(home), "SELECT status, consumed_for FROM approvals WHERE approval_id = ?",
                   (approval_id,))
    assert consumed == [("consumed", ran["run_id"])]

    again = _ok(run(home, "approvals", "consume", token, partner, "--json"), 4).json()
    assert "already" in again["detail"]
    reasons = sql(_db(home), "SELECT payload_json FROM events WHERE type = 'ir.approval_invalid'")
    assert any('"already_consumed"' in p for (p,) in reasons)
    assert {"run.blocked", "ir.validated_escalate", "ir.approval_created",
            "ir.approval_consumed", "ir.approval_invalid", "approval.decided",
            "run.completed"} <= _every_event_matches_its_schema(home)


def test_after_the_demo_an_approved_soc2_export_verifies_and_a_flipped_byte_fails(
        home: Path) -> None:
    _ok(run(home, "demo"))
    _ok(run(home, "run", _example(home, "claims_screening.yaml")), 3)  # an incident this month
    period = sql(_db(home), "SELECT MIN(started_at) FROM runs")[0][0][:7]
    blocked = _ok(run(home, "export", "soc2", "--period", period, "--json"), 4).json()
    assert "approvals request --export soc2" in blocked["detail"]
    assert sql(_db(home), "SELECT status FROM exports") == [("blocked",)]

    request = _ok(run(home, "approvals", "request", "--export", "soc2", "--subject", period,
                      "--actor", "analyst", "--json")).json()
    approval_id, token = request["approval"]["approval_id"], request["token"]
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        _ok(run(home, "approvals", "decide", approval_id, "approve", "--role", role,
                "--actor", actor))
    written = _ok(run(home, "export", "soc2", "--period", period, "--approval-token", token,
                      "--json")).json()
    bundle = Path(written["path"])
    assert (bundle / "bundle.pdf").read_bytes().startswith(b"%PDF")
    _ok(run(home, "verify-bundle", str(bundle)))
    pdf = bundle / "bundle.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01
    pdf.write_bytes(bytes(data))
    assert _ok(run(home, "verify-bundle", str(bundle), "--json"), 5).json()["ok"] is False

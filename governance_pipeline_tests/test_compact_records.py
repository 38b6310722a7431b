"""Compact records on both backends: pass-through node states stored as one ``compact_states``
record per token, default routes implied by the gate's state and its ``default`` edge; every
reader still sees every logical state and route, and ``verify`` (ledger + sweep) detects every
edit of the compact encoding done with a plain SQL client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import NodeStateStatus
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.records import NodeState
from governance_pipeline.engine import ids
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import RunResult, Runner
from governance_pipeline.landscape import logical_states
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.engine_fixtures import EXAMPLES, write_claims
from governance_pipeline_tests.tamper import RawDB, raw_connection

ROWS = 24
POS = {"source": 0, "normalize": 1, "by_value": 2}  # the linear example's node positions


@dataclass(frozen=True)
class LinearRun:
    result: RunResult
    landscape: Landscape

    @property
    def run_id(self) -> str:
        return self.result.run_id


@pytest.fixture
def linear(landscape: Landscape, clock: ManualClock, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> LinearRun:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path / "home"))
    doc = yaml.safe_load((EXAMPLES / "pipelines" / "claims_linear.yaml").read_text("utf-8"))
    doc["chunk_size"] = 10
    fields = doc["nodes"][0]["options"]["fields"]  # a few high-value rows among 24
    fields["amount_band"] = fields["amount_band"].replace("5000", "2000")
    doc["source"]["options"]["path"] = str(write_claims(tmp_path / "claims.csv", ROWS, seed=7))
    path = tmp_path / "linear.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    config = load_pipeline(path)
    result = Runner.start(landscape, config, base_dir=tmp_path, pipeline_path=path,
                          clock=clock).execute()
    return LinearRun(result, landscape)


def _count(db: RawDB, sql: str, *params: object) -> int:
    return int(db.scalar(sql, params))


def _routed_tokens(trail: logical_states.LogicalTrail) -> dict[str, str]:
    state_token = {s.state_id: s.token_id for s in trail.states}
    return {state_token[r.event.state_id]: r.label for r in trail.routes}


# --- the encoding, and the logical model read back ----------------------------------------------
def test_pass_through_states_and_default_routes_are_not_stored_one_by_one(
        linear: LinearRun, db_url: str) -> None:
    run_id = linear.run_id
    with linear.landscape.engine.connect() as conn:
        trail = logical_states.read_trail(conn, run_id)
    with raw_connection(db_url) as db:
        stored_states = _count(db, "SELECT count(*) FROM node_states WHERE run_id = ?", run_id)
        stored_routes = _count(db, "SELECT count(*) FROM routing_events WHERE run_id = ?", run_id)
        compact = _count(db, "SELECT count(*) FROM compact_states WHERE run_id = ?", run_id)
        tokens = _count(db, "SELECT count(*) FROM tokens WHERE run_id = ?", run_id)
    by_node = Counter(s.node_id for s in trail.states)
    routed = Counter(_routed_tokens(trail).values())
    gate_states = by_node["by_value"]
    assert gate_states > 0 and routed["default"] > 0 and routed["route[0]"] > 0
    assert sum(routed.values()) == gate_states  # every gate state has its one logical route
    # Stored: the changing transform's states, and only the non-default routes.
    assert stored_routes == routed["route[0]"]
    assert stored_states == len(trail.states) - sum(
        1 for s in trail.states if s.status is NodeStateStatus.COMPLETED
        and s.input_hash == s.output_hash
        and s.context_after in (None, logical_states.DEFAULT_ROUTE_REASON))
    assert 0 < compact <= tokens  # zero or one record per token here
    assert stored_states + compact < len(trail.states)


def test_logical_states_are_complete_and_well_formed(linear: LinearRun) -> None:
    run_id = linear.run_id
    with linear.landscape.engine.connect() as conn:
        trail = logical_states.read_trail(conn, run_id)
        tokens = [t for (t,) in conn.exec_driver_sql(
            f"SELECT token_id FROM tokens WHERE run_id = '{run_id}'")]
    ids_seen = [s.state_id for s in trail.states]
    assert len(ids_seen) == len(set(ids_seen))
    for s in trail.states:  # ids as the engine derives them; one state per (token, node)
        assert s.state_id == ids.state_id(s.token_id, s.step_index)
        assert s.state_id == logical_states.state_id(s.token_id, s.step_index)
        if s.node_id == "by_value":
            assert s.status is NodeStateStatus.COMPLETED and s.input_hash == s.output_hash
    # Every token that reached a sink has a completed state there (the sweep's check, too).
    sinks = {s.token_id for s in trail.states if s.node_id in
             ("standard", "high_value", "errors", "quarantine")}
    assert sinks == set(tokens)
    for r in trail.routes:
        if r.label == "default":
            assert r.event.reason_json == logical_states.DEFAULT_ROUTE_REASON
            assert r.to_node_id == "standard" and r.event.ordinal == 0


def test_the_plain_sql_trail_and_the_sweeps_view_agree(linear: LinearRun) -> None:
    """read_trail (plain SQL, every reader) and node_states_view (SQLAlchemy, the sweep) are two
    spellings of the logical states: the same rows, for the run and for some tokens."""
    with linear.landscape.engine.connect() as conn:
        trail = logical_states.read_trail(conn, linear.run_id)
        view = logical_states.node_states_view(linear.run_id).subquery()
        rows = [NodeState.from_row(r) for r in conn.execute(
            select(view).order_by(view.c.step_index, view.c.state_id)).mappings()]
        some = sorted({s.token_id for s in trail.states})[:3]
        of_tokens = logical_states.read_trail(conn, linear.run_id, some)
        view = logical_states.node_states_view(linear.run_id, some).subquery()
        token_rows = [NodeState.from_row(r) for r in conn.execute(
            select(view).order_by(view.c.step_index, view.c.state_id)).mappings()]
    assert trail.states == rows and len(rows) > len(some)
    assert of_tokens.states == token_rows and token_rows


def test_explain_shows_the_implied_states_and_routes(linear: LinearRun) -> None:
    with linear.landscape.engine.connect() as conn:
        trail = logical_states.read_trail(conn, linear.run_id)
    token = next(t for t, label in _routed_tokens(trail).items() if label == "default")
    exp = explain(linear.landscape, linear.run_id, token_id=token)
    (view,) = [v for v in exp.tokens if v.token.token_id == token]
    nodes = [sv.state.node_id for sv in view.states]
    assert nodes == ["normalize", "by_value", "standard"]
    gate = view.states[1]
    assert gate.routing == [{"to": "standard", "label": "default", "mode": "move",
                            "reason": {"route": "default"}}]
    assert gate.state.context_after == logical_states.DEFAULT_ROUTE_REASON
    assert view.states[2].state.duration_ms is None  # the compact record keeps the total
    assert view.states[0].state.duration_ms is not None


def test_a_state_both_stored_and_compact_is_refused(linear: LinearRun, db_url: str) -> None:
    with raw_connection(db_url) as db:
        token, mask = db.execute("SELECT token_id, step_mask FROM compact_states "
                                 "WHERE run_id = ? ORDER BY token_id LIMIT 1", (linear.run_id,))[0]
        db.execute("UPDATE compact_states SET step_mask = ? WHERE token_id = ? AND step_mask = ?",
                   (mask | 1 << POS["normalize"], token, mask))
    with linear.landscape.engine.connect() as conn, pytest.raises(AuditIntegrityError):
        logical_states.read_trail(conn, linear.run_id, [token])
    report = sweep(linear.landscape, linear.run_id)
    assert [f.extra["node_id"] for f in report.by_check("compact_state_conflicts")] == ["normalize"]


# --- the tamper matrix of the compact encoding ------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    check: str
    table: str
    key: str
    message: str


Tamper = Callable[[RawDB, str], list[Expect]]


def _first_compact(db: RawDB, run_id: str) -> tuple[str, int, str]:
    return db.execute("SELECT token_id, step_mask, row_hash FROM compact_states WHERE run_id = ? "
                      "ORDER BY token_id LIMIT 1", (run_id,))[0]  # type: ignore[return-value]


def _key(token: str, mask: int) -> str:
    return orjson.dumps([token, mask]).decode()


def edit_compact_range_hash(db: RawDB, run_id: str) -> list[Expect]:
    token, mask, _ = _first_compact(db, run_id)
    db.execute("UPDATE compact_states SET row_hash = ? WHERE token_id = ? AND step_mask = ?",
               ("0" * 64, token, mask))
    return [Expect("record", "compact_states", _key(token, mask), "modified")]


def shrink_compact_range(db: RawDB, run_id: str) -> list[Expect]:
    """Drop the sink step from a range: the token seems never to have reached its sink."""
    token, mask, _ = _first_compact(db, run_id)
    smaller = mask & (1 << POS["by_value"])
    db.execute("UPDATE compact_states SET step_mask = ? WHERE token_id = ? AND step_mask = ?",
               (smaller, token, mask))
    outcome = ids.outcome_id(token, terminal=True)
    return [Expect("record", "compact_states", _key(token, mask), "deleted"),
            Expect("record", "compact_states", _key(token, smaller), "inserted"),
            Expect("completed_outcome_without_sink_state", "token_outcomes", outcome, "")]


def delete_compact_range(db: RawDB, run_id: str) -> list[Expect]:
    token, mask, _ = _first_compact(db, run_id)
    db.execute("DELETE FROM compact_states WHERE token_id = ? AND step_mask = ?", (token, mask))
    return [Expect("record", "compact_states", _key(token, mask), "deleted")]


def flip_default_edge(db: RawDB, run_id: str) -> list[Expect]:
    """Make the gate's routed edge its default: every default-routed row would seem high value."""
    edges = dict(db.execute("SELECT label, edge_id FROM edges WHERE run_id = ? AND "
                            "from_node_id = 'by_value'", (run_id,)))
    db.execute("UPDATE edges SET label = 'swap' WHERE edge_id = ?", (edges["default"],))
    db.execute("UPDATE edges SET label = 'default' WHERE edge_id = ?", (edges["route[0]"],))
    db.execute("UPDATE edges SET label = 'route[0]' WHERE edge_id = ?", (edges["default"],))
    return [Expect("record", "edges", edges["default"], "modified"),
            Expect("record", "edges", edges["route[0]"], "modified")]


def forge_routing_event(db: RawDB, run_id: str) -> list[Expect]:
    """A routing event for a default-routed gate state, sending it to the high-value sink."""
    token, _, _ = _first_compact(db, run_id)
    state = ids.state_id(token, POS["by_value"])
    edge = db.scalar("SELECT edge_id FROM edges WHERE run_id = ? AND from_node_id = 'by_value' "
                     "AND label = 'route[0]'", (run_id,))
    created = db.scalar("SELECT recorded_at FROM compact_states WHERE token_id = ?", (token,))
    db.execute("INSERT INTO routing_events (event_id, run_id, state_id, edge_id, routing_group_id,"
               " ordinal, mode, reason_hash, reason_json, created_at) VALUES (?, ?, ?, ?, ?, 0,"
               " 'move', NULL, ?, ?)", (f"{state}.x0", run_id, state, edge, state,
                                        '{"route":0}', created))
    return [Expect("record", "routing_events", f"{state}.x0", "inserted")]


COMPACT_TAMPERS: list[Tamper] = [edit_compact_range_hash, shrink_compact_range,
                                 delete_compact_range, flip_default_edge, forge_routing_event]


def _found(report_findings: list, expect: Expect) -> bool:  # type: ignore[type-arg]
    return any(f.check == expect.check and f.table == expect.table and f.key == expect.key
               and f.message.startswith(expect.message) for f in report_findings)


@pytest.mark.parametrize("attack", COMPACT_TAMPERS, ids=lambda f: f.__name__)
def test_tampering_with_compact_records_fails_verify(linear: LinearRun, db_url: str,
                                                     attack: Tamper) -> None:
    run_id = linear.run_id
    assert verify(linear.landscape, run_id).ok  # the unedited database passes, sweep too
    assert sweep(linear.landscape, run_id).ok
    with raw_connection(db_url) as db:
        expected = attack(db, run_id)
    findings = verify(linear.landscape, run_id).findings + sweep(linear.landscape,
                                                                   run_id).findings
    for expect in expected:
        assert _found(findings, expect), (expect, findings)


def test_a_compact_step_without_a_node_is_a_sweep_finding(linear: LinearRun, db_url: str) -> None:
    assert sweep(linear.landscape, linear.run_id).by_check("compact_state_conflicts") == []
    with raw_connection(db_url) as db:
        token, mask, _ = _first_compact(db, linear.run_id)
        db.execute("UPDATE compact_states SET step_mask = ? WHERE token_id = ? AND step_mask = ?",
                   (mask | 1 << 40, token, mask))
    (finding,) = sweep(linear.landscape, linear.run_id).by_check("compact_state_conflicts")
    assert finding.key == _key(token, mask | 1 << 40) and "no node" in finding.message

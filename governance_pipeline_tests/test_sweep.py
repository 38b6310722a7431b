"""The audit sweep on both backends: a clean run passes every check; each way of breaking the
token model is reported by its check, naming the record involved, and by nothing else.

Broken states the recorder and the schema refuse are written with raw SQL that bypasses the
constraint (SQLite pragmas, or dropping the PostgreSQL constraint / the partial unique index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from sqlalchemy import and_, select, text

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import (
    BatchStatus,
    CallStatus,
    Determinism,
    NodeStateStatus,
    NodeType,
    OperationStatus,
    OperationType,
    Outcome,
    RunStatus,
    TerminationReason,
    TriggerType,
)
from governance_pipeline.contracts.errors import NotFoundError
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import (
    Batch,
    BatchMember,
    Call,
    Node,
    NodeState,
    Operation,
    SourceRow,
    Token,
    TokenOutcome,
    TokenParent,
)
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import node_states, nodes
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import CHECK_NAMES, sweep
from governance_pipeline_tests.synthetic import record_synthetic_run

_NODES = (("src", NodeType.SOURCE), ("xf", NodeType.TRANSFORM), ("fork", NodeType.FORK),
          ("agg", NodeType.AGGREGATION), ("join", NodeType.COALESCE), ("out", NodeType.SINK),
          ("err", NodeType.SINK))


@dataclass
class Built:
    """Ids of what a fixture run recorded, by label, so tests name records from the data."""

    run_id: str
    tokens: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    calls: dict[str, str] = field(default_factory=dict)
    batch_id: str = ""
    fork_group: str = ""


class _Run:
    """Writes the records of one fixture run into one unit of work, remembering their ids."""

    def __init__(self, uow: UnitOfWork, built: Built) -> None:
        self.uow, self.b, self.rid = uow, built, built.run_id
        self._row_index = 0

    def token(self, label: str, *, row_of: str | None = None, **groups: str) -> Token:
        if row_of is None:
            data_hash = self.uow.payload({"row": label})
            row = SourceRow(new_id("row_"), self.rid, "src", self._row_index, data_hash,
                            self.uow.now)
            self._row_index += 1
            self.uow.add(row)
            row_id = row.row_id
        else:
            row_id = row_of
        tok = Token(new_id("tok_"), self.rid, row_id, groups.get("branch"),
                    groups.get("fork"), groups.get("join"), groups.get("expand"), self.uow.now)
        self.uow.add(tok)
        self.b.tokens[label] = tok.token_id
        return tok

    def state(self, label: str, token: Token, node: str, *,
              status: NodeStateStatus = NodeStateStatus.COMPLETED, attempt: int = 0) -> NodeState:
        now = self.uow.now
        done = status is not NodeStateStatus.OPEN
        st = NodeState(new_id("st_"), self.rid, token.token_id, node, _NODE_POS[node], attempt,
                       status, stable_hash({"in": label}),
                       stable_hash({"out": label}) if status is NodeStateStatus.COMPLETED else None,
                       None, None,
                       '{"error":"boom"}' if status is NodeStateStatus.FAILED else None,
                       1.5 if done else None, None, now, now if done else None)
        self.uow.add(st)
        self.b.states[label] = st.state_id
        return st

    def outcome(self, label: str, token: Token, outcome: Outcome, **fields: str) -> TokenOutcome:
        o = TokenOutcome(new_id("out_"), self.rid, token.token_id, outcome, outcome.is_terminal,
                         fields.get("sink_name"), fields.get("batch_id"),
                         fields.get("fork_group_id"), fields.get("join_group_id"),
                         fields.get("expand_group_id"), fields.get("error_hash"), None,
                         self.uow.now)
        self.uow.add(o)
        self.b.outcomes[label] = o.outcome_id
        return o

    def parent(self, child: Token, parent: Token, ordinal: int = 0) -> None:
        self.uow.add(TokenParent(child.token_id, parent.token_id, self.rid, ordinal))

    def sink(self, label: str, token: Token, sink: str, outcome: Outcome = Outcome.COMPLETED,
             **fields: str) -> None:
        self.state(f"{label}@{sink}", token, sink)
        self.outcome(label, token, outcome, sink_name=sink, **fields)


_NODE_POS = {name: pos for pos, (name, _) in enumerate(_NODES)}
_ERR = stable_hash({"error": "boom"})


def record_clean_run(recorder: Recorder, clock: ManualClock, *,
                     status: RunStatus | None = RunStatus.COMPLETED) -> Built:
    """A run exercising every outcome kind, fork, expand, coalesce, aggregation and both call
    parents, consistent in every way the sweep checks. ``status=None`` leaves it running."""
    run = recorder.begin_run(pipeline_name="sweep-fixture", tenant_id="t1", config={"n": 1})
    b = Built(run.run_id)
    clock.advance(1)
    with recorder.unit(b.run_id) as uow:
        w = _Run(uow, b)
        uow.add_all(Node(b.run_id, name, kind, f"builtin.{name}", "1.0", Determinism.DETERMINISTIC,
                         stable_hash({"node": name}), "{}", pos, uow.now)
                    for pos, (name, kind) in enumerate(_NODES))
        done = w.token("done")
        xf_state = w.state("done@xf", done, "xf")
        w.sink("done", done, "out")
        state_call = Call(new_id("call_"), b.run_id, xf_state.state_id, None, 0, "http",
                          CallStatus.SUCCESS, stable_hash("req"), stable_hash("resp"), None, 3.0,
                          None, uow.now)
        uow.add(state_call)
        op = Operation(new_id("op_"), b.run_id, "out", OperationType.SINK_WRITE,
                       OperationStatus.COMPLETED, None, "out.csv", None, 2.0, uow.now, uow.now)
        uow.add(op)
        op_call = Call(new_id("call_"), b.run_id, None, op.operation_id, 0, "fs",
                       CallStatus.SUCCESS, stable_hash("w"), stable_hash("ok"), None, 1.0, None,
                       uow.now)
        uow.add(op_call)
        b.calls.update(state=state_call.call_id, operation=op_call.call_id)

        parent = w.token("forked")
        w.state("forked@fork", parent, "fork")
        kids = uow.fork(parent, ["a", "b"])
        b.fork_group = kids[0].fork_group_id or ""
        b.tokens.update(fork_a=kids[0].token_id, fork_b=kids[1].token_id)
        w.sink("fork_a", kids[0], "out")
        w.sink("fork_b", kids[1], "err", Outcome.ROUTED)

        joiner = w.token("joined")
        jkids = uow.fork(joiner, ["l", "r"])
        merged = w.token("merged", row_of=joiner.row_id, join="jg1")
        for i, kid in enumerate(jkids):
            w.state(f"join_kid{i}@join", kid, "join")
            w.outcome(f"join_kid{i}", kid, Outcome.COALESCED, join_group_id="jg1")
            w.parent(merged, kid, i)
        w.sink("merged", merged, "out")

        exp = w.token("expanded")
        w.state("expanded@xf", exp, "xf")
        w.outcome("expanded", exp, Outcome.EXPANDED, expand_group_id="eg1")
        for i in range(2):
            child = w.token(f"exp{i}", row_of=exp.row_id, expand="eg1")
            w.parent(child, exp, i)
            w.sink(f"exp{i}", child, "out")

        for label, kind in (("failed", Outcome.FAILED), ("quarantined", Outcome.QUARANTINED)):
            tok = w.token(label)
            w.state(f"{label}@xf", tok, "xf", status=NodeStateStatus.FAILED)
            w.outcome(label, tok, kind, error_hash=_ERR)
        div = w.token("diverted")
        w.state("diverted@xf", div, "xf", status=NodeStateStatus.FAILED)
        w.state("diverted@out", div, "out", status=NodeStateStatus.FAILED)  # a failed sink write
        w.sink("diverted", div, "err", Outcome.DIVERTED, error_hash=_ERR)

        batched = w.token("batched")
        b.batch_id = new_id("batch_")
        uow.add(Batch(b.batch_id, b.run_id, "agg", 0, BatchStatus.DRAFT, None, None, None,
                      uow.now, None))
        uow.add(BatchMember(b.batch_id, batched.token_id, b.run_id, 0))
        w.outcome("batched_buffer", batched, Outcome.BUFFERED, batch_id=b.batch_id)
    clock.advance(1)
    with recorder.unit(b.run_id) as uow:
        w = _Run(uow, b)
        w._row_index = 100
        batched_tok = Token(b.tokens["batched"], b.run_id, "", None, None, None, None, "")
        agg_state = w.state("batched@agg", batched_tok, "agg")
        uow.update("batches", {"batch_id": b.batch_id},
                   {"status": BatchStatus.COMPLETED.value, "trigger_type": TriggerType.COUNT.value,
                    "state_id": agg_state.state_id, "completed_at": uow.now})
        w.outcome("batched", batched_tok, Outcome.CONSUMED_IN_BATCH, batch_id=b.batch_id)
        emitted = w.token("emitted")
        w.parent(emitted, batched_tok)
        w.sink("emitted", emitted, "out")
    clock.advance(1)
    if status is not None:
        recorder.finish_run(b.run_id, status, TerminationReason.COMPLETED
                            if status is RunStatus.COMPLETED else TerminationReason.SYSTEM_FAILURE)
    return b


def tamper(landscape: Landscape, *statements: tuple[str, dict[str, Any]],
           pg_drop: Sequence[tuple[str, str]] = (), drop_index: Sequence[str] = ()) -> None:
    """Write ``statements`` past the schema's protections, as an attacker or a bug could."""
    engine = landscape.engine
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # the connect hook puts it in autocommit mode
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.execute("PRAGMA ignore_check_constraints=ON")
            for index in drop_index:
                cur.execute(f"DROP INDEX {index}")
            for sql, params in statements:
                cur.execute(sql, params)
        finally:
            raw.close()
        return
    with engine.begin() as conn:
        for table, constraint in pg_drop:
            conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}"))
        for index in drop_index:
            conn.execute(text(f"DROP INDEX {index}"))
        for sql, params in statements:
            conn.execute(text(sql), params)


def found(report: Any) -> set[tuple[str, str]]:
    return {(f.check, f.key) for f in report.findings}


@pytest.fixture
def built(recorder: Recorder, clock: ManualClock) -> Built:
    return record_clean_run(recorder, clock)


# --- must-pass -----------------------------------------------------------------------------------
def test_clean_run_passes_every_check(landscape, built):
    report = sweep(landscape, built.run_id)
    assert report.findings == []
    assert report.ok
    assert report.checks == list(CHECK_NAMES) and len(CHECK_NAMES) == 16
    assert report.run_ids == [built.run_id]
    doc = report.as_dict()
    assert doc["ok"] is True and set(doc["finding_counts"]) == set(CHECK_NAMES)


def test_running_run_with_tokens_in_flight_has_no_findings(landscape, recorder, clock):
    b = record_clean_run(recorder, clock, status=None)
    with recorder.unit(b.run_id) as uow:
        w = _Run(uow, b)
        w._row_index = 200
        tok = w.token("in_flight")
        w.state("in_flight@xf", tok, "xf", status=NodeStateStatus.OPEN)
    assert sweep(landscape, b.run_id).findings == []
    recorder.finish_run(b.run_id, RunStatus.INTERRUPTED, TerminationReason.SYSTEM_FAILURE)
    assert found(sweep(landscape, b.run_id)) == {
        ("tokens_without_terminal_outcome", b.tokens["in_flight"]),
        ("node_states_open_after_run_end", b.states["in_flight@xf"])}


def test_sweep_of_unknown_run_is_not_found(landscape, built):
    with pytest.raises(NotFoundError):
        sweep(landscape, "run_does_not_exist")


def test_findings_are_scoped_to_the_swept_run(landscape, recorder, clock, built):
    other = record_clean_run(recorder, clock)
    tamper(landscape, ("DELETE FROM token_outcomes WHERE outcome_id = :o",
                       {"o": built.outcomes["failed"]}))
    assert sweep(landscape, other.run_id).ok
    everything = sweep(landscape)
    assert everything.run_ids == [built.run_id, other.run_id]
    assert [(f.check, f.key, f.scope) for f in everything.findings] == [
        ("tokens_without_terminal_outcome", built.tokens["failed"], built.run_id)]


# --- must-reject: one per check ----------------------------------------------------------------
def test_token_without_terminal_outcome(landscape, built):
    tamper(landscape, ("DELETE FROM token_outcomes WHERE outcome_id = :o",
                       {"o": built.outcomes["failed"]}))
    report = sweep(landscape, built.run_id)
    assert found(report) == {("tokens_without_terminal_outcome", built.tokens["failed"])}
    assert built.tokens["failed"] in report.findings[0].message


def test_token_with_two_terminal_outcomes(landscape, built):
    second = new_id("out_")
    tamper(landscape, (
        "INSERT INTO token_outcomes (outcome_id, run_id, token_id, outcome, is_terminal, "
        "error_hash, recorded_at) VALUES (:id, :r, :t, 'failed', 1, :e, '2026-01-01T00:00:09Z')",
        {"id": second, "r": built.run_id, "t": built.tokens["done"], "e": _ERR}),
        drop_index=["uq_token_terminal_outcome"])
    report = sweep(landscape, built.run_id)
    assert found(report) == {("tokens_with_multiple_terminal_outcomes", built.tokens["done"])}
    assert sorted(report.findings[0].extra["outcome_ids"]) == sorted(
        [built.outcomes["done"], second])


def test_outcome_missing_required_field(landscape, built):
    tamper(landscape, ("UPDATE token_outcomes SET error_hash = NULL WHERE outcome_id = :o",
                       {"o": built.outcomes["quarantined"]}),
           pg_drop=[("token_outcomes", "ck_token_outcomes_required_fields")])
    report = sweep(landscape, built.run_id)
    assert found(report) == {("outcome_missing_required_fields", built.outcomes["quarantined"])}
    assert report.findings[0].extra == {"token_id": built.tokens["quarantined"],
                                        "outcome": "quarantined", "missing": ["error_hash"]}


@pytest.mark.parametrize(("column", "value"), [("is_terminal", 0), ("is_terminal", 2),
                                               ("outcome", "vanished")])
def test_outcome_terminal_flag_mismatch(landscape, built, column, value):
    tamper(landscape, (f"UPDATE token_outcomes SET {column} = :v WHERE outcome_id = :o",
                       {"v": value, "o": built.outcomes["failed"]}),
           pg_drop=[("token_outcomes", "ck_token_outcomes_terminal_matches_outcome"),
                    ("token_outcomes", "ck_token_outcomes_is_terminal_flag"),
                    ("token_outcomes", "ck_token_outcomes_outcome_valid")])
    report = sweep(landscape, built.run_id)
    assert found(report) == {("outcome_terminal_flag_mismatch", built.outcomes["failed"])}
    assert built.tokens["failed"] in report.findings[0].message


def test_completed_outcome_without_sink_state(landscape, built):
    tamper(landscape, ("DELETE FROM node_states WHERE state_id = :s",
                       {"s": built.states["done@out"]}))
    report = sweep(landscape, built.run_id)
    assert found(report) == {("completed_outcome_without_sink_state", built.outcomes["done"])}
    assert report.findings[0].extra == {"token_id": built.tokens["done"], "sink_name": "out"}


def test_sink_state_without_matching_outcome(landscape, recorder, built):
    with recorder.unit(built.run_id) as uow:
        w = _Run(uow, built)
        quarantined = Token(built.tokens["quarantined"], built.run_id, "", None, None, None, None,
                            "")
        w.state("quarantined@out", quarantined, "out")
    report = sweep(landscape, built.run_id)
    assert found(report) == {("sink_state_without_matching_outcome",
                              built.states["quarantined@out"])}
    assert report.findings[0].extra["terminal_outcome"] == "quarantined"


def test_sink_state_at_another_sink_than_the_outcome_names(landscape, built):
    tamper(landscape, ("UPDATE token_outcomes SET sink_name = 'err' WHERE outcome_id = :o",
                       {"o": built.outcomes["exp0"]}))
    assert found(sweep(landscape, built.run_id)) == {
        ("completed_outcome_without_sink_state", built.outcomes["exp0"]),
        ("sink_state_without_matching_outcome", built.states["exp0@out"])}


def test_fork_child_without_parent_link(landscape, built):
    tamper(landscape, ("DELETE FROM token_parents WHERE token_id = :t",
                       {"t": built.tokens["fork_a"]}))
    report = sweep(landscape, built.run_id)
    assert found(report) == {("child_token_without_parent", built.tokens["fork_a"])}
    assert report.findings[0].extra["fork_group_id"] == built.fork_group


def test_parent_without_forked_outcome_for_the_group(landscape, built):
    tamper(landscape, ("UPDATE token_outcomes SET fork_group_id = 'fg_other' WHERE token_id = :t",
                       {"t": built.tokens["forked"]}))
    report = sweep(landscape, built.run_id)
    parent = built.tokens["forked"]
    assert found(report) == {
        ("parent_without_fork_or_expand_outcome", orjson.dumps([kid, parent]).decode())
        for kid in (built.tokens["fork_a"], built.tokens["fork_b"])}


def test_expand_child_whose_parent_was_not_expanded(landscape, built):
    tamper(landscape, ("UPDATE token_outcomes SET outcome = 'failed', error_hash = :e, "
                       "expand_group_id = NULL WHERE outcome_id = :o",
                       {"e": _ERR, "o": built.outcomes["expanded"]}))
    parent = built.tokens["expanded"]
    assert found(sweep(landscape, built.run_id)) == {
        ("parent_without_fork_or_expand_outcome", orjson.dumps([built.tokens[k], parent]).decode())
        for k in ("exp0", "exp1")}


def test_node_state_open_after_run_end(landscape, recorder, built):
    with recorder.unit(built.run_id) as uow:
        tok = Token(built.tokens["done"], built.run_id, "", None, None, None, None, "")
        _Run(uow, built).state("done@xf#1", tok, "xf", status=NodeStateStatus.OPEN, attempt=1)
    report = sweep(landscape, built.run_id)
    assert found(report) == {("node_states_open_after_run_end", built.states["done@xf#1"])}
    assert report.findings[0].extra["token_id"] == built.tokens["done"]


@pytest.mark.parametrize("case", ["both", "neither"])
def test_call_with_both_or_neither_parent(landscape, built, case):
    if case == "both":
        sql, call = "UPDATE calls SET state_id = :s WHERE call_id = :c", built.calls["operation"]
    else:
        sql, call = "UPDATE calls SET state_id = NULL WHERE call_id = :c", built.calls["state"]
    tamper(landscape, (sql, {"s": built.states["failed@xf"], "c": call}),
           pg_drop=[("calls", "ck_calls_one_parent")])
    report = sweep(landscape, built.run_id)
    assert found(report) == {("call_parent_xor_violation", call)}
    assert case in report.findings[0].message


def test_token_still_buffered_in_completed_run(landscape, built):
    tamper(landscape, ("DELETE FROM token_outcomes WHERE outcome_id = :o",
                       {"o": built.outcomes["batched"]}))
    token = built.tokens["batched"]
    report = sweep(landscape, built.run_id)
    # With no terminal outcome the token also fails check 1; check 8 says why.
    assert found(report) == {("tokens_buffered_in_completed_run", token),
                             ("tokens_without_terminal_outcome", token)}
    assert report.by_check("tokens_buffered_in_completed_run")[0].extra["batch_id"] == \
        built.batch_id


def test_buffered_token_in_failed_run_is_not_a_buffering_finding(landscape, recorder, clock):
    b = record_clean_run(recorder, clock, status=RunStatus.FAILED)
    tamper(landscape, ("DELETE FROM token_outcomes WHERE outcome_id = :o",
                       {"o": b.outcomes["batched"]}),
           ("UPDATE batches SET status = 'executing', completed_at = NULL WHERE batch_id = :b",
            {"b": b.batch_id}))
    assert found(sweep(landscape, b.run_id)) == {
        ("tokens_without_terminal_outcome", b.tokens["batched"])}


def test_batch_not_final_in_completed_run(landscape, built):
    tamper(landscape, ("UPDATE batches SET status = 'executing', completed_at = NULL "
                       "WHERE batch_id = :b", {"b": built.batch_id}))
    report = sweep(landscape, built.run_id)
    assert found(report) == {("batches_unfinished_in_completed_run", built.batch_id)}
    assert report.findings[0].extra["status"] == "executing"
    assert not report.ok and report.as_dict()["finding_counts"][
        "batches_unfinished_in_completed_run"] == 1


# --- the shared synthetic run (recorded as the engine would) --------------------------------------
def test_synthetic_run_is_clean_and_a_lost_outcome_is_found(landscape, recorder):
    synthetic = record_synthetic_run(recorder, rows=10)
    assert sweep(landscape).findings == []
    forked = synthetic.fork_child_token_ids[0]
    with landscape.engine.connect() as conn:
        sink_state = conn.execute(
            select(node_states.c.state_id)
            .join(nodes, and_(nodes.c.run_id == node_states.c.run_id,
                              nodes.c.node_id == node_states.c.node_id))
            .where(node_states.c.token_id == forked,
                   nodes.c.node_type == NodeType.SINK.value)).scalar_one()
    tamper(landscape, ("DELETE FROM token_outcomes WHERE token_id = :t", {"t": forked}))
    # The child was completed at a sink, so its sink state is now unbacked as well.
    assert found(sweep(landscape, synthetic.run_id)) == {
        ("tokens_without_terminal_outcome", forked),
        ("sink_state_without_matching_outcome", sink_state)}

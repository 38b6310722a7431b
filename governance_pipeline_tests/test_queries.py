"""Read models and verified payload reads, on both backends."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event, select, update

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import (
    Determinism,
    NodeStateStatus,
    NodeType,
    Outcome,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.errors import (
    AUDIT_INTEGRITY,
    NOT_FOUND,
    PAYLOAD_CORRUPT,
    AuditIntegrityError,
    NotFoundError,
)
from governance_pipeline.contracts.hashing import canonical_json, sha256_hex, stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import Node, NodeState, SourceRow, Token, TokenOutcome
from governance_pipeline.landscape.payloads import load_json_payload, load_payload
from governance_pipeline.landscape.queries import get_run, list_runs, run_exists
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import payloads
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.test_sweep import tamper


@dataclass
class Recorded:
    run_id: str
    outcomes: list[TokenOutcome] = field(default_factory=list)
    token_ids: list[str] = field(default_factory=list)
    open_state_ids: list[str] = field(default_factory=list)

    def expected_counts(self) -> dict[str, int]:
        """Tokens by terminal outcome, plus tokens whose only outcomes are buffered."""
        terminal = Counter(o.outcome.value for o in self.outcomes if o.is_terminal)
        done = {o.token_id for o in self.outcomes if o.is_terminal}
        waiting = {o.token_id for o in self.outcomes if not o.is_terminal} - done
        if waiting:
            terminal[Outcome.BUFFERED.value] = len(waiting)
        return dict(terminal)


def record_run(recorder: Recorder, clock: ManualClock, plan: dict[Outcome, int], *,
               open_states: int = 0, buffered_then_consumed: int = 0,
               finish: bool = True) -> Recorded:
    """A run with ``plan[outcome]`` tokens ending in each outcome (``buffered``: left waiting)."""
    clock.advance(10)
    run = recorder.begin_run(pipeline_name="q", tenant_id="t", config={"plan": len(plan)})
    rec = Recorded(run.run_id)
    with recorder.unit(run.run_id) as uow:
        uow.add(Node(run.run_id, "xf", NodeType.TRANSFORM, "x", "1", Determinism.DETERMINISTIC,
                     stable_hash("xf"), "{}", 0, uow.now))

        def token() -> Token:
            index = len(rec.token_ids)
            row = SourceRow(new_id("row_"), run.run_id, "xf", index,
                            uow.payload({"i": index}), uow.now)
            tok = Token(new_id("tok_"), run.run_id, row.row_id, None, None, None, None, uow.now)
            uow.add_all([row, tok])
            rec.token_ids.append(tok.token_id)
            return tok

        def outcome(tok: Token, kind: Outcome) -> None:
            values = {name: f"{name}-{kind.value}" for name in kind.required_fields}
            o = TokenOutcome(new_id("out_"), run.run_id, tok.token_id, kind, kind.is_terminal,
                             values.get("sink_name"), values.get("batch_id"),
                             values.get("fork_group_id"), values.get("join_group_id"),
                             values.get("expand_group_id"), values.get("error_hash"), None,
                             uow.now)
            uow.add(o)
            rec.outcomes.append(o)

        for kind, n in plan.items():
            for _ in range(n):
                outcome(token(), kind)
        for _ in range(buffered_then_consumed):
            tok = token()
            outcome(tok, Outcome.BUFFERED)
            outcome(tok, Outcome.CONSUMED_IN_BATCH)
        for tok_id in rec.token_ids[:open_states]:
            st = NodeState(new_id("st_"), run.run_id, tok_id, "xf", 0, 0, NodeStateStatus.OPEN,
                           stable_hash(tok_id), None, None, None, None, None, None, uow.now, None)
            uow.add(st)
            rec.open_state_ids.append(st.state_id)
    if finish:
        recorder.finish_run(run.run_id, RunStatus.COMPLETED, TerminationReason.COMPLETED)
    return rec


# --- runs ----------------------------------------------------------------------------------------
def test_list_runs_newest_first_with_counts_of_what_was_recorded(landscape, recorder, clock):
    older = record_run(recorder, clock, {Outcome.COMPLETED: 3, Outcome.FAILED: 1},
                       buffered_then_consumed=2)
    newer = record_run(recorder, clock, {Outcome.ROUTED: 2, Outcome.QUARANTINED: 1,
                                         Outcome.BUFFERED: 2}, open_states=2, finish=False)
    summaries = list_runs(landscape)
    assert [s.run.run_id for s in summaries] == [newer.run_id, older.run_id]
    for summary, rec in zip(summaries, (newer, older), strict=True):
        assert summary.outcome_counts == rec.expected_counts()
        assert summary.token_count == len(rec.token_ids)
        assert summary.open_states == len(rec.open_state_ids)
    assert summaries[0].run.status is RunStatus.RUNNING
    assert summaries[1].run.status is RunStatus.COMPLETED
    # Tokens buffered then consumed count once, under their terminal outcome.
    assert summaries[1].outcome_counts[Outcome.CONSUMED_IN_BATCH.value] == 2
    assert Outcome.BUFFERED.value not in summaries[1].outcome_counts
    assert summaries[0].as_dict()["outcome_counts"] == newer.expected_counts()


def test_list_runs_limit_and_empty_landscape(landscape, recorder, clock):
    assert list_runs(landscape) == []
    first = record_run(recorder, clock, {Outcome.COMPLETED: 1})
    second = record_run(recorder, clock, {Outcome.FAILED: 1})
    assert [s.run.run_id for s in list_runs(landscape, limit=1)] == [second.run_id]
    assert [s.run.run_id for s in list_runs(landscape, limit=5)] == [second.run_id, first.run_id]
    assert list_runs(landscape, limit=0) == []


def test_list_runs_counts_come_from_one_query_whatever_the_number_of_runs(landscape, recorder,
                                                                          clock):
    selects: list[str] = []

    def spy(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    record_run(recorder, clock, {Outcome.COMPLETED: 2})
    event.listen(landscape.engine, "before_cursor_execute", spy)
    try:
        one = list_runs(landscape)
        with_one_run = len(selects)
        for _ in range(3):
            record_run(recorder, clock, {Outcome.COMPLETED: 1, Outcome.FAILED: 1})
        selects.clear()
        four = list_runs(landscape)
    finally:
        event.remove(landscape.engine, "before_cursor_execute", spy)
    assert len(one) == 1 and len(four) == 4
    assert with_one_run == len(selects) == 2  # the runs page, then one grouped count query


def test_get_run_and_run_exists(landscape, recorder, clock):
    rec = record_run(recorder, clock, {Outcome.COMPLETED: 1})
    run = get_run(landscape, rec.run_id)
    assert run.run_id == rec.run_id and run.status is RunStatus.COMPLETED
    assert run.termination_reason is TerminationReason.COMPLETED
    assert run_exists(landscape, rec.run_id)
    assert not run_exists(landscape, "run_missing")
    with pytest.raises(NotFoundError) as err:
        get_run(landscape, "run_missing")
    assert err.value.code is NOT_FOUND and "run_missing" in err.value.message


def test_reads_reject_a_run_status_the_model_does_not_know(landscape, recorder, clock):
    rec = record_run(recorder, clock, {Outcome.COMPLETED: 1})
    tamper(landscape, ("UPDATE runs SET status = 'paused' WHERE run_id = :r", {"r": rec.run_id}),
           pg_drop=[("runs", "ck_runs_status_valid")])
    with pytest.raises(AuditIntegrityError) as err:
        get_run(landscape, rec.run_id)
    assert err.value.code is AUDIT_INTEGRITY and "paused" in err.value.message
    with pytest.raises(AuditIntegrityError):
        list_runs(landscape)


def test_list_runs_rejects_an_unknown_outcome_value(landscape, recorder, clock):
    rec = record_run(recorder, clock, {Outcome.COMPLETED: 1})
    tamper(landscape, ("UPDATE token_outcomes SET outcome = 'teleported' WHERE run_id = :r",
                       {"r": rec.run_id}),
           pg_drop=[("token_outcomes", "ck_token_outcomes_outcome_valid"),
                    ("token_outcomes", "ck_token_outcomes_required_fields"),
                    ("token_outcomes", "ck_token_outcomes_terminal_matches_outcome")])
    with pytest.raises(AuditIntegrityError, match="teleported"):
        list_runs(landscape)


# --- payloads ------------------------------------------------------------------------------------
def _store(recorder: Recorder, value: object) -> str:
    run = recorder.begin_run(pipeline_name="p", tenant_id="t", config={})
    with recorder.unit(run.run_id) as uow:
        return uow.payload(value)


def test_load_payload_returns_intact_bytes(landscape, recorder):
    value = {"name": "Ada", "amount": 12.5, "tags": ["a", "b"]}
    digest = _store(recorder, value)
    assert digest == sha256_hex(canonical_json(value))
    assert load_payload(landscape, digest) == canonical_json(value)
    assert load_json_payload(landscape, digest) == value
    with landscape.engine.connect() as conn:
        assert load_payload(conn, digest) == canonical_json(value)


def test_load_payload_detects_one_corrupted_byte(landscape, recorder):
    digest = _store(recorder, {"name": "Ada", "amount": 12.5})
    with landscape.engine.begin() as conn:
        data = bytearray(conn.execute(select(payloads.c.data)
                                      .where(payloads.c.content_hash == digest)).scalar_one())
        data[3] ^= 0x01
        conn.execute(update(payloads).where(payloads.c.content_hash == digest)
                     .values(data=bytes(data)))
    with pytest.raises(AuditIntegrityError) as err:
        load_payload(landscape, digest)
    assert err.value.code is PAYLOAD_CORRUPT
    assert err.value.details["actual_hash"] == sha256_hex(bytes(data))
    with pytest.raises(AuditIntegrityError) as err_json:
        load_json_payload(landscape, digest)
    assert err_json.value.code is PAYLOAD_CORRUPT


def test_load_payload_detects_a_wrong_recorded_size(landscape, recorder):
    digest = _store(recorder, ["x"])
    with landscape.engine.begin() as conn:
        conn.execute(update(payloads).where(payloads.c.content_hash == digest)
                     .values(size_bytes=payloads.c.size_bytes + 1))
    with pytest.raises(AuditIntegrityError) as err:
        load_payload(landscape, digest)
    assert err.value.code is PAYLOAD_CORRUPT and err.value.details["reason"] == "size_mismatch"


def test_load_payload_of_a_missing_hash_is_an_integrity_error(landscape, recorder):
    _store(recorder, {"present": True})
    missing = sha256_hex(b"never stored")
    with pytest.raises(AuditIntegrityError) as err:
        load_payload(landscape, missing)
    assert err.value.code is PAYLOAD_CORRUPT and err.value.details["reason"] == "missing"


def test_list_runs_counts_the_shared_synthetic_run(landscape, recorder):
    synthetic = record_synthetic_run(recorder, rows=10)
    (summary,) = list_runs(landscape)
    assert summary.run.run_id == synthetic.run_id
    assert summary.outcome_counts == dict(
        Counter(o.value for o in synthetic.terminal_outcomes.values()))
    assert summary.token_count == len(synthetic.token_ids)
    assert summary.open_states == 0

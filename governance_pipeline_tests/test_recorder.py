"""The Recorder on both backends: one transaction per unit, validation before SQL, the ledger entry.

Every assertion about what was (or was not) written reads the real tables back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from governance_pipeline.contracts.enums import (
    CallStatus,
    Determinism,
    NodeStateStatus,
    NodeType,
    Outcome,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.hashing import canonical_json, sha256_hex
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts import records as record_module
from governance_pipeline.contracts.records import (
    Call,
    Node,
    NodeState,
    Payload,
    PolicySnapshotRecord,
    Run,
    SourceRow,
    Token,
    TokenOutcome,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape import bulk
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork, _layout
from governance_pipeline.landscape.schema import (
    LEDGERED,
    calls,
    ledger_entries,
    ledger_seals,
    metadata,
    node_states,
    payloads,
    rows,
    runs,
    token_outcomes,
    token_parents,
    tokens,
)
from governance_pipeline.landscape.store import Landscape

NODES = ("src", "xform", "out")
ERROR_HASH = "e" * 64


# --- helpers ----------------------------------------------------------------------------------
def count(landscape: Landscape, table: Any, *where: Any) -> int:
    with landscape.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def entries(landscape: Landscape, scope: str) -> int:
    return count(landscape, ledger_entries, ledger_entries.c.scope == scope)


def start_run(recorder: Recorder) -> str:
    run = recorder.begin_run(pipeline_name="p", tenant_id="t", config={"nodes": list(NODES)})
    with recorder.unit(run.run_id) as uow:
        for pos, node_id in enumerate(NODES):
            uow.add(Node(run.run_id, node_id, NodeType.TRANSFORM, "builtin", "1",
                         Determinism.DETERMINISTIC, sha256_hex(b"{}"), "{}", pos, uow.now))
    return run.run_id


def add_row(uow: UnitOfWork, run_id: str, index: int) -> Token:
    data_hash = uow.payload({"index": index, "name": f"row {index}"})
    row = SourceRow(new_id("row_"), run_id, "src", index, data_hash, uow.now)
    token = Token(new_id("tok_"), run_id, row.row_id, None, None, None, None, uow.now)
    uow.add(row)
    uow.add(token)
    return token


def outcome(run_id: str, token_id: str, kind: Outcome, now: str, **given: Any) -> TokenOutcome:
    """An outcome of ``kind`` with exactly its required fields set (unless overridden)."""
    fields: dict[str, Any] = {name: None for name in (
        "sink_name", "batch_id", "fork_group_id", "join_group_id", "expand_group_id",
        "error_hash", "context_json")}
    for name in kind.required_fields:
        fields[name] = ERROR_HASH if name == "error_hash" else f"{name}-1"
    fields.update(given)
    return TokenOutcome(new_id("out_"), run_id, token_id, kind, kind.is_terminal,
                        recorded_at=now, **fields)


def completed_state(run_id: str, token_id: str, node_id: str, step: int, now: str) -> NodeState:
    return NodeState(new_id("st_"), run_id, token_id, node_id, step, 0, NodeStateStatus.COMPLETED,
                     "a" * 64, "b" * 64, None, None, None, 1.5, None, now, now)


@contextmanager
def no_sql(landscape: Landscape) -> Iterator[list[str]]:
    """Collects every statement sent to the database inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(landscape.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(landscape.engine, "before_cursor_execute", record)


def run_table_counts(landscape: Landscape, run_id: str) -> dict[str, int]:
    return {t.name: count(landscape, t, t.c.run_id == run_id)
            for t in (rows, tokens, token_parents, node_states, token_outcomes)}


# --- one unit, one transaction ----------------------------------------------------------------
def test_unit_writes_all_its_records_and_one_ledger_entry(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before = entries(ls, run_id)
    with recorder.unit(run_id) as uow:
        token = add_row(uow, run_id, 0)
        for step, node_id in enumerate(NODES):
            uow.add(completed_state(run_id, token.token_id, node_id, step, uow.now))
        uow.add(outcome(run_id, token.token_id, Outcome.COMPLETED, uow.now))
    assert run_table_counts(ls, run_id) == {"rows": 1, "tokens": 1, "token_parents": 0,
                                            "node_states": 3, "token_outcomes": 1}
    assert count(ls, payloads) == 1
    assert entries(ls, run_id) == before + 1


def test_exception_inside_a_unit_writes_nothing(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before = entries(ls, run_id)
    with pytest.raises(RuntimeError, match="engine crashed"):
        with recorder.unit(run_id) as uow:
            token = add_row(uow, run_id, 0)
            uow.add(completed_state(run_id, token.token_id, "src", 0, uow.now))
            uow.add(outcome(run_id, token.token_id, Outcome.COMPLETED, uow.now))
            raise RuntimeError("engine crashed")
    assert run_table_counts(ls, run_id) == dict.fromkeys(
        ("rows", "tokens", "token_parents", "node_states", "token_outcomes"), 0)
    assert count(ls, payloads) == 0
    assert entries(ls, run_id) == before


def test_unit_refused_by_the_database_leaves_no_partial_records_and_no_entry(
        recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        done = add_row(uow, run_id, 0)
        uow.add(outcome(run_id, done.token_id, Outcome.COMPLETED, uow.now))
    before_entries = entries(ls, run_id)
    before = run_table_counts(ls, run_id)

    # The second terminal outcome passes the unit's own check (the first is in another unit);
    # the partial unique index refuses it, and with it the whole unit.
    with pytest.raises(AuditIntegrityError) as info:
        with recorder.unit(run_id) as uow:
            fresh = add_row(uow, run_id, 1)
            uow.add(completed_state(run_id, fresh.token_id, "src", 0, uow.now))
            uow.add(outcome(run_id, done.token_id, Outcome.FAILED, uow.now))
    assert info.value.code.code == "GP-AUDIT-001"
    assert run_table_counts(ls, run_id) == before
    assert count(ls, tokens, tokens.c.token_id == fresh.token_id) == 0
    assert count(ls, payloads) == 1  # the new row's payload went with the transaction
    assert entries(ls, run_id) == before_entries
    assert count(ls, token_outcomes, token_outcomes.c.token_id == done.token_id) == 1


def test_foreign_key_violation_is_refused_whole(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before_entries = entries(ls, run_id)
    with pytest.raises(AuditIntegrityError):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, 0)
            uow.add(completed_state(run_id, "tok_does_not_exist", "src", 0, uow.now))
    assert run_table_counts(ls, run_id)["rows"] == 0
    assert entries(ls, run_id) == before_entries


# --- validation before any SQL ----------------------------------------------------------------
@pytest.mark.parametrize("parents", [("st_1", "op_1"), (None, None)], ids=["both", "neither"])
def test_call_needs_exactly_one_parent_before_any_sql(
        recorder: Recorder, parents: tuple[str | None, str | None]) -> None:
    run_id = start_run(recorder)
    with no_sql(recorder.landscape) as statements:
        with pytest.raises(AuditIntegrityError, match="XOR"):
            with recorder.unit(run_id) as uow:
                uow.add(Call(new_id("call_"), run_id, parents[0], parents[1], 0, "http",
                             CallStatus.SUCCESS, "r" * 64, "s" * 64, None, 3.0, None, uow.now))
    assert statements == []


def test_call_with_one_parent_is_accepted(recorder: Recorder) -> None:
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        token = add_row(uow, run_id, 0)
        state = completed_state(run_id, token.token_id, "xform", 1, uow.now)
        uow.add(state)
        uow.add(Call(new_id("call_"), run_id, state.state_id, None, 0, "http",
                     CallStatus.SUCCESS, "r" * 64, "s" * 64, None, 3.0, None, uow.now))
    assert count(recorder.landscape, calls, calls.c.run_id == run_id) == 1


@pytest.mark.parametrize("kind", [o for o in Outcome], ids=str)
def test_outcome_missing_a_required_field_is_refused_before_any_sql(recorder: Recorder,
                                                                    kind: Outcome) -> None:
    run_id = start_run(recorder)
    with no_sql(recorder.landscape) as statements:
        for name in kind.required_fields:
            with pytest.raises(AuditIntegrityError, match=f"requires {name}"):
                outcome(run_id, "tok_x", kind, "2026-01-01T00:00:00.000000Z", **{name: None})
    assert statements == []
    assert kind.required_fields  # every outcome has at least one required field to omit


def test_outcome_whose_terminal_flag_contradicts_its_kind_is_refused() -> None:
    with pytest.raises(AuditIntegrityError, match="contradicts"):
        TokenOutcome("out_1", "run_1", "tok_1", Outcome.COMPLETED, False, "out", None, None,
                     None, None, None, None, "2026-01-01T00:00:00.000000Z")


def test_two_terminal_outcomes_for_one_token_in_one_unit_are_refused(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before_entries = entries(ls, run_id)
    with no_sql(ls) as statements:
        with pytest.raises(AuditIntegrityError, match="second terminal outcome"):
            with recorder.unit(run_id) as uow:
                token = add_row(uow, run_id, 0)
                uow.add(outcome(run_id, token.token_id, Outcome.COMPLETED, uow.now))
                uow.add(outcome(run_id, token.token_id, Outcome.QUARANTINED, uow.now))
    assert statements == []
    assert run_table_counts(ls, run_id)["token_outcomes"] == 0
    assert entries(ls, run_id) == before_entries


def _fields(record: Any) -> tuple[Any, ...]:
    return tuple(getattr(record, f.name) for f in dataclasses.fields(record))


def test_add_row_stores_what_add_stores(recorder: Recorder) -> None:
    """Engine-built records as rows: the same rows, the same manifest as through ``add``."""
    run_id = start_run(recorder)
    via_add, via_rows = UnitOfWork(run_id, "t"), UnitOfWork(run_id, "t")
    token = add_row(via_add, run_id, 0)
    done = outcome(run_id, token.token_id, Outcome.COMPLETED, "t")
    via_add.add(done)
    for record in via_add.pending_rows().get("rows", []):
        via_rows.add_row(SourceRow, record)
    via_rows.add_row(Token, _fields(token))
    via_rows.add_row(TokenOutcome, _fields(done))
    assert via_rows.pending_rows() == via_add.pending_rows()
    assert via_rows._insert_manifest() == via_add._insert_manifest()


def test_add_row_refuses_another_scope_and_a_second_terminal_outcome(recorder: Recorder) -> None:
    run_id = start_run(recorder)
    uow = UnitOfWork(run_id, "t")
    with pytest.raises(AuditIntegrityError, match="belongs to scope"):
        uow.add_row(Token, ("tok_1", "run_other", "row_1", None, None, None, None, "t"))
    first = outcome(run_id, "tok_1", Outcome.COMPLETED, "t")
    uow.add_row(TokenOutcome, _fields(first))
    with pytest.raises(AuditIntegrityError, match="second terminal outcome"):
        uow.add_row(TokenOutcome, _fields(outcome(run_id, "tok_1", Outcome.FAILED, "t")))


def test_a_row_breaking_a_check_is_refused_by_the_database(recorder: Recorder) -> None:
    """add_row skips __post_init__: the table's CHECK refuses the same outcome at commit."""
    ls = recorder.landscape
    run_id = start_run(recorder)
    before_entries = entries(ls, run_id)
    with pytest.raises(AuditIntegrityError, match="refused the audit transaction"):
        with recorder.unit(run_id) as uow:
            token = add_row(uow, run_id, 0)
            uow.add_row(TokenOutcome, (new_id("out_"), run_id, token.token_id, Outcome.COMPLETED,
                                       True, None, None, None, None, None, None, None, uow.now))
    assert run_table_counts(ls, run_id)["token_outcomes"] == 0
    assert entries(ls, run_id) == before_entries


def test_buffered_then_terminal_in_one_unit_is_accepted(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        token = add_row(uow, run_id, 0)
        uow.add(outcome(run_id, token.token_id, Outcome.BUFFERED, uow.now))
        uow.add(outcome(run_id, token.token_id, Outcome.CONSUMED_IN_BATCH, uow.now))
    assert count(ls, token_outcomes, token_outcomes.c.token_id == token.token_id) == 2
    assert count(ls, token_outcomes, token_outcomes.c.token_id == token.token_id,
                 token_outcomes.c.is_terminal == 1) == 1


def test_record_of_another_scope_is_refused(recorder: Recorder) -> None:
    run_a, run_b = start_run(recorder), start_run(recorder)
    with pytest.raises(AuditIntegrityError, match="scope"):
        with recorder.unit(run_a) as uow:
            add_row(uow, run_b, 0)
    snapshot = PolicySnapshotRecord("ps_1", "t", "c" * 64, "v1", "[]", 0,
                                    "2026-01-01T00:00:00.000000Z")
    with pytest.raises(AuditIntegrityError, match="scope"):
        with recorder.unit(run_a) as uow:
            uow.add(snapshot)
    before = entries(recorder.landscape, "global")  # the two runs' opening anchors
    with recorder.unit("global") as uow:
        uow.add(snapshot)
    assert before == 2 and entries(recorder.landscape, "global") == before + 1


def test_payload_records_cannot_bypass_the_payload_store(recorder: Recorder) -> None:
    run_id = start_run(recorder)
    with pytest.raises(TypeError, match="payload"):
        with recorder.unit(run_id) as uow:
            uow.add(Payload("a" * 64, 2, b"{}", uow.now))


# --- fork ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("branches", [["a", "b"], ["a", "b", "c", "d"]])
def test_fork_creates_children_links_and_forked_outcome_atomically(recorder: Recorder,
                                                                   branches: list[str]) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        parent = add_row(uow, run_id, 0)
    with recorder.unit(run_id) as uow:
        children = uow.fork(parent, branches)
    n = len(branches)
    assert len(children) == n
    with ls.engine.connect() as conn:
        kids = conn.execute(select(tokens.c.token_id, tokens.c.branch_name, tokens.c.fork_group_id)
                            .where(tokens.c.row_id == parent.row_id,
                                   tokens.c.token_id != parent.token_id)).all()
        links = conn.execute(select(token_parents.c.token_id, token_parents.c.ordinal)
                             .where(token_parents.c.parent_token_id == parent.token_id)).all()
        forked = conn.execute(select(token_outcomes).where(
            token_outcomes.c.token_id == parent.token_id)).mappings().all()
    assert sorted(k.branch_name for k in kids) == sorted(branches)
    assert {k.token_id for k in kids} == {c.token_id for c in children}
    assert sorted(link.ordinal for link in links) == list(range(n))
    assert len(forked) == 1 and forked[0]["outcome"] == "forked" and forked[0]["is_terminal"] == 1
    assert {k.fork_group_id for k in kids} == {forked[0]["fork_group_id"]}


def test_fork_of_an_already_terminal_token_leaves_no_children(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        parent = add_row(uow, run_id, 0)
        uow.add(outcome(run_id, parent.token_id, Outcome.COMPLETED, uow.now))
    with pytest.raises(AuditIntegrityError):
        with recorder.unit(run_id) as uow:
            uow.fork(parent, ["a", "b"])
    assert count(ls, tokens, tokens.c.run_id == run_id) == 1
    assert count(ls, token_parents, token_parents.c.run_id == run_id) == 0


def test_fork_without_branches_is_refused(recorder: Recorder) -> None:
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        parent = add_row(uow, run_id, 0)
    with pytest.raises(AuditIntegrityError, match="without branches"):
        with recorder.unit(run_id) as uow:
            uow.fork(parent, [])


# --- payloads -----------------------------------------------------------------------------------
def test_payloads_are_stored_once_per_content(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        h1 = uow.payload({"a": 1, "b": [1, 2]})
        h2 = uow.payload({"b": [1, 2], "a": 1})
        h3 = uow.payload({"a": 2})
        raw = uow.payload_bytes(b"not json,at all\n")
        assert uow.payload_bytes(b"not json,at all\n") == raw
    with recorder.unit(run_id) as uow:
        assert uow.payload({"a": 1, "b": [1, 2]}) == h1  # already stored by an earlier unit
    assert h1 == h2 != h3
    assert h1 == sha256_hex(canonical_json({"a": 1, "b": [1, 2]}))
    assert raw == sha256_hex(b"not json,at all\n")
    with ls.engine.connect() as conn:
        stored = {r.content_hash: bytes(r.data) for r in conn.execute(select(payloads))}
    assert set(stored) == {h1, h3, raw}
    assert all(sha256_hex(data) == key for key, data in stored.items())


def test_generic_core_inserts_store_the_same_rows(recorder: Recorder) -> None:
    """The path for dialects without a bulk writer of their own, run here on ours."""
    ls = recorder.landscape
    run_id = start_run(recorder)
    uow = UnitOfWork(run_id, recorder.now())
    token = add_row(uow, run_id, 0)
    uow.add(outcome(run_id, token.token_id, Outcome.COMPLETED, uow.now))
    payload_rows = [(h, len(d), d, uow.now) for h, d in uow.pending_payloads().items()]
    with ls.engine.begin() as conn:
        bulk.insert_payloads_core(conn, payload_rows)
        bulk.insert_payloads_core(conn, payload_rows)  # already stored: skipped
        for table in metadata.sorted_tables:
            bulk.insert_rows_core(conn, table, uow.pending_rows().get(table.name, []))
    with ls.engine.connect() as conn:
        for name, expected in uow.pending_rows().items():
            table = metadata.tables[name]
            stored = [tuple(r) for r in conn.execute(select(table).where(table.c.run_id == run_id))]
            assert stored == expected
        assert [tuple(r[:2]) + (bytes(r[2]), r[3]) for r in conn.execute(select(payloads))] \
            == payload_rows


# --- the ledger ---------------------------------------------------------------------------------
def test_one_ledger_entry_per_committed_unit_with_records(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)  # begin_run + the nodes unit
    assert entries(ls, run_id) == 2
    with recorder.unit(run_id):
        pass  # empty: nothing to commit to
    with recorder.unit(run_id) as uow:
        uow.payload({"only": "a payload"})  # content-addressed, not ledgered
    assert entries(ls, run_id) == 2
    for i in range(3):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, i)
    assert entries(ls, run_id) == 5
    with pytest.raises(AuditIntegrityError):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, 0)  # duplicate (run_id, row_index)
    assert entries(ls, run_id) == 5


def test_manifest_commits_to_exactly_the_rows_read_back(recorder: Recorder) -> None:
    """What verify relies on: record_hash of each stored row equals its manifest hash."""
    ls = recorder.landscape
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        token = add_row(uow, run_id, 0)
        uow.add(NodeState(new_id("st_"), run_id, token.token_id, "src", 0, 0,
                          NodeStateStatus.COMPLETED, "a" * 64, "b" * 64, '{"é": "ü"}',
                          'tab\there\nnew line \\N back\\slash \r end',
                          None, 2, None, uow.now, uow.now))  # an int in a float column
        uow.add(outcome(run_id, token.token_id, Outcome.COMPLETED, uow.now,
                        context_json='{"note": "Zahlung für 🧾"}'))
    recorder.finish_run(run_id, RunStatus.COMPLETED, TerminationReason.COMPLETED)

    latest: dict[tuple[str, str], str] = {}
    with ls.engine.connect() as conn:
        chain = conn.execute(select(ledger_entries).where(ledger_entries.c.scope == run_id)
                             .order_by(ledger_entries.c.seq)).mappings().all()
        prev = ledger.GENESIS_HASH
        for entry in chain:
            items, digest = ledger.decode_manifest(bytes(entry["manifest"]))
            assert digest == entry["records_digest"] and len(items) == entry["record_count"]
            assert entry["prev_hash"] == prev
            assert entry["entry_hash"] == ledger.entry_hash(
                scope=run_id, seq=entry["seq"], prev_hash=prev, records_digest=digest,
                record_count=len(items), created_at=entry["created_at"])
            prev = entry["entry_hash"]
            latest.update({(table, key): h for table, key, h in items})
        stored: dict[tuple[str, str], str] = {}
        for name, spec in LEDGERED.items():
            if spec.scope_column is None:
                continue
            for row in conn.execute(select(spec.table).where(
                    spec.table.c[spec.scope_column] == run_id)).mappings():
                stored[(name, ledger.record_key(spec, row))] = ledger.record_hash(spec, row)
        seal = conn.execute(select(ledger_seals).where(
            ledger_seals.c.scope == run_id)).mappings().one()
    assert stored == latest
    assert {t for t, _ in stored} == {"runs", "nodes", "rows", "tokens", "node_states",
                                      "token_outcomes"}
    assert seal["head_hash"] == prev
    assert ls.signer.public.verify(seal["signature"], ledger.seal_message(
        scope=run_id, seq=seal["seq"], head_hash=prev, key_id=seal["key_id"],
        sealed_at=seal["sealed_at"]))


def test_update_is_ledgered_with_the_new_content(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    recorder.finish_run(run_id, RunStatus.FAILED, TerminationReason.SYSTEM_FAILURE)
    with ls.engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().one()
        last = conn.execute(select(ledger_entries.c.manifest)
                            .where(ledger_entries.c.scope == run_id)
                            .order_by(ledger_entries.c.seq.desc()).limit(1)).scalar_one()
    assert Run.from_row(row).status is RunStatus.FAILED
    items, _ = ledger.decode_manifest(bytes(last))
    assert items == [("runs", run_id, ledger.record_hash(LEDGERED["runs"], row))]


def test_update_of_a_missing_record_raises_and_keeps_nothing(recorder: Recorder) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before_entries = entries(ls, run_id)
    with pytest.raises(AuditIntegrityError, match="matched 0 records"):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, 0)
            uow.update("node_states", {"state_id": "st_missing"},
                       {"status": NodeStateStatus.FAILED})
    assert run_table_counts(ls, run_id)["rows"] == 0
    assert entries(ls, run_id) == before_entries


def test_update_of_an_unledgered_table_is_refused(recorder: Recorder) -> None:
    run_id = start_run(recorder)
    with pytest.raises(ValueError, match="not a ledgered table"):
        with recorder.unit(run_id) as uow:
            uow.update("payloads", {"content_hash": "x"}, {"size_bytes": 0})


def test_heartbeat_moves_liveness_without_a_ledger_entry(recorder: Recorder, clock: Any) -> None:
    ls = recorder.landscape
    run_id = start_run(recorder)
    before_entries = entries(ls, run_id)
    clock.advance(90)
    recorder.heartbeat(run_id)
    with ls.engine.connect() as conn:
        beat = conn.execute(select(runs.c.heartbeat_at).where(runs.c.run_id == run_id)).scalar_one()
    assert beat == recorder.now()
    assert entries(ls, run_id) == before_entries


def test_every_ledgered_record_class_maps_onto_its_table_columns() -> None:
    classes = [cls for cls in vars(record_module).values()
               if isinstance(cls, type) and issubclass(cls, record_module.AuditRecord)
               and cls.__dict__.get("TABLE") in LEDGERED]
    assert len(classes) >= 17
    for cls in classes:
        layout = _layout(cls)
        table = metadata.tables[cls.TABLE]
        assert layout.columns == tuple(c.name for c in table.columns)
        assert all(bulk.pg_type(c) for c in table.columns)  # every column has a binary COPY type


# --- property: one terminal outcome per token ---------------------------------------------------
TERMINAL = [o for o in Outcome if o.is_terminal]


@st.composite
def outcome_plans(draw: st.DrawFn) -> tuple[int, list[list[tuple[int, Outcome, bool]]]]:
    """Tokens, each with a valid outcome sequence ([buffered]? [terminal]?) plus invalid extra
    terminal attempts after its terminal; interleaved in per-token order, cut into units.
    Steps are (token, outcome, valid)."""
    n = draw(st.integers(1, 5))
    queues: list[list[tuple[int, Outcome, bool]]] = []
    for t in range(n):
        buffered = draw(st.booleans())
        terminal = draw(st.none() | st.sampled_from(TERMINAL)) if buffered else \
            draw(st.sampled_from(TERMINAL))
        steps = [(t, Outcome.BUFFERED, True)] if buffered else []
        if terminal is not None:
            steps.append((t, terminal, True))
            steps += [(t, extra, False) for extra in draw(st.lists(st.sampled_from(TERMINAL),
                                                                   max_size=2))]
        queues.append(steps)
    order: list[tuple[int, Outcome, bool]] = []
    while any(queues):
        live = [q for q in queues if q]
        order.append(draw(st.sampled_from(live)).pop(0))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(order)), max_size=4))))
    bounds = [0, *cuts, len(order)]
    units = [order[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    return n, units


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=outcome_plans())
def test_every_token_ends_with_at_most_one_terminal_outcome(recorder: Recorder,
                                                             plan: tuple[int, list]) -> None:
    ls = recorder.landscape
    n, units = plan
    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:
        toks = [add_row(uow, run_id, i).token_id for i in range(n)]
    committed_terminal: set[int] = set()
    expected: Counter[tuple[int, str]] = Counter()

    def commit(steps: list[tuple[int, Outcome, bool]]) -> tuple[bool, list]:
        """Add the steps to one unit; returns (refused by the database, steps that were added)."""
        uow = UnitOfWork(run_id, recorder.now())
        in_unit: set[int] = set()
        added = []
        for t, kind, valid in steps:
            record = outcome(run_id, toks[t], kind, uow.now)
            if kind.is_terminal and t in in_unit:
                assert not valid
                with pytest.raises(AuditIntegrityError, match="second terminal"):
                    uow.add(record)
                continue
            uow.add(record)
            added.append((t, kind, valid))
            if kind.is_terminal:
                in_unit.add(t)
        try:
            recorder.commit(uow)
        except AuditIntegrityError:
            return True, added
        return False, added

    for steps in units:
        before = count(ls, token_outcomes, token_outcomes.c.run_id == run_id)
        refused, added = commit(steps)
        invalid_added = [s for s in added if not s[2]]
        # An invalid attempt that got past the unit's own check meets a terminal already in the DB.
        assert refused == bool(invalid_added)
        if refused:
            assert all(s[0] in committed_terminal for s in invalid_added)
            assert count(ls, token_outcomes, token_outcomes.c.run_id == run_id) == before
            retry_refused, added = commit([s for s in steps if s[2]])
            assert not retry_refused
        for t, kind, _ in added:
            expected[(t, kind.value)] += 1
            if kind.is_terminal:
                committed_terminal.add(t)

    with ls.engine.connect() as conn:
        stored = Counter((toks.index(r.token_id), r.outcome) for r in conn.execute(
            select(token_outcomes.c.token_id, token_outcomes.c.outcome)
            .where(token_outcomes.c.run_id == run_id)))
    assert stored == expected
    for t in range(n):
        mine = {k: v for (tok, k), v in stored.items() if tok == t}
        terminal = sum(v for k, v in mine.items() if Outcome(k).is_terminal)
        assert terminal <= 1
        assert mine.get("buffered", 0) <= 1
        if "buffered" not in mine:
            assert terminal == 1


# --- the recorder's tuple hashing is the ledger's record_hash ---------------------------------
cell_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    cell_text, cell_text, st.none() | cell_text, st.integers(0, 2**40),
    st.none() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False),
    st.none() | cell_text | st.binary(max_size=4)), min_size=1, max_size=6))
def test_rows_manifest_equals_record_key_and_record_hash(cells: list[tuple]) -> None:
    """Node states (a float column), nodes (a composite key) and runs (unhashed columns)."""
    for name in ("node_states", "nodes", "runs"):
        spec = LEDGERED[name]
        columns = tuple(c.name for c in spec.table.columns)
        rows = []
        for text_a, text_b, maybe_text, integer, number, odd in cells:
            values: dict[str, Any] = {}
            for col in spec.table.columns:
                kind = col.type.python_type
                if col.name in spec.float_columns:
                    values[col.name] = number
                elif col.name == "context_after":
                    values[col.name] = odd  # may be bytes: record_hash writes those as hex
                elif kind is int:
                    values[col.name] = integer
                elif col.nullable:
                    values[col.name] = maybe_text
                else:
                    values[col.name] = f"{col.name}:{text_a}" if col.primary_key else text_b
            rows.append(tuple(values[c] for c in columns))
        expected = [(name, ledger.record_key(spec, dict(zip(columns, r))),
                     ledger.record_hash(spec, dict(zip(columns, r)))) for r in rows]
        assert ledger.items_of([ledger.rows_manifest(spec, columns)(rows)]) == expected


# --- compare-and-set: update(expect=...) and guard(...) ---------------------------------------
def test_a_guarded_update_applies_only_while_the_record_holds_what_was_read(
        recorder: Recorder, landscape: Landscape) -> None:
    from governance_pipeline.contracts.enums import RunStatus as Status
    from governance_pipeline.contracts.errors import StaleStateError

    run_id = start_run(recorder)
    before = entries(landscape, run_id)
    with recorder.unit(run_id) as uow:
        uow.update("runs", {"run_id": run_id}, {"status": Status.FAILED, "ended_at": uow.now},
                   expect={"status": Status.RUNNING})
    assert entries(landscape, run_id) == before + 1
    # A second process that read "running" earlier loses: nothing of its unit is kept.
    with pytest.raises(StaleStateError):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, 7)
            uow.update("runs", {"run_id": run_id}, {"status": Status.INTERRUPTED},
                       expect={"status": Status.RUNNING})
    with landscape.engine.connect() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.run_id == run_id)).scalar() \
            == "failed"
    assert count(landscape, rows, rows.c.run_id == run_id) == 0
    assert entries(landscape, run_id) == before + 1


def test_a_guard_with_not_refuses_the_excluded_state_and_accepts_others(
        recorder: Recorder, landscape: Landscape) -> None:
    from governance_pipeline.contracts.enums import RunStatus as Status
    from governance_pipeline.contracts.errors import StaleStateError
    from governance_pipeline.landscape.recorder import Not

    run_id = start_run(recorder)
    with recorder.unit(run_id) as uow:  # running is not failed_policy: accepted
        add_row(uow, run_id, 0)
        uow.guard("runs", {"run_id": run_id}, {"status": Not(Status.FAILED_POLICY)})
    with recorder.unit(run_id) as uow:
        uow.update("runs", {"run_id": run_id},
                   {"status": Status.FAILED_POLICY, "ended_at": uow.now,
                    "termination_reason": "policy_block"})
    with pytest.raises(StaleStateError):
        with recorder.unit(run_id) as uow:
            add_row(uow, run_id, 1)
            uow.guard("runs", {"run_id": run_id}, {"status": Not(Status.FAILED_POLICY)})
    assert count(landscape, rows, rows.c.run_id == run_id) == 1

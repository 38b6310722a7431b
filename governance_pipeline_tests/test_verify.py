"""``verify`` on both backends: a clean run verifies clean; every kind of tampering, done with a
plain SQL client as an attacker would, is detected and the finding names the altered record."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.errors import Finding, NotFoundError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED, code_identities
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import VerifyReport, verify
from governance_pipeline_tests import tamper
from governance_pipeline_tests.synthetic import SyntheticRun, record_synthetic_run
from governance_pipeline_tests.tamper import RawDB, raw_connection


@pytest.fixture
def run(recorder: Recorder) -> SyntheticRun:
    return record_synthetic_run(recorder)


@pytest.fixture
def other(recorder: Recorder, run: SyntheticRun) -> SyntheticRun:
    """A second, independent run in the same database."""
    return record_synthetic_run(recorder, rows=7, pipeline_name="bystander")


def entry_key(scope: str, seq: int) -> str:
    return json.dumps([scope, seq], separators=(",", ":"))


def seal_ids(db: RawDB, scope: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT seal_id FROM ledger_seals WHERE scope = ? "
                                     "ORDER BY seq", (scope,))]


def has(report: VerifyReport, check: str, table: str, key: str, message: str) -> bool:
    return any(f.check == check and f.table == table and f.key == key
               and f.message.startswith(message) for f in report.findings)


def scoped_record_count(landscape: Landscape, scope: str) -> int:
    total = 0
    with landscape.engine.connect() as conn:
        for spec in LEDGERED.values():
            if spec.scope_column is not None:
                column = spec.table.c[spec.scope_column]
                total += conn.execute(select(func.count()).where(column == scope)).scalar_one()
    return total


# --- must pass ----------------------------------------------------------------------------------
def test_untouched_run_verifies_clean(landscape: Landscape, run: SyntheticRun) -> None:
    report = verify(landscape, run.run_id)
    assert report.ok, report.findings
    assert report.scopes == [run.run_id]
    assert report.entries_checked == run.ledger_entries
    assert report.records_checked == scoped_record_count(landscape, run.run_id) > 100
    assert report.payloads_checked == len(set(run.payload_hashes))
    doc = report.as_dict()
    assert doc["ok"] is True and doc["findings"] == []
    json.dumps(doc)


def test_whole_database_verifies_clean(landscape: Landscape, run: SyntheticRun,
                                       other: SyntheticRun) -> None:
    report = verify(landscape)
    assert report.ok, report.findings
    assert report.scopes == sorted([run.run_id, other.run_id]) + [GLOBAL_SCOPE]
    # Global: the policy snapshot both runs share (stored once), each run's snapshot event, and
    # each run's two anchors (opened, sealed at finish).
    assert report.entries_checked == run.ledger_entries + other.ledger_entries + 3 + 4
    assert report.records_checked > scoped_record_count(landscape, run.run_id)


def test_running_run_needs_no_seal_and_heartbeat_is_not_an_audit_fact(
        landscape: Landscape, recorder: Recorder) -> None:
    started = recorder.begin_run(pipeline_name="p", tenant_id="t", config={})
    recorder.heartbeat(started.run_id)
    assert verify(landscape, started.run_id).ok
    recorder.finish_run(started.run_id, RunStatus.FAILED, TerminationReason.SYSTEM_FAILURE)
    recorder.heartbeat(started.run_id)
    assert verify(landscape, started.run_id).ok


def test_unknown_run_is_not_found(landscape: Landscape, run: SyntheticRun) -> None:
    with pytest.raises(NotFoundError):
        verify(landscape, "run_does_not_exist")


# --- the tamper matrix ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    check: str
    table: str
    key: str
    message: str


Tamper = Callable[[RawDB, SyntheticRun], Expect]


def edit_node_state(db: RawDB, run: SyntheticRun) -> Expect:
    state_id = run.state_ids[-1]
    db.execute("UPDATE node_states SET duration_ms = 0.5 WHERE state_id = ?", (state_id,))
    return Expect("record", "node_states", state_id, "modified")


def edit_updated_node_state(db: RawDB, run: SyntheticRun) -> Expect:
    # Restoring the state's first (open) version is still an edit: the latest version wins.
    db.execute("UPDATE node_states SET status = 'open', output_hash = NULL, duration_ms = NULL, "
               "completed_at = NULL WHERE state_id = ?", (run.updated_state_id,))
    return Expect("record", "node_states", run.updated_state_id, "modified")


def edit_token_outcome(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("UPDATE token_outcomes SET sink_name = 'review' WHERE outcome_id = ?",
               (run.completed_outcome_id,))
    return Expect("record", "token_outcomes", run.completed_outcome_id, "modified")


def edit_run(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (run.run_id,))
    return Expect("record", "runs", run.run_id, "modified")


def delete_routing_event(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("DELETE FROM routing_events WHERE event_id = ?", (run.routing_event_ids[1],))
    return Expect("record", "routing_events", run.routing_event_ids[1], "deleted")


def delete_source_row(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("DELETE FROM rows WHERE row_id = ?", (run.row_ids[2],))
    return Expect("record", "rows", run.row_ids[2], "deleted")


def delete_batch_member(db: RawDB, run: SyntheticRun) -> Expect:
    token = run.batch_member_token_ids[0]
    db.execute("DELETE FROM batch_members WHERE batch_id = ? AND token_id = ?",
               (run.batch_id, token))
    return Expect("record", "batch_members", json.dumps([run.batch_id, token],
                                                        separators=(",", ":")), "deleted")


def insert_node_state(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("INSERT INTO node_states (state_id, run_id, token_id, node_id, step_index, attempt,"
               " status, input_hash, output_hash, duration_ms, policy_snapshot_id, started_at,"
               " completed_at) SELECT 'st_forged', run_id, token_id, node_id, step_index, 1,"
               " status, input_hash, output_hash, duration_ms, policy_snapshot_id, started_at,"
               " completed_at FROM node_states WHERE state_id = ?", (run.state_ids[0],))
    return Expect("record", "node_states", "st_forged", "inserted")


def move_record_to_other_run(db: RawDB, run: SyntheticRun) -> Expect:
    other_run = db.scalar("SELECT run_id FROM runs WHERE run_id <> ? LIMIT 1", (run.run_id,))
    db.execute("UPDATE calls SET run_id = ? WHERE call_id = ?", (other_run, run.state_call_id))
    return Expect("record", "calls", run.state_call_id, "moved")


def reorder_entries(db: RawDB, run: SyntheticRun) -> Expect:
    for old, new in ((2, 1_000_000), (3, 2), (1_000_000, 3)):
        db.execute("UPDATE ledger_entries SET seq = ? WHERE scope = ? AND seq = ?",
                   (new, run.run_id, old))
    return Expect("chain", "ledger_entries", entry_key(run.run_id, 2), "")


def move_entry_to_other_scope(db: RawDB, run: SyntheticRun) -> Expect:
    other_run = db.scalar("SELECT run_id FROM runs WHERE run_id <> ? LIMIT 1", (run.run_id,))
    top = db.scalar("SELECT max(seq) FROM ledger_entries WHERE scope = ?", (other_run,))
    db.execute("UPDATE ledger_entries SET scope = ?, seq = ? WHERE scope = ? AND seq = 3",
               (other_run, top + 1, run.run_id))
    return Expect("chain", "ledger_entries", entry_key(run.run_id, 3), "gap: seq 3 missing")


def edit_manifest(db: RawDB, run: SyntheticRun) -> Expect:
    blob = db.scalar("SELECT manifest FROM ledger_entries WHERE scope = ? AND seq = 3",
                     (run.run_id,))
    items, _ = ledger.decode_manifest(bytes(blob))
    table, key, _ = items[0]
    items[0] = (table, key, "f" * 64)
    forged, _ = ledger.encode_manifest(items)
    db.execute("UPDATE ledger_entries SET manifest = ? WHERE scope = ? AND seq = 3",
               (forged, run.run_id))
    return Expect("chain", "ledger_entries", entry_key(run.run_id, 3), "manifest altered")


def truncate_manifest(db: RawDB, run: SyntheticRun) -> Expect:
    blob = bytes(db.scalar("SELECT manifest FROM ledger_entries WHERE scope = ? AND seq = 3",
                           (run.run_id,)))
    db.execute("UPDATE ledger_entries SET manifest = ? WHERE scope = ? AND seq = 3",
               (blob[:-7], run.run_id))
    return Expect("chain", "ledger_entries", entry_key(run.run_id, 3), "manifest unreadable")


def alter_manifest_bytes(db: RawDB, run: SyntheticRun) -> Expect:
    """A record count in the binary manifest raised: its digests no longer fill it."""
    blob = bytearray(db.scalar("SELECT manifest FROM ledger_entries WHERE scope = ? AND seq = 3",
                               (run.run_id,)))
    name_size = blob[6]
    blob[6 + 1 + name_size + 3] += 1  # low byte of the first section's u32 record count
    db.execute("UPDATE ledger_entries SET manifest = ? WHERE scope = ? AND seq = 3",
               (bytes(blob), run.run_id))
    return Expect("chain", "ledger_entries", entry_key(run.run_id, 3), "manifest unreadable")


def forge_signature(db: RawDB, run: SyntheticRun) -> Expect:
    (seal_id,) = seal_ids(db, run.run_id)
    db.execute("UPDATE ledger_seals SET signature = ? WHERE seal_id = ?",
               (secrets.token_bytes(64).hex(), seal_id))
    return Expect("seal", "ledger_seals", seal_id, "invalid signature")


def resign_claiming_own_key_id(db: RawDB, run: SyntheticRun) -> Expect:
    seal_id = tamper.reseal(db, run.run_id, Signer.generate())
    return Expect("seal", "ledger_seals", seal_id, "sealed by unknown key")


def resign_keeping_key_id(db: RawDB, run: SyntheticRun) -> Expect:
    (seal_id,) = seal_ids(db, run.run_id)
    key_id = db.scalar("SELECT key_id FROM ledger_seals WHERE seal_id = ?", (seal_id,))
    tamper.reseal(db, run.run_id, Signer.generate(), claim_key_id=key_id)
    return Expect("seal", "ledger_seals", seal_id, "invalid signature")


def truncate_chain(db: RawDB, run: SyntheticRun) -> Expect:
    (seal_id,) = seal_ids(db, run.run_id)
    db.execute("DELETE FROM ledger_entries WHERE scope = ? AND seq > ?",
               (run.run_id, run.ledger_entries - 2))
    return Expect("seal", "ledger_seals", seal_id, "chain truncated")


def delete_seal(db: RawDB, run: SyntheticRun) -> Expect:
    db.execute("DELETE FROM ledger_seals WHERE scope = ?", (run.run_id,))
    return Expect("seal", "ledger_entries", entry_key(run.run_id, run.ledger_entries),
                  "unsealed tail")


def append_after_seal(db: RawDB, run: SyntheticRun) -> Expect:
    # A forged record with a well-formed entry covering it: only the seal can tell.
    insert_node_state(db, run)
    row = db.row("node_states", "state_id = ?", ("st_forged",))
    item = ("node_states", "st_forged", ledger.record_hash(LEDGERED["node_states"], row))
    tamper.append_entry(db, run.run_id, [item], row["started_at"])
    return Expect("seal", "ledger_entries", entry_key(run.run_id, run.ledger_entries + 1),
                  "unsealed tail")


def corrupt_payload(db: RawDB, run: SyntheticRun) -> Expect:
    digest = run.payload_hashes[0]
    db.execute("UPDATE payloads SET data = ? WHERE content_hash = ?",
               (canonical_json({"id": 0, "amount": 1_000_000}), digest))
    return Expect("payload", "payloads", digest, "corrupt")


def corrupt_quarantined_payload(db: RawDB, run: SyntheticRun) -> Expect:
    digest = run.payload_hashes[-1]
    db.execute("UPDATE payloads SET data = ? WHERE content_hash = ?", (b"{}", digest))
    return Expect("payload", "payloads", digest, "corrupt")


def delete_payload(db: RawDB, run: SyntheticRun) -> Expect:
    digest = run.payload_hashes[1]
    db.execute("DELETE FROM payloads WHERE content_hash = ?", (digest,))
    return Expect("payload", "payloads", digest, "missing")


TAMPERS: list[Tamper] = [
    edit_node_state, edit_updated_node_state, edit_token_outcome, edit_run,
    delete_routing_event, delete_source_row, delete_batch_member, insert_node_state,
    move_record_to_other_run, reorder_entries, move_entry_to_other_scope, edit_manifest,
    truncate_manifest, alter_manifest_bytes,
    forge_signature, resign_claiming_own_key_id, resign_keeping_key_id, truncate_chain,
    delete_seal, append_after_seal, corrupt_payload, corrupt_quarantined_payload, delete_payload,
]


@pytest.mark.parametrize("attack", TAMPERS, ids=lambda f: f.__name__)
def test_tampering_is_detected(landscape: Landscape, db_url: str, run: SyntheticRun,
                               other: SyntheticRun, attack: Tamper) -> None:
    assert verify(landscape, run.run_id).ok  # the same database verified clean before
    with raw_connection(db_url) as db:
        expect = attack(db, run)
    report = verify(landscape, run.run_id)
    assert not report.ok
    assert has(report, expect.check, expect.table, expect.key, expect.message), report.findings
    assert {f.scope for f in report.findings} == {run.run_id}
    everything = verify(landscape)
    assert has(everything, expect.check, expect.table, expect.key, expect.message)
    json.dumps(report.as_dict())


def test_reordered_entries_are_both_named(landscape: Landscape, db_url: str,
                                          run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        reorder_entries(db, run)
    keys = {f.key for f in verify(landscape, run.run_id).findings if f.check == "chain"}
    assert {entry_key(run.run_id, 2), entry_key(run.run_id, 3)} <= keys


def test_moved_entry_is_reported_in_both_scopes(landscape: Landscape, db_url: str,
                                                run: SyntheticRun, other: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        move_entry_to_other_scope(db, run)
    report = verify(landscape, other.run_id)
    assert has(report, "chain", "ledger_entries", entry_key(other.run_id, other.ledger_entries + 1),
               "")


def test_moved_record_is_inserted_in_its_new_scope(landscape: Landscape, db_url: str,
                                                   run: SyntheticRun, other: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        move_record_to_other_run(db, run)
    assert has(verify(landscape, other.run_id), "record", "calls", run.state_call_id, "inserted")


def test_modified_finding_carries_both_hashes(landscape: Landscape, db_url: str,
                                              run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        edit_token_outcome(db, run)
    (finding,) = verify(landscape, run.run_id).findings
    assert finding == Finding("record", "token_outcomes", run.completed_outcome_id,
                              finding.message, run.run_id, finding.extra)
    assert len(finding.extra["expected"]) == len(finding.extra["actual"]) == 64
    assert finding.extra["expected"] != finding.extra["actual"]


# --- a consistent rewrite: only the seal and the trusted key stand in the way -------------------
def rewrite_run(db: RawDB, run: SyntheticRun) -> None:
    db.execute("UPDATE node_states SET duration_ms = 99999.0 WHERE state_id = ?",
               (run.state_ids[3],))
    tamper.recommit_record(db, run.run_id, "node_states", run.state_ids[3])


def test_consistent_rewrite_resealed_with_attacker_key_is_rejected(
        landscape: Landscape, db_url: str, run: SyntheticRun) -> None:
    attacker = Signer.generate()
    with raw_connection(db_url) as db:
        rewrite_run(db, run)
        seal_id = tamper.reseal(db, run.run_id, attacker)
    report = verify(landscape, run.run_id)
    head = entry_key(run.run_id, run.ledger_entries)
    assert {(f.check, f.table, f.key) for f in report.findings} == {
        ("seal", "ledger_seals", seal_id), ("seal", "ledger_entries", head),
        ("chain", "ledger_entries", head), ("checkpoint", "ledger_checkpoints", head)}
    assert has(report, "seal", "ledger_seals", seal_id, "sealed by unknown key")
    # The run's C2SP checkpoint, signed by the real key, names the tree before the rewrite.
    assert has(report, "checkpoint", "ledger_checkpoints", head, "root mismatch")
    # The rewrite itself is flawless: trusting the attacker's key, only the head the global
    # chain anchored at the run's seal, and the checkpoint the attacker could not re-sign,
    # still tell it apart.
    trusting = verify(landscape, run.run_id, public_key=attacker.public)
    assert {(f.check, f.key) for f in trusting.findings} == {("chain", head),
                                                             ("checkpoint", head)}
    assert has(trusting, "chain", "ledger_entries", head, "run rewritten")
    assert has(trusting, "checkpoint", "ledger_checkpoints", head, "invalid signature")


def test_consistent_rewrite_resealed_under_our_key_id_is_rejected(
        landscape: Landscape, db_url: str, run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        rewrite_run(db, run)
        seal_id = tamper.reseal(db, run.run_id, Signer.generate(),
                                claim_key_id=landscape.signer.key_id)
    assert has(verify(landscape, run.run_id), "seal", "ledger_seals", seal_id,
               "invalid signature")


def test_consistent_rewrite_under_the_old_seal_is_rejected(
        landscape: Landscape, db_url: str, run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        rewrite_run(db, run)
        (seal_id,) = seal_ids(db, run.run_id)
    report = verify(landscape, run.run_id)
    assert has(report, "seal", "ledger_seals", seal_id, "seal does not match chain")
    assert not any(f.check == "record" for f in report.findings)


def test_seals_are_checked_against_the_given_key(landscape: Landscape, db_url: str,
                                                 run: SyntheticRun) -> None:
    stranger = Signer.generate().public
    report = verify(landscape, run.run_id, public_key=stranger)
    with raw_connection(db_url) as db:
        (seal_id,) = seal_ids(db, run.run_id)
    assert has(report, "seal", "ledger_seals", seal_id, "sealed by unknown key")
    assert verify(landscape, run.run_id, public_key=landscape.signer.public).ok


# --- isolation between scopes, and the global scope -----------------------------------------------
def test_tampering_in_another_run_does_not_affect_this_one(
        landscape: Landscape, db_url: str, run: SyntheticRun, other: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        edit_node_state(db, other)
        reorder_entries(db, other)
        delete_seal(db, other)
        delete_routing_event(db, other)
    assert verify(landscape, run.run_id).ok
    damaged = verify(landscape, other.run_id)
    assert not damaged.ok and {f.scope for f in damaged.findings} == {other.run_id}
    everything = verify(landscape)
    assert {f.scope for f in everything.findings} == {other.run_id}


def test_global_policy_snapshot_edit_is_detected(landscape: Landscape, db_url: str,
                                                 run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.execute("UPDATE policy_snapshots SET policies_json = '[]', policy_count = 0 "
                   "WHERE snapshot_id = ?", (run.snapshot_id,))
    assert verify(landscape, run.run_id).ok  # the run's own scope is untouched
    for report in (verify(landscape), verify(landscape, GLOBAL_SCOPE)):
        assert has(report, "record", "policy_snapshots", run.snapshot_id, "modified")
        assert {f.scope for f in report.findings} == {GLOBAL_SCOPE}


def test_global_event_deletion_and_insertion_are_detected(landscape: Landscape, db_url: str,
                                                          run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.execute("DELETE FROM events WHERE event_id = ?", (run.global_event_id,))
        db.execute("INSERT INTO events (event_id, scope, type, source, payload_json, meta_json, "
                   "timestamp) VALUES ('evt_forged', 'global', 'approval.granted', 'forger', "
                   "'{}', '{}', '2026-01-01T00:00:00.000000Z')")
    report = verify(landscape)
    assert has(report, "record", "events", run.global_event_id, "deleted")
    assert has(report, "record", "events", "evt_forged", "inserted")
    assert verify(landscape, run.run_id).ok


def test_run_scoped_event_is_covered_by_the_run(landscape: Landscape, db_url: str,
                                                run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.execute("UPDATE events SET payload_json = '{}' WHERE event_id = ?",
                   (run.run_event_id,))
    assert has(verify(landscape, run.run_id), "record", "events", run.run_event_id, "modified")


def test_records_of_a_scope_without_any_chain_are_found(landscape: Landscape, db_url: str,
                                                        run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.execute("UPDATE node_states SET run_id = 'run_phantom' WHERE state_id = ?",
                   (run.state_ids[0],))
    report = verify(landscape)
    assert "run_phantom" in report.scopes
    assert has(report, "record", "node_states", run.state_ids[0], "inserted")
    assert has(report, "record", "node_states", run.state_ids[0], "moved")


# --- values no writer of ours could have stored: findings, not crashes ---------------------------
def test_wrongly_typed_record_value_is_a_modification(landscape: Landscape, db_url: str,
                                                      run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.retype("node_states", "duration_ms", "text", "duration_ms::text")
        db.execute("UPDATE node_states SET duration_ms = 'fast' WHERE state_id = ?",
                   (run.state_ids[2],))
    report = verify(landscape, run.run_id)
    assert [(f.check, f.table, f.key) for f in report.findings] == [
        ("record", "node_states", run.state_ids[2])]
    assert report.findings[0].message.startswith("modified")


def test_wrongly_typed_ledger_entry_is_a_finding(landscape: Landscape, db_url: str,
                                                 run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.drop_constraints("ledger_entries")  # its CHECK compares seq with integers
        db.retype("ledger_entries", "seq", "text", "seq::text")
        db.execute("UPDATE ledger_entries SET seq = 'x' WHERE scope = ? AND seq = ?",
                   (run.run_id, 2 if db.dialect == "sqlite" else "2"))
    report = verify(landscape, run.run_id)
    assert has(report, "chain", "ledger_entries", entry_key(run.run_id, "x"), "entry malformed")
    assert has(report, "record", "nodes", json.dumps([run.run_id, "route"], separators=(",", ":")),
               "inserted")  # the graph was committed by the unusable entry


def test_wrongly_typed_seal_is_a_finding(landscape: Landscape, db_url: str,
                                         run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        (seal_id,) = seal_ids(db, run.run_id)
        db.retype("ledger_seals", "signature", "bytea", "decode(signature, 'hex')")
        db.execute("UPDATE ledger_seals SET signature = ? WHERE seal_id = ?",
                   (b"\x00\xff", seal_id))
    report = verify(landscape, run.run_id)
    assert has(report, "seal", "ledger_seals", seal_id, "seal malformed")
    assert has(report, "seal", "ledger_entries", entry_key(run.run_id, run.ledger_entries),
               "unsealed tail")


def test_record_naming_no_scope_is_found(landscape: Landscape, db_url: str,
                                         run: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        db.drop_constraints("token_outcomes", nullable=("run_id",))
        db.execute("UPDATE token_outcomes SET run_id = NULL WHERE outcome_id = ?",
                   (run.completed_outcome_id,))
    assert has(verify(landscape, run.run_id), "record", "token_outcomes",
               run.completed_outcome_id, "deleted")
    report = verify(landscape)
    assert any(f.check == "record" and f.key == run.completed_outcome_id and f.scope is None
               and f.message.startswith("inserted") for f in report.findings), report.findings


# --- the code manifest (code_identities, written with the run's nodes) ------------------------
@pytest.fixture
def python_run(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> str:
    """A real engine run of a pipeline with a Python transform: its manifest names the function."""
    from governance_pipeline_tests.test_engine_run import run_pipeline
    from governance_pipeline_tests.test_python_transforms import project, python_node

    return run_pipeline(landscape, clock, project(tmp_path, [python_node("keep",
                                                                          mode="dataframe")])).run_id


def test_untouched_code_manifest_verifies_clean(landscape: Landscape, python_run: str) -> None:
    report = verify(landscape, python_run)
    assert report.ok, report.findings
    with landscape.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(
            code_identities.c.run_id == python_run,
            code_identities.c.source_sha256.is_not(None))).scalar_one() == 1


@pytest.mark.parametrize("column", ["source_sha256", "function_name", "plugin_version"])
def test_edited_code_manifest_is_detected(landscape: Landscape, db_url: str, python_run: str,
                                          column: str) -> None:
    with raw_connection(db_url) as db:
        db.execute(f"UPDATE code_identities SET {column} = ? WHERE run_id = ? AND node_id = ?",
                   ("0" * 64 if column == "source_sha256" else "forged", python_run, "mine"))
    key = ledger.record_key(LEDGERED["code_identities"], {"run_id": python_run, "node_id": "mine"})
    report = verify(landscape, python_run)
    assert not report.ok
    assert has(report, "record", "code_identities", key, "modified"), report.findings

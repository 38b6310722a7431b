"""The global chain is sealed at every commit and anchors every run (both backends).

Attacks a SQL client without the signing key can make on global records and on whole runs,
each next to its untouched twin: the approval flow, and a run next to a bystander, verify clean.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from governance_pipeline.contracts.enums import Decision
from governance_pipeline.governance.approvals.service import ApprovalService
from governance_pipeline.contracts.records import PolicySnapshotRecord
from governance_pipeline.landscape import checkpoints, ledger, migrate, witness
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.keys import PRIVATE_KEY_FILE
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    approval_decisions,
    ledger_entries,
    ledger_seals,
    run_anchors,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import VerifyReport, verify
from governance_pipeline_tests import tamper
from governance_pipeline_tests.approval_fixtures import REQUESTER, TENANT, catalog, subject
from governance_pipeline_tests.synthetic import SyntheticRun, record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection
from governance_pipeline_tests.test_cli import demo
from governance_pipeline_tests.test_cli import run as cli_run
from governance_pipeline_tests.test_migrations import empty_db_url as empty_db_url


@pytest.fixture
def approved(landscape: Landscape) -> str:
    """A two-stage approval, both stages decided; returns the last decision's id."""
    service = ApprovalService(landscape, ladders=catalog())
    approval, _ = service.request(tenant_id=TENANT, subject_type="pipeline",
                                  subject_hash=subject(), subject_ref="p.yaml",
                                  requested_by=REQUESTER, ladder="two_stage")
    service.decide(approval.approval_id, actor="olga", role="data_owner",
                   decision=Decision.APPROVE)
    service.decide(approval.approval_id, actor="carl", role="compliance",
                   decision=Decision.APPROVE)
    with landscape.engine.connect() as conn:
        return conn.execute(select(approval_decisions.c.decision_id)
                            .order_by(approval_decisions.c.decided_at.desc(),
                                      approval_decisions.c.decision_id.desc())).scalars().first()


@pytest.fixture
def run(recorder: Recorder) -> SyntheticRun:
    return record_synthetic_run(recorder)


@pytest.fixture
def bystander(recorder: Recorder, run: SyntheticRun) -> SyntheticRun:
    return record_synthetic_run(recorder, rows=7, pipeline_name="bystander")


def named(report: VerifyReport, message: str) -> list[str]:
    return [f"{f.check} {f.table} {f.key}" for f in report.findings if message in f.message]


# --- A. the global chain is sealed at every commit -----------------------------------------------
def test_every_global_commit_is_sealed(landscape: Landscape, approved: str) -> None:
    with landscape.engine.connect() as conn:
        head = ledger.read_head(conn, GLOBAL_SCOPE)
        sealed = set(conn.execute(select(ledger_seals.c.seq)
                                  .where(ledger_seals.c.scope == GLOBAL_SCOPE)).scalars())
    assert head.seq >= 3 and sealed == set(range(1, head.seq + 1))
    assert verify(landscape).ok


def test_deleted_decision_with_rechained_head_is_detected(
        landscape: Landscape, db_url: str, approved: str) -> None:
    with raw_connection(db_url) as db:
        first = tamper.drop_and_rechain(db, GLOBAL_SCOPE, "approval_decisions", approved)
        last = tamper.entries(db, GLOBAL_SCOPE)[-1]["seq"]
    report = verify(landscape)
    # Every seal from the rewritten entry on signs a head the chain no longer has.
    assert len(named(report, "seal does not match chain")) == last - first + 1
    assert not any(f.check == "record" for f in report.findings)


def test_deleted_decision_with_rechained_head_and_dropped_seals_is_detected(
        landscape: Landscape, db_url: str, approved: str) -> None:
    with raw_connection(db_url) as db:
        first = tamper.drop_and_rechain(db, GLOBAL_SCOPE, "approval_decisions", approved)
        db.execute("DELETE FROM ledger_seals WHERE scope = ? AND seq >= ?", (GLOBAL_SCOPE, first))
        last = tamper.entries(db, GLOBAL_SCOPE)[-1]["seq"]
    report = verify(landscape)
    assert named(report, "unsealed tail: the global chain") == [
        f"seal ledger_entries {tamper_key(GLOBAL_SCOPE, last)}"]
    assert report.findings[0].extra == {"sealed_through": first - 1, "last_seq": last}


def test_truncated_global_tail_under_its_seal_is_detected(
        landscape: Landscape, db_url: str, approved: str) -> None:
    with raw_connection(db_url) as db:
        last = tamper.entries(db, GLOBAL_SCOPE)[-1]["seq"]
        tamper.truncate_chain_to(db, GLOBAL_SCOPE, last - 1, keep_seals=True)
    report = verify(landscape)
    truncated = [f for f in report.findings if f.message.startswith("chain truncated")]
    assert [(f.table, f.scope, f.extra) for f in truncated] == [
        ("ledger_seals", GLOBAL_SCOPE, {"seq": last})]


def tamper_key(scope: str, seq: int) -> str:
    return f'["{scope}",{seq}]'


# --- B. every run is anchored in the global chain ------------------------------------------------
def test_runs_are_anchored_at_open_and_seal(landscape: Landscape, run: SyntheticRun,
                                            bystander: SyntheticRun) -> None:
    with landscape.engine.connect() as conn:
        anchored = conn.execute(select(run_anchors.c.run_id, run_anchors.c.run_seq,
                                       run_anchors.c.reason)
                                .where(run_anchors.c.run_id == run.run_id)
                                .order_by(run_anchors.c.run_seq)).all()
        total = conn.execute(select(func.count()).select_from(run_anchors)).scalar_one()
    assert [(r.run_seq, r.reason) for r in anchored] == [(1, "opened"),
                                                         (run.ledger_entries, "sealed")]
    assert total == 4
    assert verify(landscape).ok and verify(landscape, run.run_id).ok


def test_deleted_run_is_detected(landscape: Landscape, db_url: str, run: SyntheticRun,
                                 bystander: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        tamper.delete_run(db, run.run_id)
    report = verify(landscape)
    missing = [f for f in report.findings if f.message.startswith("run missing")]
    assert [f.scope for f in missing] == [run.run_id]
    assert f"run {run.run_id} anchored in the global chain at seq 1" in missing[0].message
    assert "is missing" in missing[0].message
    assert all(f.scope == run.run_id for f in report.findings)
    # Asked about it by id, the run is not "unknown": its anchor remains, and says so.
    alone = verify(landscape, run.run_id)
    assert [f.message.split(":")[0] for f in alone.findings] == ["run missing"]
    assert verify(landscape, bystander.run_id).ok


def test_run_truncated_below_its_anchored_head_is_detected(
        landscape: Landscape, db_url: str, run: SyntheticRun, bystander: SyntheticRun) -> None:
    # Back to its first entry and "running" again, the run's own chain is consistent and,
    # running, needs no seal: only the anchor at its seal remembers how far it went.
    with raw_connection(db_url) as db:
        tamper.truncate_chain_to(db, run.run_id, 1)
        db.execute("UPDATE runs SET status = 'running', termination_reason = NULL, "
                   "ended_at = NULL WHERE run_id = ?", (run.run_id,))
    report = verify(landscape, run.run_id)
    assert [f"{f.table} {f.key}" for f in report.findings] == [
        f"ledger_entries {tamper_key(run.run_id, run.ledger_entries)}"]
    assert report.findings[0].message.startswith(f"run truncated: run {run.run_id} anchored in "
                                                 f"the global chain at seq {run.ledger_entries}")
    assert verify(landscape, bystander.run_id).ok


# --- A. a clean truncation of the global tail: only the witness beside the key remembers ---------
@pytest.fixture
def decided(landscape: Landscape, db_url: str) -> dict[str, list[dict[str, object]]]:
    """A two-stage approval decided twice; returns the approval tables as they were before the
    second decision (the last global commit), for the attacker to restore."""
    service = ApprovalService(landscape, ladders=catalog())
    approval, _ = service.request(tenant_id=TENANT, subject_type="pipeline",
                                  subject_hash=subject(), subject_ref="p.yaml",
                                  requested_by=REQUESTER, ladder="two_stage")
    service.decide(approval.approval_id, actor="olga", role="data_owner",
                   decision=Decision.APPROVE)
    with raw_connection(db_url) as db:
        before = {table: db.rows(table) for table in ("approvals", "approval_stages")}
    service.decide(approval.approval_id, actor="carl", role="compliance",
                   decision=Decision.APPROVE)
    return before


def cut_last_decision(db: tamper.RawDB, before: dict[str, list[dict[str, object]]]) -> int:
    """Remove the last global commit with its seal, and put back what it updated; returns the
    seq that was cut."""
    last = tamper.entries(db, GLOBAL_SCOPE)[-1]["seq"]
    tamper.truncate_chain_to(db, GLOBAL_SCOPE, last - 1)
    for table, rows in before.items():
        for row in rows:
            tamper.restore_row(db, table, row)
    return int(last)


def test_clean_truncation_of_the_global_tail_is_detected_by_the_witness(
        landscape: Landscape, db_url: str, decided: dict[str, list[dict[str, object]]]) -> None:
    with raw_connection(db_url) as db:
        last = cut_last_decision(db, decided)
    report = verify(landscape)
    assert [f"{f.check} {f.key}" for f in report.findings] == [
        f"chain {tamper_key(GLOBAL_SCOPE, last)}"]
    assert report.findings[0].message.startswith(
        f"global chain truncated: the head witness (global_head.json beside the signing key) "
        f"recorded seq {last}, the chain now ends at seq {last - 1}")


def test_without_the_witness_a_clean_truncation_verifies(
        landscape: Landscape, db_url: str, decided: dict[str, list[dict[str, object]]],
        tmp_path: Path) -> None:
    # What the witness adds, shown by its absence: the same cut, verified from a home that never
    # saw this database (another host, the key copied without global_head.json), passes.
    with raw_connection(db_url) as db:
        cut_last_decision(db, decided)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(landscape.keys_dir / PRIVATE_KEY_FILE, elsewhere / PRIVATE_KEY_FILE)
    assert verify(dataclasses.replace(landscape, keys_dir=elsewhere)).ok


def test_the_witness_follows_every_global_commit(landscape: Landscape, approved: str,
                                                 run: SyntheticRun) -> None:
    with landscape.engine.connect() as conn:
        head = ledger.read_head(conn, GLOBAL_SCOPE)
        first = conn.execute(select(ledger_entries.c.entry_hash).where(
            ledger_entries.c.scope == GLOBAL_SCOPE, ledger_entries.c.seq == 1)).scalar_one()
    seen = witness.snapshot(landscape.keys_dir)
    assert seen == {first: witness.WitnessedHead(head.seq, head.entry_hash)}
    # It never moves back: an older head recorded late (a slower committer) is ignored.
    witness.record(landscape.keys_dir, first, 1, "0" * 64)
    assert witness.snapshot(landscape.keys_dir) == seen


# --- the command line: exit 5 naming the finding ---------------------------------------------------
def test_verify_exits_5_naming_a_deleted_run_and_0_untouched(db_url: str,
                                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    kept, gone = cli_demo(home, db_url), cli_demo(home, db_url)
    clean = cli_run(home, "verify", "--json", db_url=db_url)
    assert clean.code == 0, clean.err + clean.out
    with raw_connection(db_url) as db:
        tamper.delete_run(db, gone)
    human = cli_run(home, "verify", db_url=db_url)
    assert human.code == 5, human.err + human.out
    assert f"run missing: run {gone} anchored in the global chain at seq 1" in human.out
    assert "GP-AUDIT-003" in human.err
    alone = cli_run(home, "verify", gone, "--json", db_url=db_url)
    assert alone.code == 5 and alone.json()["findings"][0]["code"] == "GP-AUDIT-003"
    assert cli_run(home, "verify", kept, db_url=db_url).code == 0


def cli_demo(home: Path, db_url: str) -> str:
    return str(demo(home, db_url)["run_id"])


# --- a database from before per-commit sealing ------------------------------------------------------
def legacy_global_tail(url: str, keys: Path) -> None:
    """A revision-0002 database whose global chain ends in entries no seal covers, as the code
    of that revision left it (sealed only at export)."""
    engine = create_landscape_engine(url)
    migrate.upgrade(engine, "0002")
    engine.dispose()
    landscape = Landscape(create_landscape_engine(url), keys)
    with pytest.MonkeyPatch.context() as mp:
        # The code of that revision wrote no C2SP checkpoints (their table came with 0008).
        mp.setattr(checkpoints, "write_checkpoint", lambda *args, **kwargs: None)
        with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
            uow.add(PolicySnapshotRecord("ps_old", "t", "c" * 64, "v1", "[]", 0, uow.now))
    with raw_connection(url) as db:
        db.execute("DELETE FROM ledger_seals")
    landscape.dispose()


def test_upgrading_a_legacy_database_seals_its_global_tail_once(empty_db_url: str,
                                                                tmp_path: Path) -> None:
    legacy_global_tail(empty_db_url, tmp_path / "keys")
    landscape = Landscape.open(empty_db_url, tmp_path / "keys")
    try:
        assert verify(landscape).ok
    finally:
        landscape.dispose()


def test_a_database_at_head_is_not_resealed_on_open(empty_db_url: str, tmp_path: Path) -> None:
    # The twin: the same unsealed tail in a database already at head is a finding, and opening it
    # again does not bless it.
    legacy_global_tail(empty_db_url, tmp_path / "keys")
    Landscape.open(empty_db_url, tmp_path / "keys").dispose()
    with raw_connection(empty_db_url) as db:
        db.execute("DELETE FROM ledger_seals")
    landscape = Landscape.open(empty_db_url, tmp_path / "keys")
    try:
        assert named(verify(landscape), "unsealed tail: the global chain") == [
            f"seal ledger_entries {tamper_key(GLOBAL_SCOPE, 1)}"]
    finally:
        landscape.dispose()

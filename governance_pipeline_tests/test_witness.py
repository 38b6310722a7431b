"""Witnessing (issue #13 point 5): ``ledger witness`` appends checkpoints to a directory kept
outside the database; ``verify --witness`` catches a ledger rewritten and re-signed with the
real key, which verifies clean without it (both backends).

The attack is the strongest one the signing key allows: edit a record, recompute every later
entry of the chain, re-sign every seal with the real key and move the head file beside the key
(``keys/global_head.json``) along. Its twins: an honest ledger that grew after witnessing
verifies clean with the witness, and the witness extends its record of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dagster import DefaultScheduleStatus, instance_for_test

from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.signed_note import Verifier, parse_note
from governance_pipeline.definitions import defs
from governance_pipeline.governance.key_management import rotate_key
from governance_pipeline.landscape import tlog_view, witness
from governance_pipeline.landscape.anchors import global_chain_id
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.ledger import read_head
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import VerifyReport, verify
from governance_pipeline.landscape.witness_log import origin_dir, witnessed_in
from governance_pipeline.landscape.witnessing import (
    WITNESS_FORK,
    WITNESS_INCONSISTENT,
    WITNESS_OTHER_LOG,
    WITNESS_ROLLBACK,
    Cosigner,
    witness_scope,
)
from governance_pipeline.orchestration.witnessing import ledger_witness, ledger_witness_hourly
from governance_pipeline_tests import tamper
from governance_pipeline_tests.synthetic import SyntheticRun, record_synthetic_run
from governance_pipeline_tests.test_cli import run as cli_run


@pytest.fixture
def run(recorder: Recorder) -> SyntheticRun:
    return record_synthetic_run(recorder)


def witness_all(landscape: Landscape, out: Path, cosigner: Cosigner | None = None,
                scopes: tuple[str, ...] = (GLOBAL_SCOPE,)) -> list[int]:
    trusted = landscape.trusted_public_keys()
    return [witness_scope(landscape, s, out, trusted=trusted, cosigner=cosigner).size
            for s in scopes]


def grow(landscape: Landscape) -> None:
    """An honest global commit (a new policy snapshot via a synthetic run's global unit)."""
    record_synthetic_run(Recorder(landscape), rows=4, pipeline_name="later")


def rewrite_global_chain(landscape: Landscape, db_url: str, event_id: str) -> None:
    """The attack with the real key: edit a global record (an event's target), re-chain every
    later entry, re-sign every seal, move the head file beside the key along."""
    with tamper.raw_connection(db_url) as db:
        db.execute("UPDATE events SET target = ? WHERE event_id = ?", ("mallory", event_id))
        tamper.recommit_record(db, GLOBAL_SCOPE, "events", event_id)
        assert tamper.reseal_all(db, GLOBAL_SCOPE, landscape.signer) > 1
    with landscape.engine.connect() as conn:
        head = read_head(conn, GLOBAL_SCOPE)
        chain_id = global_chain_id(conn, head)
    path = landscape.keys_dir / witness.WITNESS_FILE
    path.write_text(json.dumps({chain_id: {"seq": head.seq, "head_hash": head.entry_hash}}))


def origin(landscape: Landscape, scope: str = GLOBAL_SCOPE) -> str:
    with landscape.engine.connect() as conn:
        prefix = tlog_view.origin_prefix(conn)
    assert prefix is not None
    return tlog_view.origin(prefix, scope)


def witness_findings(report: VerifyReport) -> list[str]:
    return [f.message for f in report.findings if f.check == "witness"]


# --- must pass ------------------------------------------------------------------------------------
def test_an_honest_ledger_that_grew_verifies_with_its_witness(landscape: Landscape,
                                                             run: SyntheticRun,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "witness"
    (first,) = witness_all(landscape, out)
    grow(landscape)
    report = verify(landscape, witness_dir=out)
    assert report.ok, report.findings
    assert report.witness is not None and report.witness.checked == 1
    (second,) = witness_all(landscape, out)  # the witness extends its record: consistent
    assert second > first
    log = origin(landscape)
    found, bad = witnessed_in(out)
    assert not bad and [w.size for w in found[log]] == [first, second]
    assert sorted(p.name for p in origin_dir(out, log).glob("*.checkpoint")) == sorted(
        [f"{first}.checkpoint", f"{second}.checkpoint"])
    report = verify(landscape, witness_dir=out)
    assert report.ok and report.witness is not None and report.witness.checked == 2


def test_the_witness_follows_the_log_across_a_key_rotation(landscape: Landscape,
                                                           run: SyntheticRun,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "witness"
    (first,) = witness_all(landscape, out)
    old = landscape.signer.key_id
    rotate_key(landscape, actor="ops")
    assert landscape.signer.key_id != old
    grow(landscape)  # checkpoints from now on are signed by the new key
    (second,) = witness_all(landscape, out)  # trusted through the rotation statement
    assert second > first
    report = verify(landscape, witness_dir=out)
    assert report.ok and report.witness is not None and report.witness.checked == 2
    # Its twin: a key no rotation links to is still refused.
    with pytest.raises(AuditIntegrityError) as refused:
        witness_scope(landscape, GLOBAL_SCOPE, tmp_path / "other",
                      trusted=[Signer.generate().public])
    assert refused.value.code.code == "GP-WITNESS-004"


def test_witnessing_an_unchanged_ledger_appends_nothing(landscape: Landscape, run: SyntheticRun,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out)
    before = {p: p.read_bytes() for p in out.rglob("*.checkpoint")}
    trusted = landscape.trusted_key().key
    again = witness_scope(landscape, GLOBAL_SCOPE, out, trusted=trusted)
    assert again.written is False
    assert {p: p.read_bytes() for p in out.rglob("*.checkpoint")} == before


# --- the attack with the real signing key ---------------------------------------------------------
def test_a_consistent_rewrite_with_the_real_key_passes_verify_but_not_the_witness(
        landscape: Landscape, db_url: str, run: SyntheticRun, tmp_path: Path) -> None:
    out = tmp_path / "witness"
    (size,) = witness_all(landscape, out)
    witnessed_root = parse_note((origin_dir(out, origin(landscape))
                                 / f"{size}.checkpoint").read_text())[0].split("\n")[2]
    rewrite_global_chain(landscape, db_url, run.global_event_id)
    # Without the witness the rewritten ledger verifies: every entry, seal and head file agree.
    assert verify(landscape).ok
    report = verify(landscape, witness_dir=out)
    assert not report.ok
    (message,) = witness_findings(report)
    assert message.startswith(f"ledger rewritten: the witness recorded size {size} root "
                              f"{witnessed_root}, the tree of scope global at that size now has "
                              "root ")
    (finding,) = [f for f in report.findings if f.check == "witness"]
    assert finding.key == f"{origin_dir(Path(), origin(landscape))}/{size}.checkpoint"
    assert report.as_dict()["findings"][0]["code"] == "GP-WITNESS-008"


def test_the_witness_refuses_to_append_a_rewritten_ledger(landscape: Landscape, db_url: str,
                                                         run: SyntheticRun,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out)
    before = {p: p.read_bytes() for p in out.rglob("*.checkpoint")}
    rewrite_global_chain(landscape, db_url, run.global_event_id)
    with pytest.raises(AuditIntegrityError) as same_size:
        witness_all(landscape, out)
    assert same_size.value.code is WITNESS_FORK
    grow(landscape)  # the attacker's ledger grows on: no consistency proof from what was seen
    with pytest.raises(AuditIntegrityError) as grown:
        witness_all(landscape, out)
    assert grown.value.code is WITNESS_INCONSISTENT
    assert {p: p.read_bytes() for p in out.rglob("*.checkpoint")} == before


def test_the_witness_refuses_a_rolled_back_ledger(landscape: Landscape, db_url: str,
                                                 run: SyntheticRun, tmp_path: Path) -> None:
    out = tmp_path / "witness"
    grow(landscape)
    (size,) = witness_all(landscape, out)
    with tamper.raw_connection(db_url) as db:
        tamper.truncate_chain_to(db, GLOBAL_SCOPE, size - 1)
    with pytest.raises(AuditIntegrityError) as caught:
        witness_all(landscape, out)
    assert caught.value.code is WITNESS_ROLLBACK
    report = verify(landscape, witness_dir=out)
    assert any(m.startswith(f"ledger truncated: the witness recorded size {size} ")
               for m in witness_findings(report)), report.findings


def test_a_rewritten_run_chain_is_caught_by_its_witnessed_checkpoint(
        landscape: Landscape, db_url: str, run: SyntheticRun, tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out, scopes=(GLOBAL_SCOPE, run.run_id))
    with tamper.raw_connection(db_url) as db:
        row_id = run.row_ids[0]
        db.execute("UPDATE rows SET row_index = ? WHERE row_id = ?", (999, row_id))
        tamper.recommit_record(db, run.run_id, "rows", row_id)
        tamper.reseal_all(db, run.run_id, landscape.signer)
    report = verify(landscape, run.run_id, witness_dir=out)
    assert any(m.startswith("ledger rewritten: ") and f"scope {run.run_id}" in m
               for m in witness_findings(report)), report.findings


# --- cosignatures ---------------------------------------------------------------------------------
def cosigner_key(tmp_path: Path, name: str) -> tuple[Path, Cosigner]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / f"{name.replace('/', '_')}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path, Cosigner(name, key)


def test_cosignatures_are_checked_with_the_cosigner_key(landscape: Landscape, run: SyntheticRun,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "witness"
    _, cosigner = cosigner_key(tmp_path, "witness.example/w1")
    _, stranger = cosigner_key(tmp_path, "witness.example/w2")
    witness_all(landscape, out, cosigner=cosigner)
    (text,) = [p.read_text() for p in out.rglob("*.checkpoint")]
    assert [s.name for s in parse_note(text)[1]] == [origin(landscape), "witness.example/w1"]
    assert verify(landscape, witness_dir=out, cosigners=[cosigner.verifier()]).ok
    report = verify(landscape, witness_dir=out, cosigners=[stranger.verifier()])
    assert [m.split(":")[0] for m in witness_findings(report)] == [
        "no valid cosignature of witness.example/w2 on the witnessed checkpoint"]
    # A cosigner's key under another name is another key: the note carries no signature of it.
    renamed = Verifier.cosigner("witness.example/w9", cosigner.public_raw)
    assert not verify(landscape, witness_dir=out, cosigners=[renamed]).ok


def test_an_edited_witness_file_is_a_finding(landscape: Landscape, run: SyntheticRun,
                                            tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out)
    (path,) = out.rglob("*.checkpoint")
    lines = path.read_text().split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claim a larger tree: the log's signature no longer holds
    path.write_text("\n".join(lines))
    path.rename(path.with_name(f"{lines[1]}.checkpoint"))
    report = verify(landscape, witness_dir=out)
    assert any(m.startswith("witnessed checkpoint not signed by a trusted key")
               for m in witness_findings(report)), report.findings


# --- the command line and the schedule ------------------------------------------------------------
def test_cli_witness_and_verify_exit_5_after_the_attack(db_url: str, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "witness"
    demo = cli_run(home, "demo", "--json", db_url=db_url)
    assert demo.code == 0, demo.err
    key, _ = cosigner_key(tmp_path, "witness.example/w1")
    done = cli_run(home, "ledger", "witness", "--out", str(out), "--runs", "--cosign-key",
                   str(key), "--cosigner-name", "witness.example/w1", "--json", db_url=db_url)
    assert done.code == 0, done.err + done.out
    doc = done.json()
    vkey = doc["cosigner_vkey"]
    assert len(doc["checkpoints"]) == 2 and all(c["written"] and c["cosigned"]
                                                for c in doc["checkpoints"])
    clean = cli_run(home, "verify", "--witness", str(out), "--cosigner-key", vkey, "--json",
                    db_url=db_url)
    assert clean.code == 0, clean.err + clean.out
    assert clean.json()["witness"]["checkpoints_checked"] == 2
    landscape = Landscape.open(db_url, home / "keys")
    try:
        rewrite_global_chain(landscape, db_url, _a_global_event(landscape))
    finally:
        landscape.dispose()
    plain = cli_run(home, "verify", "--json", db_url=db_url)
    assert plain.code == 0, plain.out  # the rewrite is invisible without the witness
    caught = cli_run(home, "verify", "--witness", str(out), "--json", db_url=db_url)
    assert caught.code == 5, caught.out
    report = caught.json()
    assert report["problem"]["code"] == "GP-WITNESS-008"
    assert [f["check"] for f in report["findings"]] == ["witness"]
    refused = cli_run(home, "ledger", "witness", "--out", str(out), "--json", db_url=db_url)
    assert refused.code == 5 and refused.json()["code"] == "GP-WITNESS-001"


def _a_global_event(landscape: Landscape) -> str:
    with landscape.engine.connect() as conn:
        return str(conn.exec_driver_sql(
            "SELECT event_id FROM events WHERE scope = 'global' ORDER BY event_id").scalar())


def test_the_witness_schedule_is_stopped_by_default_and_its_job_witnesses(
        landscape: Landscape, run: SyntheticRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (schedule,) = [s for s in defs.schedules or [] if s.name == "ledger_witness_hourly"]
    assert schedule is ledger_witness_hourly
    assert schedule.default_status is DefaultScheduleStatus.STOPPED
    out = tmp_path / "witness"
    monkeypatch.setenv("GOVERNANCE_HOME", str(landscape.keys_dir.parent))
    monkeypatch.setenv("GOVERNANCE_DB_URL",
                       landscape.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("GOVERNANCE_WITNESS_DIR", str(out))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = ledger_witness.execute_in_process(instance=instance)
    assert result.success
    (done,) = result.output_for_node("witness_checkpoints")["checkpoints"]
    assert done["scope"] == GLOBAL_SCOPE and done["written"] is True
    assert verify(landscape, witness_dir=out).ok



# --- one witness directory, one log ---------------------------------------------------------------
def test_a_directory_of_another_log_is_refused_and_reported(landscape: Landscape,
                                                           run: SyntheticRun,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out)
    other = Landscape.open(f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other-keys")
    try:
        record_synthetic_run(Recorder(other), rows=4)
        with pytest.raises(AuditIntegrityError) as caught:
            witness_all(other, out)
        assert caught.value.code is WITNESS_OTHER_LOG
        report = verify(other, witness_dir=out)
        assert any(m.startswith(f"witnessed log {origin(landscape)}: it is not a log of this "
                                "Landscape") for m in witness_findings(report)), report.findings
    finally:
        other.dispose()


def test_a_witnessed_run_deleted_whole_is_reported(landscape: Landscape, db_url: str,
                                                  run: SyntheticRun, tmp_path: Path) -> None:
    out = tmp_path / "witness"
    witness_all(landscape, out, scopes=(GLOBAL_SCOPE, run.run_id))
    assert verify(landscape, witness_dir=out).ok
    with tamper.raw_connection(db_url) as db:
        tamper.delete_run(db, run.run_id)
    report = verify(landscape, witness_dir=out)
    assert any(m.startswith(f"witnessed log {origin(landscape, run.run_id)}: the Landscape has "
                            f"no log of scope {run.run_id} any more")
               for m in witness_findings(report)), report.findings

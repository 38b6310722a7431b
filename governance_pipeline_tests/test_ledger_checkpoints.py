"""The ledger's seals as C2SP checkpoints of RFC 6962 trees (both backends).

A third party's view first: every checkpoint opens with the standard signed-note rules under the
scope's origin, its root is recomputed here from the raw entries (not through the ledger code),
and every entry has a tlog-proof that verifies. Then the attacks verify must name (exit 5), each
next to its untouched twin: a root that no longer matches the entries, a forked rewrite re-signed
with the real key, a checkpoint whose signature fails, an altered frontier, a deleted checkpoint,
and a run erased whole.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.merkle import (
    Frontier,
    MerkleTree,
    leaf_hash,
    root_hash,
    verify_consistency,
)
from governance_pipeline.contracts.signed_note import Verifier, sign_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint, open_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.contracts.tlog_proof import parse_tlog_proof, verify_tlog_proof
from governance_pipeline.landscape import checkpoints, ledger, tlog
from governance_pipeline.landscape.database import write_transaction
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, ledger_checkpoints, ledger_entries
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import VerifyReport, verify
from governance_pipeline_tests import tamper
from governance_pipeline_tests.synthetic import SyntheticRun, record_synthetic_run
from governance_pipeline_tests.tamper import RawDB, raw_connection
from governance_pipeline_tests.test_cli import demo
from governance_pipeline_tests.test_cli import run as cli_run


@pytest.fixture
def run(recorder: Recorder) -> SyntheticRun:
    return record_synthetic_run(recorder)


@pytest.fixture
def bystander(recorder: Recorder, run: SyntheticRun) -> SyntheticRun:
    return record_synthetic_run(recorder, rows=7, pipeline_name="bystander")


def key(scope: str, size: int) -> str:
    return f'["{scope}",{size}]'


def checkpoint_findings(report: VerifyReport) -> list[tuple[str, str]]:
    return sorted((f.key, f.message.split(":")[0]) for f in report.findings
                  if f.check == "checkpoint")


def raw_entries(db: RawDB, scope: str) -> list[dict[str, object]]:
    return tamper.entries(db, scope)


def independent_root(entries: list[dict[str, object]], size: int) -> bytes:
    """The tree head as a third party computes it: each entry hash recomputed from the entry's
    own fields, leaf = SHA-256(0x00 || its 32 bytes), RFC 6962 root over the first ``size``."""
    leaves = []
    for e in entries[:size]:
        recomputed = ledger.entry_hash(
            scope=str(e["scope"]), seq=int(e["seq"]), prev_hash=str(e["prev_hash"]),  # type: ignore[call-overload]
            records_digest=str(e["records_digest"]), record_count=int(e["record_count"]),  # type: ignore[call-overload]
            created_at=str(e["created_at"]))
        assert recomputed == e["entry_hash"]
        leaves.append(leaf_hash(bytes.fromhex(recomputed)))
    return root_hash(leaves)


def stored(db: RawDB, scope: str) -> list[dict[str, object]]:
    return sorted((r for r in db.rows("ledger_checkpoints") if r["scope"] == scope),
                  key=lambda r: int(r["tree_size"]))  # type: ignore[call-overload]


# --- a third party's checks pass ------------------------------------------------------------------
def test_every_seal_is_a_c2sp_checkpoint_a_third_party_can_check(
        landscape: Landscape, db_url: str, run: SyntheticRun, bystander: SyntheticRun) -> None:
    public = landscape.trusted_key().key
    with raw_connection(db_url) as db:
        seals = db.rows("ledger_seals")
        for scope in (run.run_id, bystander.run_id, GLOBAL_SCOPE):
            entries = raw_entries(db, scope)
            rows = stored(db, scope)
            assert {s["seq"] for s in seals if s["scope"] == scope} == {r["tree_size"]
                                                                       for r in rows}
            with landscape.engine.connect() as conn:
                origin = tlog.scope_origin(conn, scope)
            assert origin.endswith(f"/{scope}") and origin.startswith("governance-pipeline.")
            verifier = Verifier.ed25519(origin, checkpoints.public_key_raw(public))
            previous: Checkpoint | None = None
            for row in rows:
                size = int(row["tree_size"])  # type: ignore[call-overload]
                cp, _ = open_checkpoint(str(row["note"]), [verifier], origin)
                root = independent_root(entries, size)
                # Byte-exact c2sp.org/tlog-checkpoint text, signed under the origin as key name.
                assert str(row["note"]).startswith(
                    f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n\n— {origin} ")
                assert cp.root_hash == root
                frontier = Frontier.from_bytes(bytes(row["frontier"]))  # type: ignore[arg-type]
                assert frontier.size == size and frontier.root() == root
                if previous is not None:
                    with landscape.engine.connect() as conn:
                        proof = tlog.consistency_proof(conn, scope, previous.size, size)
                    assert verify_consistency(previous.size, size, previous.root_hash, root,
                                              proof)
                previous = cp
    with landscape.engine.connect() as conn:
        latest = tlog.latest_checkpoint(conn, run.run_id)
        verifier = tlog.scope_verifier(conn, run.run_id, public)
        tree = tlog.ScopeTree.load(conn, run.run_id)
        for seq, head in enumerate(tree_hashes(conn, run.run_id), start=1):
            text = tlog.tlog_proof(conn, run.run_id, seq, tree=tree).format()
            proof = parse_tlog_proof(text)
            assert proof.index == seq - 1
            cp = verify_tlog_proof(proof, checkpoints.entry_leaf(head), [verifier], latest
                                   .checkpoint().origin)
            assert cp.size == latest.size == run.ledger_entries
    assert verify(landscape).ok


def tree_hashes(conn: Connection, scope: str) -> list[str]:
    return list(conn.execute(select(ledger_entries.c.entry_hash)
                             .where(ledger_entries.c.scope == scope)
                             .order_by(ledger_entries.c.seq)).scalars())


def test_global_checkpoints_extend_each_other_commit_by_commit(
        landscape: Landscape, run: SyntheticRun, bystander: SyntheticRun) -> None:
    with landscape.engine.connect() as conn:
        sizes = list(conn.execute(select(ledger_checkpoints.c.tree_size)
                                  .where(ledger_checkpoints.c.scope == GLOBAL_SCOPE)
                                  .order_by(ledger_checkpoints.c.tree_size)).scalars())
        head = ledger.read_head(conn, GLOBAL_SCOPE)
        tree = tlog.ScopeTree.load(conn, GLOBAL_SCOPE)
        assert sizes == list(range(1, head.seq + 1))  # one per global commit
        for old, new in zip(sizes, sizes[1:]):
            proof = tlog.checked_consistency(tree, tlog.checkpoint_at(conn, GLOBAL_SCOPE, old),
                                             tlog.checkpoint_at(conn, GLOBAL_SCOPE, new))
            assert verify_consistency(old, new, tree.root(old), tree.root(new), proof)
        with pytest.raises(TlogError) as exc:
            tlog.inclusion_proof(conn, GLOBAL_SCOPE, head.seq + 1, head.seq)
        assert exc.value.code.code == "GP-TLOG-014"
        with pytest.raises(TlogError) as exc:
            tlog.checkpoint_at(conn, GLOBAL_SCOPE, head.seq + 5)
        assert exc.value.code.code == "GP-TLOG-013"
        index, proof = tlog.inclusion_proof(conn, GLOBAL_SCOPE, 1, head.seq)
        assert index == 0 and len(proof) == (head.seq - 1).bit_length()


def test_the_origin_prefix_is_set_before_the_first_checkpoint_and_fixed_after(
        landscape: Landscape, recorder: Recorder) -> None:
    with write_transaction(landscape.engine) as conn:
        checkpoints.set_origin_prefix(conn, "audit.example.com/landscape", recorder.now())
    done = record_synthetic_run(recorder)
    with landscape.engine.connect() as conn:
        note = tlog.latest_checkpoint(conn, done.run_id).note
    assert note.startswith(f"audit.example.com/landscape/{done.run_id}\n")
    for bad in ("with space", "a+b", "trailing/", ""):
        with pytest.raises(TlogError):
            checkpoints.check_prefix(bad)
    with pytest.raises(TlogError) as exc, write_transaction(landscape.engine) as conn:
        checkpoints.set_origin_prefix(conn, "other.example/log", recorder.now())
    assert exc.value.code.code == "GP-TLOG-016"
    assert checkpoints.origin_of("p", "run 1+x/é") == "p/run%201%2Bx%2F%C3%A9"
    assert verify(landscape).ok


# --- attacks --------------------------------------------------------------------------------------
def resign_seals(db: RawDB, scope: str, signer: Signer) -> None:
    """Re-sign every legacy seal of ``scope`` over the entry now at its seq (the real key)."""
    heads = {e["seq"]: e["entry_hash"] for e in tamper.entries(db, scope)}
    for seal in [s for s in db.rows("ledger_seals") if s["scope"] == scope]:
        head = heads[seal["seq"]]
        message = ledger.seal_message(scope=scope, seq=int(seal["seq"]), head_hash=str(head),  # type: ignore[call-overload]
                                      key_id=str(seal["key_id"]), sealed_at=str(seal["sealed_at"]))
        db.execute("UPDATE ledger_seals SET head_hash = ?, signature = ? WHERE seal_id = ?",
                   (head, signer.sign(message), seal["seal_id"]))


def forge_checkpoint(db: RawDB, scope: str, origin: str, signer: Signer, size: int) -> None:
    """A checkpoint of the chain as it is now, signed with ``signer`` (what the attacker with
    the key computes), with its frontier, as the seal code would store it."""
    leaves = [checkpoints.entry_leaf(str(e["entry_hash"])) for e in tamper.entries(db, scope)]
    frontier = Frontier()
    frontier.extend(leaves[:size])
    note = sign_note(Checkpoint(origin, size, frontier.root()).body(), origin,
                     lambda m: bytes.fromhex(signer.sign(m)),
                     checkpoints.public_key_raw(signer.public))
    db.execute("INSERT INTO ledger_checkpoints (scope, tree_size, seal_id, note, frontier, "
               "created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (scope, size, "seal_forged", note, frontier.to_bytes(), "2026-01-01T00:00:00Z"))


def rewrite_record(landscape: Landscape, db: RawDB, run: SyntheticRun) -> list[tuple[str, str]]:
    db.execute("UPDATE node_states SET duration_ms = 77777.0 WHERE state_id = ?",
               (run.state_ids[2],))
    tamper.recommit_record(db, run.run_id, "node_states", run.state_ids[2])
    resign_seals(db, run.run_id, landscape.signer)
    return [(key(run.run_id, run.ledger_entries), "root mismatch")]


def fork_run(landscape: Landscape, db: RawDB, run: SyntheticRun) -> list[tuple[str, str]]:
    # Remove the run's last entry and re-append it changed, then one more entry; re-sign every
    # seal and write the new head's checkpoint with the real key. The chain and its seals verify
    # again; the checkpoint of size N still held is of the tree before the fork.
    n = run.ledger_entries
    last = tamper.entries(db, run.run_id)[-1]
    items, _ = ledger.decode_manifest(bytes(last["manifest"]))  # type: ignore[arg-type]
    db.execute("DELETE FROM ledger_entries WHERE scope = ? AND seq = ?", (run.run_id, n))
    tamper.append_entry(db, run.run_id, items, "2026-01-01T00:00:09.000000Z")
    tamper.append_entry(db, run.run_id, [], "2026-01-01T00:00:10.000000Z")
    db.execute("INSERT INTO ledger_seals (seal_id, scope, seq, head_hash, key_id, signature, "
               "sealed_at) VALUES ('seal_fork', ?, ?, '', ?, '', ?)",
               (run.run_id, n + 1, landscape.signer.key_id, "2026-01-01T00:00:10.000000Z"))
    resign_seals(db, run.run_id, landscape.signer)
    origin = stored(db, run.run_id)[0]["note"].split("\n", 1)[0]  # type: ignore[union-attr]
    forge_checkpoint(db, run.run_id, origin, landscape.signer, n + 1)
    return [(key(run.run_id, n), "root mismatch"), (key(run.run_id, n + 1), "fork")]


def alter_signed_root(landscape: Landscape, db: RawDB,
                      run: SyntheticRun) -> list[tuple[str, str]]:
    row = stored(db, run.run_id)[-1]
    lines = str(row["note"]).split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()  # another root, signature left as it was
    db.execute("UPDATE ledger_checkpoints SET note = ? WHERE scope = ? AND tree_size = ?",
               ("\n".join(lines), run.run_id, row["tree_size"]))
    return [(key(run.run_id, int(row["tree_size"])), "invalid signature")]  # type: ignore[call-overload]


def resign_with_other_key(landscape: Landscape, db: RawDB,
                          run: SyntheticRun) -> list[tuple[str, str]]:
    row = stored(db, run.run_id)[-1]
    origin = str(row["note"]).split("\n", 1)[0]
    db.execute("DELETE FROM ledger_checkpoints WHERE scope = ?", (run.run_id,))
    forge_checkpoint(db, run.run_id, origin, Signer.generate(), int(row["tree_size"]))  # type: ignore[call-overload]
    return [(key(run.run_id, int(row["tree_size"])), "invalid signature")]  # type: ignore[call-overload]


def alter_frontier(landscape: Landscape, db: RawDB, run: SyntheticRun) -> list[tuple[str, str]]:
    row = stored(db, GLOBAL_SCOPE)[-2]
    frontier = bytearray(bytes(row["frontier"]))  # type: ignore[arg-type]
    frontier[-1] ^= 1
    db.execute("UPDATE ledger_checkpoints SET frontier = ? WHERE scope = ? AND tree_size = ?",
               (bytes(frontier), GLOBAL_SCOPE, row["tree_size"]))
    return [(key(GLOBAL_SCOPE, int(row["tree_size"])), "frontier altered")]  # type: ignore[call-overload]


def delete_a_checkpoint(landscape: Landscape, db: RawDB,
                        run: SyntheticRun) -> list[tuple[str, str]]:
    size = int(stored(db, GLOBAL_SCOPE)[-2]["tree_size"])  # type: ignore[call-overload]
    db.execute("DELETE FROM ledger_checkpoints WHERE scope = ? AND tree_size = ?",
               (GLOBAL_SCOPE, size))
    return [(key(GLOBAL_SCOPE, size), "checkpoint missing")]


def untouched(landscape: Landscape, db: RawDB, run: SyntheticRun) -> list[tuple[str, str]]:
    return []


ATTACKS: dict[str, Callable[[Landscape, RawDB, SyntheticRun], list[tuple[str, str]]]] = {
    "untouched (the twin of every attack)": untouched,
    "root mismatch": rewrite_record,
    "fork re-signed with the real key": fork_run,
    "signed root altered": alter_signed_root,
    "re-signed with another key": resign_with_other_key,
    "frontier altered": alter_frontier,
    "checkpoint deleted": delete_a_checkpoint,
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_checkpoint_attacks_are_named_and_the_twin_is_clean(
        landscape: Landscape, db_url: str, run: SyntheticRun, bystander: SyntheticRun,
        attack: str) -> None:
    with raw_connection(db_url) as db:
        expected = ATTACKS[attack](landscape, db, run)
    report = verify(landscape)
    assert checkpoint_findings(report) == sorted(expected)
    if not expected:
        assert report.ok
        return
    codes = {f["code"] for f in report.as_dict()["findings"] if f["check"] == "checkpoint"}
    assert codes == {"GP-TLOG-015"}
    # Every other finding is the chain's own evidence of the same attack, never the seals':
    # the attacker re-signed those with the real key.
    others = {f.message.split(":")[0] for f in report.findings if f.check != "checkpoint"}
    assert others <= {"run rewritten", "entry altered"}, report.findings
    assert verify(landscape, bystander.run_id).ok


def test_erasing_a_whole_run_is_still_detected(landscape: Landscape, db_url: str,
                                               run: SyntheticRun,
                                               bystander: SyntheticRun) -> None:
    with raw_connection(db_url) as db:
        assert stored(db, run.run_id)
        tamper.delete_run(db, run.run_id)  # rows, chain, seals and checkpoints
        assert not stored(db, run.run_id)
    report = verify(landscape)
    assert [f.message.split(":")[0] for f in report.findings] == ["run missing"]
    assert report.findings[0].scope == run.run_id
    assert verify(landscape, bystander.run_id).ok


def test_verify_exits_5_on_a_checkpoint_finding_and_0_untouched(db_url: str,
                                                               tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id = str(demo(home, db_url)["run_id"])
    assert cli_run(home, "verify", "--json", db_url=db_url).code == 0
    with raw_connection(db_url) as db:
        row = stored(db, run_id)[-1]
        db.execute("UPDATE ledger_checkpoints SET note = ? WHERE scope = ? AND tree_size = ?",
                   (str(row["note"]).replace("\n\n", "\nextension\n\n", 1), run_id,
                    row["tree_size"]))
    result = cli_run(home, "verify", run_id, "--json", db_url=db_url)
    assert result.code == 5, result.err + result.out
    finding = result.json()["findings"][0]
    assert (finding["check"], finding["code"]) == ("checkpoint", "GP-TLOG-015")
    assert finding["message"].startswith("invalid signature")


def test_sealing_costs_o_log_n_per_commit(landscape: Landscape, recorder: Recorder) -> None:
    # The frontier stored with the previous checkpoint is extended by the new head only: the
    # seal reads no other entry. Removing every entry but the head proves it: the next global
    # checkpoint is still right, computed without them.
    record_synthetic_run(recorder)
    with landscape.engine.connect() as conn:
        before = ledger.read_head(conn, GLOBAL_SCOPE)
        full = MerkleTree([checkpoints.entry_leaf(h) for h in tree_hashes(conn, GLOBAL_SCOPE)])
    with write_transaction(landscape.engine) as conn:
        ledger.lock_scope(conn, GLOBAL_SCOPE)
        rows = conn.execute(select(ledger_entries).where(
            ledger_entries.c.scope == GLOBAL_SCOPE)).mappings().all()
        conn.execute(ledger_entries.delete().where(ledger_entries.c.scope == GLOBAL_SCOPE,
                                                   ledger_entries.c.seq < before.seq))
        now = to_iso(landscape.clock.now())
        head = ledger.append_entry(conn, GLOBAL_SCOPE, [], now)
        ledger.seal(conn, GLOBAL_SCOPE, landscape.signer, now, head=head)
        note = conn.execute(select(ledger_checkpoints.c.note).where(
            ledger_checkpoints.c.scope == GLOBAL_SCOPE,
            ledger_checkpoints.c.tree_size == head.seq)).scalar_one()
        conn.execute(ledger_entries.insert(), [dict(r) for r in rows if r["seq"] < before.seq])
    expected = MerkleTree([*[full.leaf(i) for i in range(full.size)],
                           checkpoints.entry_leaf(head.entry_hash)]).root()
    assert note.split("\n")[2] == base64.b64encode(expected).decode()
    assert verify(landscape).ok

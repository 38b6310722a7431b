"""Inclusion proofs built from a real sealed run on both backends: every sampled record's proof
verifies offline against the checkpoint; each kind of alteration of a proof is rejected; records
the checkpoint does not cover cannot be proven."""

from __future__ import annotations

import base64

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import (
    AuditIntegrityError,
    ConfigError,
    NotFoundError,
)
from governance_pipeline.governance.exports.checkpoint import (
    SCOPE_UNSEALED,
    Checkpoint,
    checkpoint_for,
    seal_scopes,
)
from governance_pipeline.governance.exports.proofs import (
    RECORD_UNPROVABLE,
    inclusion_proof,
    inclusion_proofs,
    record_content_hash,
    verify_proof,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_dir_fixtures import (
    SealedRun,
    query,
    record_policy_snapshot,
    sealed_run,
)

Proof = dict[str, Any]


@pytest.fixture
def run(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> SealedRun:
    return sealed_run(landscape, clock, tmp_path)


@pytest.fixture
def checkpoint(landscape: Landscape, run: SealedRun) -> Checkpoint:
    return checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])


def seal_dict(checkpoint: Checkpoint, scope: str) -> dict[str, Any]:
    seal = checkpoint.seal(scope)
    assert seal is not None
    return seal.model_dump(mode="json")


# --- must accept ----------------------------------------------------------------------------------
def test_every_sampled_record_is_proven_against_the_checkpoint(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    proofs = inclusion_proofs(landscape, run.samples, checkpoint)
    assert [(p["record"]["table"], p["record"]["key"], p["scope"]) for p in proofs] == run.samples
    heads = {s.scope: (s.seq, s.head_hash) for s in checkpoint.seals}
    for proof in proofs:
        # JSON-safe: what a bundle stores is what is checked
        stored = json.loads(json.dumps(proof))
        assert verify_proof(stored, seal_dict(checkpoint, proof["scope"]),
                            landscape.signer.public) == []
        last = (proof["chain"] or [proof["entry"]])[-1]
        assert (last["seq"], last["entry_hash"]) == heads[proof["scope"]]
        record = proof["record"]
        spec = LEDGERED[record["table"]]
        assert record["record_hash"] == ledger.record_hash(
            spec, dict(zip(record["columns"], record["values"], strict=True)))
    runs_proof = proofs[0]
    # The run record is committed again by the sealing entry (its final status): the proof
    # shows that latest version, with nothing after it.
    assert runs_proof["entry"]["seq"] == heads[run.run_id][0] and runs_proof["chain"] == []
    assert dict(zip(runs_proof["record"]["columns"], runs_proof["record"]["values"],
                    strict=True))["status"] == "completed"
    first_state = proofs[1]
    assert first_state["entry"]["seq"] < heads[run.run_id][0]
    assert len(first_state["chain"]) == heads[run.run_id][0] - first_state["entry"]["seq"]


def test_single_proof_equals_the_batch_form(landscape: Landscape, run: SealedRun,
                                             checkpoint: Checkpoint) -> None:
    table, key, scope = run.samples[3]
    assert inclusion_proof(landscape, table, key, scope, checkpoint) == \
        inclusion_proofs(landscape, [run.samples[3]], checkpoint)[0]


# --- must reject: altered proofs --------------------------------------------------------------------
def _edit_value(proof: Proof) -> None:
    record = proof["record"]
    i = record["columns"].index("status" if record["table"] == "node_states" else "pipeline_name")
    record["values"][i] = "edited"


def _edit_value_and_hash(proof: Proof) -> None:
    _edit_value(proof)
    record = proof["record"]
    record["record_hash"] = record_content_hash(record["table"], record["values"])


def _swap_column_names(proof: Proof) -> None:
    columns = proof["record"]["columns"]
    columns[1], columns[2] = columns[2], columns[1]


def _manifest_bytes(proof: Proof) -> bytearray:
    assert proof["entry"]["manifest_format"] == 2
    return bytearray(base64.b64decode(proof["entry"]["manifest"]))


def _edit_manifest(proof: Proof) -> None:
    """One bit of the last record digest flipped: the manifest still parses."""
    blob = _manifest_bytes(proof)
    blob[-1] ^= 1
    proof["entry"]["manifest"] = base64.b64encode(blob).decode()


def _truncate_manifest(proof: Proof) -> None:
    proof["entry"]["manifest"] = base64.b64encode(_manifest_bytes(proof)[:-5]).decode()


def _relabel_manifest(proof: Proof) -> None:
    proof["entry"]["manifest_format"] = 1  # the base64 read as a format-1 JSON text


def _cut_inside(proof: Proof) -> None:
    del proof["chain"][0]  # the entry right after the record's: the chain still ends at the head


def _cut_tail(proof: Proof) -> None:
    del proof["chain"][-1]


def _edit_entry_time(proof: Proof) -> None:
    proof["chain"][0]["created_at"] = "2000-01-01T00:00:00.000000Z"


def _forge_seal(proof: Proof) -> None:
    proof["seal"]["sealed_at"] = "2000-01-01T00:00:00.000000Z"


def _other_scope(proof: Proof) -> None:
    proof["scope"] = GLOBAL_SCOPE


def _malformed(proof: Proof) -> None:
    proof["entry"]["seq"] = "3"


ALTERATIONS: dict[str, tuple[Callable[[Proof], None], str]] = {
    "record value edited": (_edit_value, "record content altered"),
    "record value and hash edited": (_edit_value_and_hash, "commits another version"),
    "column names swapped": (_swap_column_names, "record columns do not match"),
    "manifest edited": (_edit_manifest, "does not hash to its records_digest"),
    "manifest truncated": (_truncate_manifest, "unreadable"),
    "manifest format relabelled": (_relabel_manifest, "unreadable"),
    "chain cut inside": (_cut_inside, "chain broken"),
    "chain cut at the head": (_cut_tail, "chain ends at seq"),
    "later entry edited": (_edit_entry_time, "altered: its content does not hash"),
    "seal in the proof edited": (_forge_seal, "another checkpoint"),
    "scope relabelled": (_other_scope, "record belongs to scope"),
    "malformed field": (_malformed, "proof malformed"),
}


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_an_altered_proof_is_rejected(name: str, landscape: Landscape, run: SealedRun,
                                      checkpoint: Checkpoint) -> None:
    alter, expected = ALTERATIONS[name]
    proof = inclusion_proofs(landscape, [run.samples[1]], checkpoint)[0]  # a first-chunk state
    assert len(proof["chain"]) >= 2
    seal = seal_dict(checkpoint, run.run_id)
    assert verify_proof(proof, seal, landscape.signer.public) == []
    altered = copy.deepcopy(proof)
    alter(altered)
    problems = verify_proof(altered, seal, landscape.signer.public)
    assert any(expected in p for p in problems), problems


def test_a_proof_against_another_checkpoint_is_rejected(
        landscape: Landscape, clock: ManualClock, run: SealedRun, checkpoint: Checkpoint) -> None:
    clock.advance(60)
    with Recorder(landscape).unit(run.run_id, seal=True):
        pass  # a second seal of the same head: a newer checkpoint
    newer = checkpoint_for(landscape, [run.run_id])
    assert newer.seal(run.run_id) != checkpoint.seal(run.run_id)
    proof = inclusion_proofs(landscape, [run.samples[1]], newer)[0]
    assert verify_proof(proof, seal_dict(newer, run.run_id), landscape.signer.public) == []
    problems = verify_proof(proof, seal_dict(checkpoint, run.run_id), landscape.signer.public)
    assert any("built against another checkpoint" in p for p in problems), problems


def test_a_proof_checked_with_another_key_is_rejected(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    proof = inclusion_proofs(landscape, [run.samples[0]], checkpoint)[0]
    seal = seal_dict(checkpoint, run.run_id)
    problems = verify_proof(proof, seal, Signer.generate().public)
    assert any("sealed by key" in p for p in problems), problems
    seal["signature"] = seal["signature"][::-1]
    proof["seal"] = dict(seal)
    problems = verify_proof(proof, seal, landscape.signer.public)
    assert any("seal signature invalid" in p for p in problems), problems


# --- must reject: records the checkpoint does not cover -------------------------------------------
def test_a_record_committed_after_the_checkpoint_cannot_be_proven(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    late = record_policy_snapshot(landscape)
    with pytest.raises(ConfigError) as caught:
        inclusion_proof(landscape, "policy_snapshots", late, GLOBAL_SCOPE, checkpoint)
    assert caught.value.code is RECORD_UNPROVABLE and "after the checkpoint" in str(caught.value)
    seal_scopes(landscape, [GLOBAL_SCOPE])
    fresh = checkpoint_for(landscape, [GLOBAL_SCOPE])
    proof = inclusion_proof(landscape, "policy_snapshots", late, GLOBAL_SCOPE, fresh)
    assert verify_proof(proof, seal_dict(fresh, GLOBAL_SCOPE), landscape.signer.public) == []


def test_a_record_changed_after_the_checkpoint_cannot_be_proven(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    with Recorder(landscape).unit(GLOBAL_SCOPE) as unit:
        unit.update("policy_snapshots", {"snapshot_id": run.snapshot_id}, {"policy_count": 7})
    with pytest.raises(ConfigError) as caught:
        inclusion_proof(landscape, "policy_snapshots", run.snapshot_id, GLOBAL_SCOPE, checkpoint)
    assert caught.value.code is RECORD_UNPROVABLE and "changed after the seal" in str(caught.value)


def test_a_tampered_record_cannot_be_proven(landscape: Landscape, run: SealedRun,
                                            checkpoint: Checkpoint) -> None:
    table, key, scope = run.samples[1]
    with landscape.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE node_states SET duration_ms = 99999 WHERE state_id = "
                             + ("%(k)s" if conn.dialect.name == "postgresql" else ":k"),
                             {"k": key})
    with pytest.raises(ConfigError) as caught:
        inclusion_proof(landscape, table, key, scope, checkpoint)
    assert caught.value.code is RECORD_UNPROVABLE


def test_wrong_scope_unknown_record_and_scope_outside_the_checkpoint(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    table, key, _ = run.samples[1]
    with pytest.raises(ConfigError, match="belongs to scope"):
        inclusion_proof(landscape, table, key, GLOBAL_SCOPE, checkpoint)
    with pytest.raises(NotFoundError):
        inclusion_proof(landscape, table, "st_missing", run.run_id, checkpoint)
    with pytest.raises(NotFoundError):
        inclusion_proof(landscape, "not_a_table", key, run.run_id, checkpoint)
    only_global = checkpoint_for(landscape, [GLOBAL_SCOPE])
    with pytest.raises(ConfigError, match="not in the checkpoint"):
        inclusion_proof(landscape, table, key, run.run_id, only_global)


# --- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_takes_the_latest_seal_of_each_scope(
        landscape: Landscape, run: SealedRun, checkpoint: Checkpoint) -> None:
    assert checkpoint.scopes == sorted([run.run_id, GLOBAL_SCOPE])
    for seal in checkpoint.seals:
        row = query(landscape, "SELECT seal_id, seq, head_hash FROM ledger_seals WHERE scope = :s "
                    "ORDER BY seq DESC, sealed_at DESC, seal_id DESC", s=seal.scope)[0]
        assert (seal.seal_id, seal.seq, seal.head_hash) == tuple(row)
        assert landscape.signer.public.verify(seal.signature, seal.message())


def test_checkpoint_of_an_unsealed_scope_is_refused(landscape: Landscape) -> None:
    with pytest.raises(ConfigError) as caught:
        checkpoint_for(landscape, ["run_never_sealed"])
    assert caught.value.code is SCOPE_UNSEALED


def test_checkpoint_refuses_a_seal_made_by_another_key(landscape: Landscape, run: SealedRun,
                                                       tmp_path: Path) -> None:
    stranger = Landscape(landscape.engine, tmp_path / "other-keys", landscape.clock)
    with pytest.raises(AuditIntegrityError, match="not signed by this Landscape's key"):
        checkpoint_for(stranger, [run.run_id])


def test_seal_scopes_seals_only_an_uncovered_head(landscape: Landscape, run: SealedRun) -> None:
    def seals(scope: str) -> int:
        return query(landscape, "SELECT count(*) FROM ledger_seals WHERE scope = :s",
                     s=scope)[0][0]
    before = seals(GLOBAL_SCOPE), seals(run.run_id)
    seal_scopes(landscape, [GLOBAL_SCOPE, run.run_id])
    assert (seals(GLOBAL_SCOPE), seals(run.run_id)) == before
    record_policy_snapshot(landscape)
    seal_scopes(landscape, [GLOBAL_SCOPE, run.run_id])
    assert (seals(GLOBAL_SCOPE), seals(run.run_id)) == (before[0] + 1, before[1])

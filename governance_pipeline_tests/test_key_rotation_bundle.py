"""Bundles after a key rotation: they carry keys/ (the keyring with its signed statements and
the public key of every key their signatures need) and ``verify-bundle`` links the signing key
and the checkpoint's sealing keys to the key it trusts.

Tampers, each with its twin: a bundle re-signed with an unknown key; a bundle signed by a key
revoked before the bundle's time (told by the bundle's keyring, or only by the verifier's trust
file); a keyring statement edited in the bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import ExportKind
from governance_pipeline.governance.exports.bundle_dir import write_bundle
from governance_pipeline.governance.exports.bundle_format import KEYRING_FILE
from governance_pipeline.governance.exports.checkpoint import checkpoint_for
from governance_pipeline.governance.exports.proofs import inclusion_proofs
from governance_pipeline.governance.exports.tlog_files import tlog_files
from governance_pipeline.governance.exports.verify_bundle import verify_bundle
from governance_pipeline.governance.key_management import revoke_key, rotate_key
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.signing_keyring import SigningKeyring, build_keyring
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_dir_fixtures import (
    SealedRun,
    clearance_for,
    content_files,
    sealed_run,
)
from governance_pipeline_tests.test_verify_bundle import resign

CLI = Path(sys.executable).with_name("governance-pipeline")


@dataclass
class World:
    landscape: Landscape
    clock: ManualClock
    run: SealedRun
    old: Signer
    new: Signer
    rotated_at: str
    tmp: Path


@pytest.fixture
def world(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> World:
    """A run sealed by the first key, then a rotation: the bundle is written by the new key."""
    run = sealed_run(landscape, clock, tmp_path)
    old = landscape.signer
    clock.advance(60)
    result = rotate_key(landscape, actor="ops")
    clock.advance(60)
    return World(landscape, clock, run, old, landscape.signer, result.rotated_at, tmp_path)


def write(world: World, out: Path, *, signer: Signer | None = None,
          keyring: SigningKeyring | None = None, created_at: str | None = None,
          with_keyring: bool = True) -> Path:
    landscape = world.landscape
    checkpoint = checkpoint_for(landscape, [world.run.run_id, GLOBAL_SCOPE])
    proofs = inclusion_proofs(landscape, world.run.samples, checkpoint)
    subject = world.run.run_id
    write_bundle(out, content_files(subject), kind=ExportKind.EVIDENCE, subject=subject,
                 clearance=clearance_for(subject), signer=signer or landscape.signer,
                 checkpoint=checkpoint, proofs=proofs,
                 created_at=created_at or to_iso(world.clock.now()),
                 tlog=tlog_files(landscape, proofs, checkpoint),
                 keyring=(keyring or landscape.own_keyring()) if with_keyring else None)
    return out


def pem(path: Path, key: PublicKey) -> Path:
    path.write_bytes(key.pem())
    return path


def cli(*args: str | Path) -> tuple[int, dict]:
    proc = subprocess.run([str(CLI), "verify-bundle", *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout)


def key_messages(bundle: Path, *trusted: PublicKey) -> list[str]:
    found = verify_bundle(bundle, trusted_keys=trusted).findings
    assert found
    return [f.message for f in found if f.check == "key"]


def test_a_bundle_after_a_rotation_carries_its_keys_and_verifies_against_the_old_pin(
        world: World) -> None:
    bundle = write(world, world.tmp / "b")
    keyring = json.loads((bundle / KEYRING_FILE).read_bytes())
    assert [r["old_key_id"] for r in keyring["rotations"]] == [world.old.key_id]
    assert {p.name for p in (bundle / "keys").glob("*.pem")} == {
        f"{world.old.key_id}.pem", f"{world.new.key_id}.pem"}
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    assert manifest["key_id"] == world.new.key_id
    assert {s["key_id"] for s in manifest["checkpoint"]["seals"]} >= {world.old.key_id}
    # The verifier pinned the key of before the rotation: the statement links the new one.
    assert verify_bundle(bundle, trusted_key=world.old.public).ok
    assert verify_bundle(bundle, trusted_key=world.new.public).ok
    code, doc = cli(bundle, "--trusted-key", pem(world.tmp / "old.pem", world.old.public))
    assert code == 0 and doc["ok"], doc


def test_a_bundle_re_signed_with_an_unknown_key_is_untrusted(world: World) -> None:
    bundle = write(world, world.tmp / "b")
    assert verify_bundle(bundle, trusted_key=world.old.public).ok  # the twin
    stranger = Signer.generate()
    resign(bundle, stranger, lambda m: m.update(key_id=stranger.key_id))
    messages = key_messages(bundle, world.old.public)
    assert any(f"signed by key {stranger.key_id}" in m and "no rotation statement" in m
               for m in messages), messages
    code, doc = cli(bundle, "--trusted-key", pem(world.tmp / "old.pem", world.old.public))
    assert code == 5 and doc["problem"]["code"] == "GP-BUNDLE-001"
    assert any(f["check"] == "key" and "untrusted key" in f["message"] for f in doc["findings"])


def test_a_bundle_signed_by_the_retired_key_after_the_rotation_is_rejected(
        world: World) -> None:
    before = write(world, world.tmp / "before", signer=world.old,
                   created_at=world.rotated_at)
    assert verify_bundle(before, trusted_key=world.old.public).ok  # the twin: at its last moment
    after = write(world, world.tmp / "after", signer=world.old)
    messages = key_messages(after, world.old.public)
    assert any(f"retired at {world.rotated_at}" in m for m in messages), messages


def test_a_bundle_signed_by_a_key_revoked_before_its_time_is_rejected(world: World) -> None:
    revoke_at = to_iso(world.clock.now())
    revoke_key(world.landscape, world.old.key_id, reason="key leaked", actor="ops",
               at=world.rotated_at)
    world.clock.advance(60)
    assert revoke_at  # the bundle below is dated after both the rotation and the revocation
    forged = write(world, world.tmp / "forged", signer=world.old)
    messages = key_messages(forged, world.old.public)
    assert any("revoked at" in m and "key leaked" in m for m in messages), messages
    honest = write(world, world.tmp / "honest")  # the twin: the active key, same keyring
    assert verify_bundle(honest, trusted_key=world.old.public).ok


def test_the_verifiers_trust_file_revokes_a_key_the_bundle_does_not_mention(
        world: World) -> None:
    # The old key leaked before the rotation. Its thief signs a bundle dated at the rotation
    # (its last valid moment by the bundle's own keyring, stripped of the revocation): the
    # bundle cannot tell; the trust file the operator hands to verifiers can.
    leaked_at = to_iso(datetime.fromisoformat(world.rotated_at) - timedelta(seconds=30))
    revoke_key(world.landscape, world.old.key_id, reason="key leaked", actor="ops",
               at=leaked_at)
    full = world.landscape.own_keyring()
    stripped = build_keyring([world.old.public], full.rotations, [])
    bundle = write(world, world.tmp / "b", signer=world.old, keyring=stripped,
                   created_at=world.rotated_at)
    key_file = pem(world.tmp / "old.pem", world.old.public)
    code, doc = cli(bundle, "--trusted-key", key_file)
    assert code == 0 and doc["ok"], doc  # the twin: only the bare key is trusted
    code, doc = cli(bundle, "--trusted-key", world.landscape.trust_path)
    assert code == 5
    assert any(f["check"] == "key" and f"revoked at {leaked_at}" in f["message"]
               for f in doc["findings"]), doc["findings"]


def test_an_edited_rotation_statement_in_the_bundle_is_rejected(world: World) -> None:
    bundle = write(world, world.tmp / "b")
    doc = json.loads((bundle / KEYRING_FILE).read_bytes())
    doc["rotations"][0]["rotated_at"] = to_iso(world.clock.now())  # extend the old key's life
    (bundle / KEYRING_FILE).write_text(json.dumps(doc))
    resign(bundle, world.new)  # by the genuine active key: digests and signature are right
    found = verify_bundle(bundle, trusted_key=world.old.public).findings
    assert any(f.check == "key" and "did not sign this rotation" in f.message for f in found)
    # With the rotation void, nothing links the new (signing) key to the pinned old one.
    assert any(f.check == "key" and "untrusted key" in f.message for f in found), found
    copy = world.tmp / "twin"
    shutil.copytree(write(world, world.tmp / "b2"), copy)
    resign(copy, world.new)  # the twin: re-signed by the same key, statements untouched
    assert verify_bundle(copy, trusted_key=world.old.public).ok

"""``verify-bundle``: an untouched bundle verifies; the rejection matrix of issue #7 — a flipped
byte in every file, a removed or added file, an edited manifest, a swapped signature or key, a
proof that does not match — each fails with a finding that names the file, in the library, the
in-process CLI (exit 5) and, for a few, a real subprocess with no database configured at all.

Verification needs no database, so one bundle built from a real sealed run (SQLite) serves every
case; the proofs' building is covered on both backends by ``test_inclusion_proofs``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.cli.main import run_cli
from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import NotFoundError
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.governance.exports.checkpoint import checkpoint_for
from governance_pipeline.governance.exports.proofs import inclusion_proofs
from governance_pipeline.governance.exports.verify_bundle import (
    FILE,
    KEY,
    MANIFEST,
    PROOF,
    SIGNATURE,
    verify_bundle,
)
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_dir_fixtures import build_bundle, sealed_run

CLI = Path(sys.executable).with_name("governance-pipeline")
MANIFEST_LISTED = ["bundle.json", "bundle.pdf", "attachments/notes.txt", "proofs.json",
                   "VERIFY.md", "public_key.pem", "proofs/0.tlog-proof",
                   "checkpoints/global.checkpoint", "trust/log.vkey"]
#: Listed too: proofs/1..4.tlog-proof and the run's checkpoint (its name holds the run id).
OTHER_TLOG_FILES = 5


@dataclass
class Bundles:
    good: Path
    other: Path                 # same run and key, another subject
    signer: Signer              # the Landscape's key: sealed the run and signed the bundles
    newer_proofs: list[dict[str, Any]]  # the same records, proven against a later checkpoint


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("bundles")
    clock = ManualClock()
    landscape = Landscape.open(f"sqlite:///{root / 'landscape.db'}", root / "keys", clock=clock)
    try:
        run = sealed_run(landscape, clock, root)
        build_bundle(landscape, run, root / "good")
        build_bundle(landscape, run, root / "other", subject="2024-05")
        clock.advance(60)
        with Recorder(landscape).unit(run.run_id, seal=True):
            pass  # a second seal of the run: a later checkpoint
        newer = checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])
        newer_proofs = inclusion_proofs(landscape, run.samples, newer)
        return Bundles(root / "good", root / "other", landscape.signer, newer_proofs)
    finally:
        landscape.dispose()


@pytest.fixture
def bundle(bundles: Bundles, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundles.good, copy)
    return copy


def resign(bundle: Path, signer: Signer, edit: Callable[[dict[str, Any]], None] = lambda m: None,
           *, key_file: bool = True) -> None:
    """What a holder of ``signer`` can do: recompute every digest, edit, sign again."""
    if key_file:
        (bundle / "public_key.pem").write_bytes(signer.public.pem())
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(),
                                   "size": len(data)}
    edit(manifest)
    body = json_bytes(manifest)
    (bundle / "manifest.json").write_bytes(body)
    (bundle / "manifest.sig").write_bytes((signer.sign(body) + "\n").encode())


def flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


def findings(bundle: Path, trusted: PublicKey | None = None) -> list[tuple[str, str, str]]:
    return [(f.check, f.table, f.message) for f in verify_bundle(bundle, trusted_key=trusted)
            .findings]


def cli(*args: str) -> tuple[int, dict[str, Any]]:
    """The CLI in this process, under --json: (exit code, the one JSON document)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli(["verify-bundle", *args, "--json"])
    return code, json.loads(out.getvalue())


def assert_rejected(bundle: Path, check: str, file: str, text: str,
                    trusted: PublicKey | None = None) -> None:
    found = findings(bundle, trusted)
    assert any(c == check and f == file and text in m for c, f, m in found), found
    args = [str(bundle)]
    if trusted is not None:
        key_file = bundle.parent / "trusted.pem"
        key_file.write_bytes(trusted.pem())
        args += ["--key", str(key_file)]
    code, doc = cli(*args)
    assert code == 5 and doc["ok"] is False and doc["problem"]["code"] == "GP-BUNDLE-001"
    assert any(f["table"] == file and text in f["message"] and f["extra"]["fix"]
               for f in doc["findings"])


# --- must accept ----------------------------------------------------------------------------------
def test_an_untouched_bundle_verifies(bundle: Path, bundles: Bundles) -> None:
    result = verify_bundle(bundle, trusted_key=bundles.signer.public)
    assert result.ok, result.findings
    assert result.files_checked == len(MANIFEST_LISTED) + OTHER_TLOG_FILES
    assert result.proofs_checked == 5
    assert result.key_id == bundles.signer.key_id
    code, doc = cli(str(bundle))
    assert code == 0 and doc["ok"] is True and doc["findings"] == []


# --- must reject: files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", MANIFEST_LISTED)
def test_a_flipped_byte_in_a_listed_file_is_rejected(name: str, bundle: Path) -> None:
    flip(bundle / name)
    assert_rejected(bundle, FILE, name, "altered: its sha256 differs")


def test_a_flipped_byte_in_the_manifest_is_rejected(bundle: Path) -> None:
    flip(bundle / "manifest.json", 0.3)
    found = findings(bundle)
    assert any(f in ("manifest.json", "manifest.sig") for _, f, _ in found), found
    assert cli(str(bundle))[0] == 5


@pytest.mark.parametrize("at", [0.0, 0.5])
def test_a_flipped_byte_in_the_signature_is_rejected(at: float, bundle: Path) -> None:
    flip(bundle / "manifest.sig", at)
    assert_rejected(bundle, SIGNATURE, "manifest.sig", "")


@pytest.mark.parametrize("name", MANIFEST_LISTED + ["manifest.json", "manifest.sig"])
def test_a_removed_file_is_rejected(name: str, bundle: Path) -> None:
    (bundle / name).unlink()
    assert_rejected(bundle, FILE, name, "missing")


@pytest.mark.parametrize("name", ["extra.txt", "attachments/extra.bin", ".hidden",
                                  "nested/deep/new.json"])
def test_an_added_file_is_rejected(name: str, bundle: Path) -> None:
    (bundle / name).parent.mkdir(parents=True, exist_ok=True)
    (bundle / name).write_bytes(b"smuggled")
    assert_rejected(bundle, FILE, name, "unexpected file")


def test_a_symlink_in_the_bundle_is_rejected(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.pdf"
    shutil.move(bundle / "bundle.pdf", outside)
    os.symlink(outside, bundle / "bundle.pdf")
    assert_rejected(bundle, FILE, "bundle.pdf", "symbolic link")


# --- must reject: the manifest --------------------------------------------------------------------
def _edit_manifest(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    edit(manifest)
    (bundle / "manifest.json").write_bytes(json_bytes(manifest))


def test_a_manifest_with_a_changed_digest_is_rejected(bundle: Path) -> None:
    (bundle / "bundle.json").write_bytes(b'{"subject": "forged"}\n')
    _edit_manifest(bundle, lambda m: m["files"]["bundle.json"].update(
        sha256=hashlib.sha256(b'{"subject": "forged"}\n').hexdigest(), size=22))
    assert verify_bundle(bundle).findings  # digests now agree; only the signature catches it
    assert_rejected(bundle, SIGNATURE, "manifest.sig", "invalid signature")
    assert not any(c == FILE for c, _, _ in findings(bundle))


def test_a_manifest_with_a_changed_subject_is_rejected(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m.update(subject="run_someone_else"))
    assert_rejected(bundle, SIGNATURE, "manifest.sig", "invalid signature")


def test_a_manifest_with_an_added_field_is_rejected(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m.update(note="unsigned claim"))
    assert_rejected(bundle, MANIFEST, "manifest.json", "not a bundle manifest")


def test_a_reformatted_manifest_is_rejected(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    (bundle / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))  # same content
    assert_rejected(bundle, SIGNATURE, "manifest.sig", "invalid signature")


def test_a_manifest_that_is_not_json_is_rejected(bundle: Path) -> None:
    (bundle / "manifest.json").write_bytes(b"\xff not json")
    assert_rejected(bundle, MANIFEST, "manifest.json", "not valid JSON")


# --- must reject: signature and key ---------------------------------------------------------------
def test_a_signature_swapped_from_another_bundle_is_rejected(bundle: Path,
                                                             bundles: Bundles) -> None:
    shutil.copy(bundles.other / "manifest.sig", bundle / "manifest.sig")
    assert_rejected(bundle, SIGNATURE, "manifest.sig", "invalid signature")


def test_a_manifest_and_signature_swapped_from_another_bundle_are_rejected(
        bundle: Path, bundles: Bundles) -> None:
    for name in ("manifest.json", "manifest.sig"):
        shutil.copy(bundles.other / name, bundle / name)
    assert_rejected(bundle, FILE, "bundle.json", "altered")


def test_a_different_key_file_is_rejected(bundle: Path) -> None:
    (bundle / "public_key.pem").write_bytes(Signer.generate().public.pem())
    found = findings(bundle)
    assert (FILE, "public_key.pem", "altered: its sha256 differs from the manifest") in found
    assert any(c == KEY and "key_id mismatch" in m for c, _, m in found), found
    assert any(c == SIGNATURE and "invalid signature" in m for c, _, m in found), found
    assert cli(str(bundle))[0] == 5


def test_a_bundle_re_signed_with_another_key_is_an_untrusted_key(bundle: Path,
                                                                 bundles: Bundles) -> None:
    stranger = Signer.generate()
    resign(bundle, stranger, lambda m: m.update(key_id=stranger.key_id))
    with_trust = findings(bundle, bundles.signer.public)
    # The signature is valid for the bundle's own key: only trust can tell it is not theirs.
    assert not any(c in (SIGNATURE, FILE, MANIFEST) for c, _, _ in with_trust), with_trust
    assert any(c == KEY and "untrusted key" in m for c, _, m in with_trust), with_trust
    assert_rejected(bundle, KEY, "public_key.pem", "untrusted key", bundles.signer.public)
    # Without a trusted key, the checkpoint's seals (made by the ledger's key) still give it away.
    without = findings(bundle)
    assert any(c == PROOF and "sealed by key" in m for c, _, m in without), without


def test_a_re_signed_bundle_keeping_the_old_key_id_is_a_key_id_mismatch(bundle: Path) -> None:
    resign(bundle, Signer.generate())  # key file and signature replaced, key_id left as it was
    assert_rejected(bundle, KEY, "manifest.json", "key_id mismatch")


def test_an_unreadable_key_file_is_rejected(bundle: Path) -> None:
    (bundle / "public_key.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnope\n")
    assert_rejected(bundle, KEY, "public_key.pem", "not an Ed25519 public key")


# --- must reject: proofs (re-signed by the legitimate key, so only the proof check can tell) ------
def _edit_proofs(bundle: Path, bundles: Bundles,
                 edit: Callable[[list[dict[str, Any]]], None]) -> None:
    proofs = json.loads((bundle / "proofs.json").read_bytes())
    edit(proofs)
    (bundle / "proofs.json").write_bytes(json_bytes(proofs))
    resign(bundle, bundles.signer)
    assert not any(c in (FILE, SIGNATURE, KEY) for c, _, _ in findings(bundle))


def _edit_record(proofs: list[dict[str, Any]]) -> None:
    record = proofs[1]["record"]
    record["values"][record["columns"].index("status")] = "failed"


def _cut_chain(proofs: list[dict[str, Any]]) -> None:
    del proofs[1]["chain"][0]


def _drop_proof(proofs: list[dict[str, Any]]) -> None:
    del proofs[2]


PROOF_EDITS: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "record content edited": (_edit_record, "record content altered"),
    "chain cut": (_cut_chain, "chain broken"),
    "proof removed": (_drop_proof, "holds 4 proofs, the manifest says 5"),
}


@pytest.mark.parametrize("case", list(PROOF_EDITS))
def test_a_proof_that_does_not_match_is_rejected(case: str, bundle: Path,
                                                 bundles: Bundles) -> None:
    edit, text = PROOF_EDITS[case]
    _edit_proofs(bundle, bundles, edit)
    assert_rejected(bundle, PROOF, "proofs.json", text)


def test_a_proof_against_another_checkpoint_is_rejected(bundle: Path, bundles: Bundles) -> None:
    _edit_proofs(bundle, bundles, lambda proofs: proofs.__setitem__(
        1, bundles.newer_proofs[1]))
    assert_rejected(bundle, PROOF, "proofs.json", "built against another checkpoint")


def test_a_proof_for_a_scope_outside_the_checkpoint_is_rejected(bundle: Path,
                                                                bundles: Bundles) -> None:
    _edit_proofs(bundle, bundles, lambda proofs: proofs[0].update(scope="run_elsewhere"))
    assert_rejected(bundle, PROOF, "proofs.json", "does not cover")


def test_a_path_that_is_not_a_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        verify_bundle(tmp_path / "nothing")
    code, doc = cli(str(tmp_path / "nothing"))
    assert code == 2 and doc["code"] == "GP-INPUT-001"


# --- the real command, with no database anywhere ------------------------------------------------
def run_command(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "empty-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
           "GOVERNANCE_HOME": str(home / "governance"),
           "GOVERNANCE_DB_URL": "postgresql://nobody:wrong@127.0.0.1:1/no_such_db"}
    done = subprocess.run([str(CLI), "verify-bundle", *args], capture_output=True, text=True, check=False,
                          env=env, cwd=home, timeout=120)
    assert not (home / "governance").exists() and not (home / ".governance").exists()
    return done


def test_cli_subprocess_accepts_a_good_bundle_without_any_database(
        bundle: Path, bundles: Bundles, tmp_path: Path) -> None:
    key = tmp_path / "published.pem"
    key.write_bytes(bundles.signer.public.pem())
    done = run_command(str(bundle), "--key", str(key), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout and bundles.signer.key_id in done.stdout
    done = run_command(str(bundle), "--json", tmp_path=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True


@pytest.mark.parametrize("damage", ["flipped pdf byte", "added file", "untrusted key",
                                    "edited proof"])
def test_cli_subprocess_exits_5_with_every_finding(damage: str, bundle: Path, bundles: Bundles,
                                                   tmp_path: Path) -> None:
    key = tmp_path / "published.pem"
    key.write_bytes(bundles.signer.public.pem())
    if damage == "flipped pdf byte":
        flip(bundle / "bundle.pdf")
        expect = "bundle.pdf"
    elif damage == "added file":
        (bundle / "extra.txt").write_bytes(b"x")
        expect = "extra.txt"
    elif damage == "untrusted key":
        stranger = Signer.generate()
        resign(bundle, stranger, lambda m: m.update(key_id=stranger.key_id))
        expect = "untrusted key"
    else:
        _edit_proofs(bundle, bundles, _edit_record)
        expect = "record content altered"
    done = run_command(str(bundle), "--key", str(key), tmp_path=tmp_path)
    assert done.returncode == 5, done.stderr
    assert expect in done.stdout and "fix:" in done.stdout
    assert "error GP-BUNDLE-001" in done.stderr
    as_json = run_command(str(bundle), "--key", str(key), "--json", tmp_path=tmp_path)
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 5 and doc["ok"] is False and doc["findings"]


def test_cli_accepts_a_raw_hex_key_and_refuses_a_bad_one(bundle: Path, bundles: Bundles,
                                                         tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    raw = bundles.signer.public.key.public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
    (tmp_path / "key.hex").write_text(raw.hex() + "\n")
    assert cli(str(bundle), "--key", str(tmp_path / "key.hex"))[0] == 0
    (tmp_path / "bad.hex").write_text("zz")
    code, doc = cli(str(bundle), "--key", str(tmp_path / "bad.hex"))
    assert code == 2 and doc["code"] == "GP-INPUT-002"

"""Writing a bundle directory from a real sealed run (both backends): what lands on disk, the
signed manifest, determinism, the refusals, and VERIFY.md's own standalone check."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import ExportKind
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.governance.exports.bundle_dir import (
    BUNDLE_INPUT_INVALID,
    OUTPUT_NOT_EMPTY,
    write_bundle,
)
from governance_pipeline.governance.exports.checkpoint import Checkpoint, checkpoint_for
from governance_pipeline.governance.exports.proofs import inclusion_proofs
from governance_pipeline.governance.exports.tlog_files import tlog_files
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.bundle_dir_fixtures import (
    SealedRun,
    build_bundle,
    clearance_for,
    content_files,
    sealed_run,
)
from governance_pipeline_tests.engine_fixtures import tree_bytes

OWN_FILES = {"proofs.json", "VERIFY.md", "public_key.pem"}


@pytest.fixture
def run(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> SealedRun:
    return sealed_run(landscape, clock, tmp_path)


def snippet_of(verify_md: str) -> str:
    found = re.search(r"```python\n(.*?)```", verify_md, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_bundle_holds_every_file_with_a_signed_manifest(landscape: Landscape, run: SealedRun,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = build_bundle(landscape, run, out)
    assert verify(landscape).ok  # building a bundle left the audit trail intact
    on_disk = {k: v for k, v in tree_bytes(out).items() if v is not None}
    tlog = {f"proofs/{n}.tlog-proof" for n in range(len(run.samples))} | {
        f"checkpoints/{run.run_id}.checkpoint", "checkpoints/global.checkpoint", "trust/log.vkey"}
    assert set(on_disk) == set(content_files(run.run_id)) | OWN_FILES | tlog | {
        "manifest.json", "manifest.sig", "attestation.intoto.json"}
    body = on_disk["manifest.json"]
    manifest = json.loads(body)
    assert result.bundle_digest == hashlib.sha256(body).hexdigest()
    assert manifest["files"] == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in on_disk.items()
        if name not in ("manifest.json", "manifest.sig", "attestation.intoto.json")}
    assert {k: v.model_dump() for k, v in result.files.items()} == manifest["files"]
    for name, data in content_files(run.run_id).items():
        assert on_disk[name] == data
    assert manifest["kind"] == "evidence" and manifest["subject"] == run.run_id
    assert manifest["created_at"] == "2024-05-01T10:00:00+00:00"
    assert manifest["key_id"] == landscape.signer.key_id == result.key_id
    assert manifest["proof_count"] == len(run.samples)
    assert manifest["checkpoint"] == checkpoint_for(
        landscape, [run.run_id, GLOBAL_SCOPE]).as_dict()
    assert manifest["export_id"].startswith("exp_") and manifest["approval_id"].startswith("apr_")
    key = load_pem_public_key(on_disk["public_key.pem"])
    key.verify(bytes.fromhex(on_disk["manifest.sig"].decode().strip()), body)  # type: ignore[union-attr]
    proofs = json.loads(on_disk["proofs.json"])
    assert [(p["record"]["table"], p["record"]["key"], p["scope"]) for p in proofs] == run.samples
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.tmp")]


def test_the_same_inputs_give_the_same_bytes(landscape: Landscape, run: SealedRun,
                                            tmp_path: Path) -> None:
    checkpoint = checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])
    proofs = inclusion_proofs(landscape, run.samples, checkpoint)
    tlog = tlog_files(landscape, proofs, checkpoint)
    clearance = clearance_for(run.run_id)

    def write(out: Path) -> bytes:
        write_bundle(out, content_files(run.run_id), kind=ExportKind.EVIDENCE,
                     subject=run.run_id, clearance=clearance, signer=landscape.signer,
                     checkpoint=checkpoint, proofs=proofs, created_at="2024-05-01T10:00:00Z",
                     tlog=tlog)
        return (out / "manifest.json").read_bytes()

    assert write(tmp_path / "a") == write(tmp_path / "b")
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")  # Ed25519 is deterministic
    other = write_bundle(tmp_path / "c", content_files(run.run_id), kind=ExportKind.EVIDENCE,
                         subject=run.run_id, clearance=clearance, signer=landscape.signer,
                         checkpoint=checkpoint, proofs=proofs, created_at="2024-05-02T10:00:00Z",
                         tlog=tlog)
    assert other.bundle_digest != hashlib.sha256(write(tmp_path / "d")).hexdigest()


def test_an_existing_empty_directory_is_used(landscape: Landscape, run: SealedRun,
                                            tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    build_bundle(landscape, run, out)
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("occupant", ["file inside", "a file at the path"])
def test_a_non_empty_output_is_refused_and_left_untouched(
        occupant: str, landscape: Landscape, run: SealedRun, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    if occupant == "file inside":
        out.mkdir()
        (out / "old.txt").write_bytes(b"keep me")
    else:
        out.write_bytes(b"keep me")
    before = tree_bytes(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_bundle(landscape, run, out)
    assert caught.value.code is OUTPUT_NOT_EMPTY and caught.value.exit_code == 2
    assert tree_bytes(tmp_path) == before


@pytest.mark.parametrize("name", ["../escape.json", "/abs.json", ".hidden", "a/../b.json",
                                  "a//b.json", "manifest.json", "proofs.json", "VERIFY.md",
                                  "public_key.pem", "manifest.sig", "", "win\\path.json"])
def test_bad_content_file_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        write_bundle(tmp_path / "out", {name: b"x"}, kind=ExportKind.EVIDENCE, subject="run_x",
                     clearance=clearance_for("run_x"), signer=Signer.generate(),
                     checkpoint=Checkpoint(seals=()), proofs=[],
                     created_at="2024-05-01T10:00:00Z")
    assert caught.value.code is BUNDLE_INPUT_INVALID
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_also_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="also the directory"):
        write_bundle(tmp_path / "out", {"a": b"1", "a/b": b"2"}, kind=ExportKind.EVIDENCE,
                     subject="run_x", clearance=clearance_for("run_x"), signer=Signer.generate(),
                     checkpoint=Checkpoint(seals=()), proofs=[],
                     created_at="2024-05-01T10:00:00Z")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mismatch", ["kind", "subject"])
def test_a_clearance_for_another_export_is_refused(mismatch: str, landscape: Landscape,
                                                   run: SealedRun, tmp_path: Path) -> None:
    clearance = clearance_for(run.run_id)
    clearance = replace(clearance, kind=ExportKind.SOC2) if mismatch == "kind" else \
        replace(clearance, subject="run_other")
    with pytest.raises(ConfigError) as caught:
        write_bundle(tmp_path / "out", content_files(run.run_id), kind=ExportKind.EVIDENCE,
                     subject=run.run_id, clearance=clearance, signer=landscape.signer,
                     checkpoint=checkpoint_for(landscape, [run.run_id]), proofs=[],
                     created_at="2024-05-01T10:00:00Z")
    assert caught.value.code is BUNDLE_INPUT_INVALID
    assert not (tmp_path / "out").exists()


def test_a_signer_other_than_the_sealing_key_or_a_foreign_proof_is_refused(
        landscape: Landscape, run: SealedRun, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sealed by key"):
        build_bundle(landscape, run, tmp_path / "out", signer=Signer.generate())
    only_run = checkpoint_for(landscape, [run.run_id])
    global_proofs = inclusion_proofs(landscape, run.samples[-1:],
                                     checkpoint_for(landscape, [GLOBAL_SCOPE]))
    with pytest.raises(ConfigError, match="does not cover"):
        build_bundle(landscape, run, tmp_path / "out", checkpoint=only_run, proofs=global_proofs)
    assert not (tmp_path / "out").exists()


# --- VERIFY.md ------------------------------------------------------------------------------------
def test_verify_md_snippet_accepts_the_bundle_and_rejects_a_flipped_byte(
        landscape: Landscape, run: SealedRun, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    build_bundle(landscape, run, out)
    page = (out / "VERIFY.md").read_text()
    assert landscape.signer.key_id in page and run.run_id in page
    assert "governance-pipeline verify-bundle" in page and "sha256sum" in page
    script = tmp_path / "check.py"
    script.write_text(snippet_of(page))
    assert len(snippet_of(page).splitlines()) <= 22
    ok = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, check=False,
                        timeout=60)
    assert ok.returncode == 0 and "bundle OK" in ok.stdout, ok.stderr
    pdf = out / "bundle.pdf"
    data = bytearray(pdf.read_bytes())
    data[20] ^= 0x01
    pdf.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, check=False,
                         timeout=60)
    assert bad.returncode != 0 and "bundle.pdf: digest differs" in bad.stderr

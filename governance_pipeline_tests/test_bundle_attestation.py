"""The bundle attestation (issue 13 point 3): an in-toto Statement v1 in a DSSE envelope.

An untouched bundle's envelope verifies with our ``verify-bundle`` *and* with securesystemslib
(an independent DSSE implementation from PyPI), and its subjects are exactly the bundle's files.
The rejection matrix — wrong payloadType, tampered payload, signature by another key, a subject
digest that does not match, an extra or a missing file — each has a must-pass twin: the same
edit path with nothing changed (or the change undone) verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.governance.exports.attestation import (
    ATTESTATION_FILE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    pae,
)
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.governance.exports.verify_bundle import ATTESTATION, verify_bundle
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_dir_fixtures import build_bundle, sealed_run


@dataclass
class Built:
    good: Path
    signer: Signer


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("attest")
    clock = ManualClock()
    landscape = Landscape.open(f"sqlite:///{root / 'landscape.db'}", root / "keys", clock=clock)
    try:
        run = sealed_run(landscape, clock, root)
        build_bundle(landscape, run, root / "good")
        return Built(root / "good", landscape.signer)
    finally:
        landscape.dispose()


@pytest.fixture
def bundle(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(built.good, copy)
    return copy


def sslib_key(public: PublicKey) -> SSlibKey:
    raw = public.key.public_bytes_raw()
    return SSlibKey(keyid=public.key_id, keytype="ed25519", scheme="ed25519",
                    keyval={"public": raw.hex()})


def sslib_verifies(bundle: Path, public: PublicKey) -> bool:
    envelope = Envelope.from_dict(json.loads((bundle / ATTESTATION_FILE).read_bytes()))
    try:
        envelope.verify([sslib_key(public)], 1)
    except VerificationError:
        return False
    return envelope.payload_type == PAYLOAD_TYPE


def envelope_of(bundle: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((bundle / ATTESTATION_FILE).read_bytes())
    return doc


def statement_of(bundle: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(envelope_of(bundle)["payload"]))
    return doc


def resign(bundle: Path, signer: Signer, edit: Callable[[dict[str, Any]], None] = lambda s: None,
           *, payload_type: str = PAYLOAD_TYPE) -> None:
    """What a key holder can do: edit the statement, sign the envelope again."""
    doc = statement_of(bundle)
    edit(doc)
    payload = json_bytes(doc)
    sig = bytes.fromhex(signer.sign(pae(payload_type, payload)))
    (bundle / ATTESTATION_FILE).write_bytes(json_bytes({
        "payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(sig).decode()}]}))


def attestation_findings(bundle: Path, trusted: PublicKey | None = None) -> list[tuple[str, str]]:
    return [(f.table, f.message) for f in verify_bundle(bundle, trusted_key=trusted).findings
            if f.check == ATTESTATION]


def assert_attestation_rejected(bundle: Path, file: str, text: str) -> None:
    found = attestation_findings(bundle)
    assert any(f == file and text in m for f, m in found), found


# --- must pass --------------------------------------------------------------------------------------
def test_the_envelope_is_an_in_toto_statement_over_every_file(bundle: Path,
                                                              built: Built) -> None:
    env = envelope_of(bundle)
    assert env["payloadType"] == PAYLOAD_TYPE
    assert [s["keyid"] for s in env["signatures"]] == [built.signer.key_id]
    doc = statement_of(bundle)
    assert doc["_type"] == STATEMENT_TYPE and doc["predicateType"] == PREDICATE_TYPE
    on_disk = {p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in bundle.rglob("*") if p.is_file() and p.name != ATTESTATION_FILE}
    assert {s["name"]: s["digest"]["sha256"] for s in doc["subject"]} == on_disk
    assert {"manifest.json", "manifest.sig", "bundle.json"} <= set(on_disk)
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    predicate = doc["predicate"]
    for field in ("kind", "subject", "export_id", "key_id", "checkpoint", "proof_count"):
        assert predicate[field] == manifest[field]
    assert verify_bundle(bundle, trusted_key=built.signer.public).ok


def test_securesystemslib_verifies_our_envelope_independently(bundle: Path,
                                                              built: Built) -> None:
    assert sslib_verifies(bundle, built.signer.public)
    assert not sslib_verifies(bundle, Signer.generate().public)


@pytest.mark.parametrize("payload_type,payload", [
    (PAYLOAD_TYPE, b'{"_type": "x"}'), ("", b""), ("text/plain; charset=\u00e9", "é\n".encode()),
    ("application/vnd.in-toto+json", bytes(range(256)))])
def test_our_pae_is_byte_identical_to_securesystemslib(payload_type: str, payload: bytes) -> None:
    assert pae(payload_type, payload) == Envelope(payload, payload_type, {}).pae()


def test_re_signing_the_same_statement_with_the_ledger_key_still_verifies(
        bundle: Path, built: Built) -> None:
    resign(bundle, built.signer)  # the twin of every re-signing case below: the helper is sound
    assert attestation_findings(bundle) == [] and sslib_verifies(bundle, built.signer.public)


# --- must reject, each after its twin above ---------------------------------------------------------
def test_a_wrong_payload_type_is_rejected(bundle: Path, built: Built) -> None:
    resign(bundle, built.signer, payload_type="application/json")
    assert_attestation_rejected(bundle, ATTESTATION_FILE, "wrong payloadType")
    assert len(attestation_findings(bundle)) == 1  # the signature itself is valid over its PAE


def test_a_tampered_payload_is_rejected(bundle: Path, built: Built) -> None:
    env = envelope_of(bundle)
    doc = statement_of(bundle)
    doc["predicate"]["subject"] = "another-run"
    env["payload"] = base64.b64encode(json_bytes(doc)).decode()
    (bundle / ATTESTATION_FILE).write_bytes(json_bytes(env))
    assert_attestation_rejected(bundle, ATTESTATION_FILE, "no signature by key")
    assert not sslib_verifies(bundle, built.signer.public)


@pytest.mark.parametrize("keep_keyid", [True, False])
def test_a_signature_by_another_key_is_rejected(bundle: Path, built: Built,
                                                keep_keyid: bool) -> None:
    stranger = Signer.generate()
    resign(bundle, stranger)
    if keep_keyid:
        env = envelope_of(bundle)
        env["signatures"][0]["keyid"] = built.signer.key_id
        (bundle / ATTESTATION_FILE).write_bytes(json_bytes(env))
    assert_attestation_rejected(bundle, ATTESTATION_FILE, "no signature by key")
    assert not sslib_verifies(bundle, built.signer.public)


def test_a_subject_digest_mismatch_is_rejected(bundle: Path, built: Built) -> None:
    def alter(doc: dict[str, Any]) -> None:
        subject = next(s for s in doc["subject"] if s["name"] == "bundle.pdf")
        subject["digest"]["sha256"] = "0" * 64
    resign(bundle, built.signer, alter)  # validly signed, but it lies about a file
    assert sslib_verifies(bundle, built.signer.public)  # DSSE alone cannot tell...
    assert_attestation_rejected(bundle, "bundle.pdf", "subject digest mismatch")  # ...we can


def test_a_changed_file_is_a_subject_digest_mismatch(bundle: Path) -> None:
    (bundle / "attachments" / "notes.txt").write_bytes(b"edited\n")
    assert_attestation_rejected(bundle, "attachments/notes.txt", "subject digest mismatch")


def test_an_extra_file_is_rejected(bundle: Path) -> None:
    (bundle / "extra.txt").write_bytes(b"added after signing\n")
    assert_attestation_rejected(bundle, "extra.txt", "not a subject of the attestation")


def test_an_extra_file_added_to_the_statement_too_is_rejected_by_the_manifest(
        bundle: Path, built: Built) -> None:
    (bundle / "extra.txt").write_bytes(b"added after signing\n")
    resign(bundle, built.signer, lambda d: d["subject"].append(
        {"name": "extra.txt", "digest": {"sha256": hashlib.sha256(
            b"added after signing\n").hexdigest()}}))
    assert attestation_findings(bundle) == []
    result = verify_bundle(bundle)
    assert any(f.table == "extra.txt" and "not listed in the manifest" in f.message
               for f in result.findings), result.findings


@pytest.mark.parametrize("name", ["bundle.pdf", "manifest.sig"])
def test_a_missing_file_is_rejected(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    assert_attestation_rejected(bundle, name, "missing: a subject of the attestation")


def test_a_missing_attestation_is_rejected(bundle: Path) -> None:
    (bundle / ATTESTATION_FILE).unlink()
    assert_attestation_rejected(bundle, ATTESTATION_FILE, "missing: the bundle has no attestation")


def test_a_predicate_that_disagrees_with_the_manifest_is_rejected(bundle: Path,
                                                                  built: Built) -> None:
    resign(bundle, built.signer, lambda d: d["predicate"].update(subject="another-run"))
    assert_attestation_rejected(bundle, ATTESTATION_FILE, "predicate.subject differs")


def test_the_securesystemslib_check_in_the_docs_works(bundle: Path, built: Built,
                                                      tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "evidence.md").read_text()
    section = page.split("## The attestation (in-toto / DSSE)", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    key = tmp_path / "published.pem"
    key.write_bytes(built.signer.public.pem())
    script = tmp_path / "check.py"
    script.write_text(snippet.group(1).replace("BUNDLE_DIR", str(bundle))
                      .replace("PUBLISHED_KEY.pem", str(key)))

    def run() -> int:
        return subprocess.run([sys.executable, str(script)], capture_output=True,
                              timeout=60, check=False).returncode
    assert run() == 0
    (bundle / "extra.txt").write_bytes(b"added\n")
    assert run() != 0

"""tlog-proof files in bundles (issue #13 point 2): one c2sp.org/tlog-proof@v1 file per sampled
record, the checkpoints and the log's vkey, as subjects of the manifest and the attestation;
``verify-bundle`` checks them, naming each tampering (exit 5) next to its must-pass twin.

``TestIndependentCheck`` verifies one proof of a real bundle with code written here from the
specs (signed-note, tlog-checkpoint, tlog-proof, RFC 6962 §2.1.1 and docs/evidence.md for the
leaf), importing nothing of ours: only hashlib, base64, json, zlib, rfc8785 and cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.events import make_event
from governance_pipeline.governance.exports.attestation import open_envelope
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.governance.exports.checkpoint import checkpoint_for, seal_scopes
from governance_pipeline.governance.exports.proofs import RECORD_UNPROVABLE, inclusion_proofs
from governance_pipeline.governance.exports.tlog_files import tlog_files, vkey_lines
from governance_pipeline.governance.exports.verify_bundle import TLOG, verify_bundle
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_dir_fixtures import build_bundle, sealed_run
from governance_pipeline_tests.test_checkpoints_migration import _copy_into_0007
from governance_pipeline_tests.test_migrations import empty_db_url  # noqa: F401 - fixture
from governance_pipeline_tests.test_verify_bundle import cli, resign


@dataclass
class Built:
    good: Path
    signer: Signer
    run_id: str
    newer: dict[str, bytes]   # tlog files of the same records under a later checkpoint of the run


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("tlog")
    clock = ManualClock()
    landscape = Landscape.open(f"sqlite:///{root / 'landscape.db'}", root / "keys", clock=clock)
    try:
        run = sealed_run(landscape, clock, root)
        build_bundle(landscape, run, root / "good")
        clock.advance(60)
        with Recorder(landscape).unit(run.run_id, seal=True) as unit:  # one more entry, sealed
            unit.add(make_event("test.later", scope=run.run_id, source="test", target=None,
                                tenant_id=None, timestamp=unit.now, payload={}))
        newer = checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])
        files = tlog_files(landscape, inclusion_proofs(landscape, run.samples, newer), newer)
        return Built(root / "good", landscape.signer, run.run_id, files)
    finally:
        landscape.dispose()


@pytest.fixture
def bundle(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(built.good, copy)
    return copy


def tlog_findings(bundle: Path, built: Built) -> list[tuple[str, str]]:
    result = verify_bundle(bundle, trusted_key=built.signer.public)
    return [(f.table, f.message) for f in result.findings if f.check == TLOG]


def edit_and_resign(bundle: Path, built: Built, name: str,
                    edit: Callable[[bytes], bytes]) -> None:
    """What the holder of the key does: change one tlog file, re-list and re-sign the manifest
    (only the tlog check can then object)."""
    path = bundle / name
    path.write_bytes(edit(path.read_bytes()))
    resign(bundle, built.signer)


# --- must pass ------------------------------------------------------------------------------------
def test_every_sampled_record_has_a_tlog_proof_listed_and_attested(bundle: Path,
                                                                  built: Built) -> None:
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    names = [f"proofs/{n}.tlog-proof" for n in range(manifest["proof_count"])] + [
        f"checkpoints/{built.run_id}.checkpoint", "checkpoints/global.checkpoint",
        "trust/log.vkey"]
    opened = open_envelope((bundle / "attestation.intoto.json").read_bytes(), built.signer.public)
    for name in names:
        digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        assert manifest["files"][name]["sha256"] == digest
        assert opened.subjects[name] == digest
    for n in range(manifest["proof_count"]):
        text = (bundle / f"proofs/{n}.tlog-proof").read_text()
        assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
        scope = json.loads(base64.b64decode(text.split("\n")[1][len("extra "):]))["scope"]
        assert text.endswith((bundle / f"checkpoints/{scope}.checkpoint").read_text())
    assert verify_bundle(bundle, trusted_key=built.signer.public).ok


def test_resigning_an_unchanged_bundle_changes_nothing(bundle: Path, built: Built) -> None:
    edit_and_resign(bundle, built, "proofs/1.tlog-proof", lambda data: data)
    assert verify_bundle(bundle, trusted_key=built.signer.public).ok


def test_a_proof_rebuilt_against_the_same_checkpoint_verifies(bundle: Path, built: Built,
                                                              tmp_path: Path) -> None:
    # Twin of the swapped checkpoint: the honest proof, written again, is accepted.
    original = (bundle / "proofs/0.tlog-proof").read_bytes()
    edit_and_resign(bundle, built, "proofs/0.tlog-proof", lambda _: original)
    assert tlog_findings(bundle, built) == []


# --- must reject ----------------------------------------------------------------------------------
def _swap_checkpoint(newer: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        head, _, _ = data.partition(b"\n\n")
        return head + b"\n\n" + newer
    return edit


def test_a_proof_carrying_a_checkpoint_of_another_size_is_rejected(bundle: Path,
                                                                   built: Built) -> None:
    newer = built.newer[f"checkpoints/{built.run_id}.checkpoint"]
    edit_and_resign(bundle, built, "proofs/1.tlog-proof", _swap_checkpoint(newer))
    found = tlog_findings(bundle, built)
    assert any(f == "proofs/1.tlog-proof" and m.startswith("proof for another checkpoint")
               for f, m in found), found


def test_a_proof_carrying_the_checkpoint_of_another_scope_is_rejected(bundle: Path,
                                                                      built: Built) -> None:
    other = (bundle / "checkpoints/global.checkpoint").read_bytes()
    edit_and_resign(bundle, built, "proofs/1.tlog-proof", _swap_checkpoint(other))
    found = tlog_findings(bundle, built)
    assert any(f == "proofs/1.tlog-proof" and "another checkpoint" in m for f, m in found), found


def test_a_proof_from_a_later_checkpoint_with_its_checkpoint_file_is_rejected(
        bundle: Path, built: Built) -> None:
    # Both the proof and the scope's checkpoint file replaced by a later, validly signed pair:
    # the signed manifest still names the earlier seal, so the sizes disagree.
    for name in (f"checkpoints/{built.run_id}.checkpoint", "proofs/1.tlog-proof"):
        (bundle / name).write_bytes(built.newer[name])
    resign(bundle, built.signer)
    found = tlog_findings(bundle, built)
    assert any(f == f"checkpoints/{built.run_id}.checkpoint" and m.startswith("tree size ")
               for f, m in found), found


def _edit_hash(data: bytes) -> bytes:
    lines = data.split(b"\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(b"index ")) + 1
    raw = bytearray(base64.b64decode(lines[index]))
    raw[0] ^= 0x01
    lines[index] = base64.b64encode(bytes(raw))
    return b"\n".join(lines)


def test_an_edited_proof_hash_is_rejected(bundle: Path, built: Built) -> None:
    edit_and_resign(bundle, built, "proofs/2.tlog-proof", _edit_hash)
    assert ("proofs/2.tlog-proof", "inclusion proof invalid: it does not lead leaf "
            f"{_index(bundle, 2)} to the root of the checkpoint (size "
            f"{_size(bundle, 2)})") in tlog_findings(bundle, built)


def _index(bundle: Path, n: int) -> int:
    text = (bundle / f"proofs/{n}.tlog-proof").read_text()
    return int(next(line for line in text.split("\n") if line.startswith("index "))[6:])


def _size(bundle: Path, n: int) -> int:
    return int((bundle / f"proofs/{n}.tlog-proof").read_text().split("\n\n", 1)[1].split("\n")[1])


def _edit_extra(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        doc = json.loads(base64.b64decode(lines[1][len(b"extra "):]))
        change(doc)
        lines[1] = b"extra " + base64.b64encode(rfc8785.dumps(doc))
        return b"\n".join(lines)
    return edit


def _status(doc: dict[str, Any]) -> None:
    record = doc["record"]
    record["values"][record["columns"].index("status")] = "failed"


def test_an_edited_extra_record_is_rejected(bundle: Path, built: Built) -> None:
    edit_and_resign(bundle, built, "proofs/1.tlog-proof", _edit_extra(_status))
    messages = [m for f, m in tlog_findings(bundle, built) if f == "proofs/1.tlog-proof"]
    assert "extra shows another record than the bundle's proofs.json entry of the same number" \
        in messages
    assert any("commits another version of node_states" in m for m in messages), messages


def test_an_edited_extra_entry_is_rejected(bundle: Path, built: Built) -> None:
    edit_and_resign(bundle, built, "proofs/1.tlog-proof", _edit_extra(
        lambda doc: doc["entry"].update(created_at="2000-01-01T00:00:00+00:00")))
    messages = [m for f, m in tlog_findings(bundle, built) if f == "proofs/1.tlog-proof"]
    assert any(m.endswith("altered: its header does not hash to its entry_hash")
               for m in messages), messages


def test_a_vkey_of_another_key_is_rejected(bundle: Path, built: Built) -> None:
    other = Signer.generate().public
    origins = [v.split("+", 1)[0] for v in (bundle / "trust/log.vkey").read_text().split()]
    edit_and_resign(bundle, built, "trust/log.vkey",
                    lambda _: vkey_lines(other, origins).encode())
    found = tlog_findings(bundle, built)
    assert [f for f, _ in found] == ["trust/log.vkey"], found


def test_cli_names_the_tlog_finding_with_its_code_and_exits_5(bundle: Path, built: Built) -> None:
    edit_and_resign(bundle, built, "proofs/2.tlog-proof", _edit_hash)
    key = bundle.parent / "trusted.pem"
    key.write_bytes(built.signer.public.pem())
    code, doc = cli(str(bundle), "--key", str(key))
    assert code == 5 and doc["problem"]["code"] == "GP-BUNDLE-001"
    tlog = [f for f in doc["findings"] if f["check"] == "tlog"]
    assert [(f["table"], f["code"]) for f in tlog] == [("proofs/2.tlog-proof", "GP-BUNDLE-006")]


# --- an independent implementation, from the specs ------------------------------------------------
def spec_key_id(name: str, sig_type: int, key: bytes) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + key).digest()[:4]


def spec_verify_note(note: str, vkey: str) -> str:
    """The note text if a signature line of the vkey's key verifies (signed-note, Ed25519)."""
    name, id_hex, blob = vkey.split("+", 2)  # base64 may hold "+"; name and id never do
    raw = base64.b64decode(blob)
    assert raw[0] == 0x01 and spec_key_id(name, 0x01, raw[1:]).hex() == id_hex
    text, _, sigs = note.rpartition("\n\n")
    text += "\n"
    for line in sigs.rstrip("\n").split("\n"):
        dash, key_name, b64 = line.split(" ")
        sig = base64.b64decode(b64)
        if dash == "\u2014" and key_name == name and sig[:4].hex() == id_hex:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            return text
    raise InvalidSignature("no signature line of the key")


def spec_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def spec_root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 6962 §2.1.1 read backwards: rebuild the root from the leaf and its audit path by
    recursing on the split k (largest power of two < n), as the definition of PATH does."""
    def walk(m: int, n: int, proof: list[bytes]) -> bytes:
        if n == 1:
            assert not proof, "audit path longer than the tree is deep"
            return leaf
        k = 1 << ((n - 1).bit_length() - 1)
        sibling, rest = proof[-1], proof[:-1]  # the path is written leaf-first, root-last
        if m < k:
            return spec_node(walk(m, k, rest), sibling)
        return spec_node(sibling, walk(m - k, n - k, rest))
    return walk(index, size, path)


def spec_manifest(data: bytes) -> list[list[str]]:
    """[table, key, record_hash hex] items of a format-2 manifest, as docs/landscape.md lays it
    out byte by byte."""
    assert data[:4] == b"GPM\x02"
    sections, at = int.from_bytes(data[4:6], "big"), 6
    tables = []
    for _ in range(sections):
        size = data[at]
        tables.append((data[at + 1:at + 1 + size].decode("ascii"),
                       int.from_bytes(data[at + 1 + size:at + 5 + size], "big")))
        at += 5 + size
    size = int.from_bytes(data[at:at + 4], "big")
    keys = json.loads(zlib.decompress(data[at + 4:at + 4 + size]))
    digests = data[at + 4 + size:]
    assert len(keys) == sum(n for _, n in tables) and len(digests) == 32 * len(keys)
    names = [name for name, n in tables for _ in range(n)]
    return [[name, key, digests[32 * i:32 * i + 32].hex()]
            for i, (name, key) in enumerate(zip(names, keys))]


def spec_check(proof_text: str, vkeys: list[str]) -> bool:
    head, _, note = proof_text.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    extra = json.loads(base64.b64decode(lines[1].removeprefix("extra ")))
    index = int(lines[2].removeprefix("index "))
    path = [base64.b64decode(h) for h in lines[3:]]
    origin, size, root = note.split("\n")[:3]
    vkey = next(v for v in vkeys if v.split("+")[0] == origin)
    spec_verify_note(note, vkey)  # raises when the checkpoint is not the log's
    # The leaf, as docs/evidence.md defines it from the extra.
    record, entry = extra["record"], extra["entry"]
    record_hash = hashlib.sha256(orjson.dumps([record["table"], *record["values"]])).hexdigest()
    assert extra["manifest_format"] == 2
    manifest = base64.b64decode(extra["manifest"])
    items = spec_manifest(manifest)
    assert len(items) == entry["record_count"]
    assert [i for i in items if i[:2] == [record["table"], record["key"]]][-1][2] == record_hash
    assert hashlib.sha256(manifest).hexdigest() == entry["records_digest"]
    header = {k: entry[k] for k in ("seq", "prev_hash", "records_digest", "record_count",
                                    "created_at")}
    entry_hash = hashlib.sha256(rfc8785.dumps({"v": 1, "scope": extra["scope"], **header}))
    assert entry_hash.hexdigest() == entry["entry_hash"] and index == entry["seq"] - 1
    leaf = hashlib.sha256(b"\x00" + bytes.fromhex(entry["entry_hash"])).digest()
    return spec_root_from_path(leaf, index, int(size), path) == base64.b64decode(root)


class TestIndependentCheck:
    def test_a_real_proof_verifies_with_an_implementation_from_the_spec(self, bundle: Path
                                                                        ) -> None:
        vkeys = (bundle / "trust/log.vkey").read_text().split()
        for n in range(5):
            assert spec_check((bundle / f"proofs/{n}.tlog-proof").read_text(), vkeys), n

    def test_an_edited_proof_hash_is_rejected_by_it(self, bundle: Path) -> None:
        vkeys = (bundle / "trust/log.vkey").read_text().split()
        edited = _edit_hash((bundle / "proofs/2.tlog-proof").read_bytes()).decode()
        assert spec_check(edited, vkeys) is False

    def test_a_checkpoint_signed_by_another_key_is_rejected_by_it(self, bundle: Path) -> None:
        vkeys = (bundle / "trust/log.vkey").read_text().split()
        other = Signer.generate()
        theirs = vkey_lines(other.public, [v.split("+", 1)[0] for v in vkeys]).split()
        with pytest.raises(InvalidSignature):
            spec_check((bundle / "proofs/4.tlog-proof").read_text(), theirs)
        assert spec_check((bundle / "proofs/4.tlog-proof").read_text(), vkeys)


# --- a run sealed before checkpoints existed (revision 0007) --------------------------------------
def test_a_run_sealed_at_0007_gets_tlog_proofs_once_resealed(empty_db_url: str,  # noqa: F811
                                                            tmp_path: Path) -> None:
    clock = ManualClock()
    keys = tmp_path / "keys"
    recorded = Landscape.open(f"sqlite:///{tmp_path / 'recorded.db'}", keys, clock=clock)
    run = sealed_run(recorded, clock, tmp_path)
    _copy_into_0007(recorded, empty_db_url)
    recorded.dispose()
    upgraded = Landscape.open(empty_db_url, keys, clock=clock)
    try:
        scopes = [run.run_id, GLOBAL_SCOPE]
        legacy = checkpoint_for(upgraded, scopes)
        with pytest.raises(ConfigError) as caught:  # no checkpoint yet at the sealed size
            tlog_files(upgraded, inclusion_proofs(upgraded, run.samples, legacy), legacy)
        assert caught.value.code is RECORD_UNPROVABLE
        seal_scopes(upgraded, scopes)  # what an export does first: seals them again
        fresh = checkpoint_for(upgraded, scopes)
        assert [s.seq for s in fresh.seals] == [s.seq for s in legacy.seals]
        build_bundle(upgraded, run, tmp_path / "bundle", checkpoint=fresh)
        assert verify_bundle(tmp_path / "bundle", trusted_key=upgraded.signer.public).ok
    finally:
        upgraded.dispose()

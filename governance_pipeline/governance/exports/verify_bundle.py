"""Check a bundle directory offline: no database, no configuration, only the bundle (and a key).

Every check runs and reports, none stops at the first problem: the manifest parses and is signed
by the key in the bundle, the key is the one its ``key_id`` names (and, when given, a trusted
key or one that the bundle's signed rotation statements in ``keys/keyring.json`` link to a
trusted key, valid when the bundle was made), every listed file is present with its digest and size, no file is added, every
inclusion proof leads its record to the checkpoint's signed seal, and the DSSE/in-toto
attestation is signed by the same key over its PAE, agrees with the manifest and lists every
other file of the bundle with its digest (``_check_attestation``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from governance_pipeline.contracts.errors import (
    ExitCode,
    Finding,
    GovernanceError,
    NotFoundError,
    register,
)
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.governance.exports.attestation import open_envelope
from governance_pipeline.governance.exports.bundle_format import (
    ATTESTATION_FILE,
    KEYRING_FILE,
    MANIFEST_FILE,
    PROOFS_FILE,
    PUBLIC_KEY_FILE,
    SIGNATURE_FILE,
    UNLISTED,
    BundleManifest,
)
from governance_pipeline.governance.exports.proofs import verify_proof
from governance_pipeline.governance.exports.tlog_files import (
    WRITER_DIRS,
    check_tlog_files,
    expected_names,
)
from governance_pipeline.governance.exports.verify_approvals import approval_problems
from governance_pipeline.landscape.key_statements import Revocation, Rotation
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.signing_keyring import (
    KeyProblem,
    PinnedRevocation,
    SigningKeyring,
    build_keyring,
    statements_of,
)

BUNDLE_INVALID = register(
    "GP-BUNDLE-001", "Bundle verification failed",
    "Do not rely on this bundle: each finding names the file and what is wrong. Ask the "
    "producer for a fresh copy (they can re-export it) and check it against their published "
    "public key with --key.",
    ExitCode.INTEGRITY)

TLOG_PROOF_INVALID = register(
    "GP-BUNDLE-006", "A tlog-proof file of the bundle does not prove its record",
    "The finding names the file: a proofs/<n>.tlog-proof whose checkpoint is not the bundle's "
    "signed checkpoint of its scope, whose inclusion proof does not reach the checkpoint's root, "
    "or whose extra does not lead from the record to the proven leaf; or a checkpoints/ or "
    "trust/ file that is not signed by, or is not, the bundle's key. Get an untouched copy of "
    "the bundle from its producer and run `governance-pipeline verify` on the source database.",
    ExitCode.INTEGRITY)

FILE, MANIFEST, SIGNATURE, KEY, PROOF = "file", "manifest", "signature", "key", "proof"
ATTESTATION, APPROVAL, TLOG = "attestation", "approval", "tlog"
#: The content file whose approvals (evidence and SOC 2 bundles) are checked for signatures.
CONTENT_JSON = "bundle.json"

FIXES = {
    FILE: "the file was changed, removed or added after signing: get an untouched copy of the "
          "bundle from its producer",
    MANIFEST: "manifest.json is unreadable or not a bundle manifest: get an untouched copy",
    SIGNATURE: "manifest.json or manifest.sig was changed after signing, or they come from "
               "different bundles: get an untouched copy",
    KEY: "compare the key with the producer's published key (governance-pipeline keys public) "
         "and pass it (or their trust file) with --trusted-key; a bundle signed by any other "
         "key, or by one of their keys outside its validity (retired by a rotation, revoked), "
         "is not theirs",
    PROOF: "the proof does not lead its record to the signed checkpoint: the record or the "
           "ledger excerpt was altered; re-export the bundle and run `governance-pipeline "
           "verify` on the source database",
    ATTESTATION: "attestation.intoto.json does not match the bundle (a file was changed, added or "
                 "removed after signing) or is not signed by the bundle's key: get an untouched "
                 "copy from the producer",
    APPROVAL: "the approval decision is not signed as its ladder requires, or not by a key the "
              "ladder lists: treat the approver's identity as unproven and ask the producer",
    TLOG: "the tlog-proof, checkpoint or log key file does not prove the record against the "
          "bundle's signed checkpoint (docs/evidence.md, tlog-proof files): get an untouched "
          "copy and run `governance-pipeline verify` on the source database",
}
_CODES = {TLOG: TLOG_PROOF_INVALID}


@dataclass(frozen=True)
class BundleVerification:
    path: Path
    findings: list[Finding]
    key_id: str | None
    files_checked: int
    proofs_checked: int
    manifest: BundleManifest | None

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "ok": self.ok, "path": str(self.path), "key_id": self.key_id,
            "kind": m.kind.value if m else None, "subject": m.subject if m else None,
            "export_id": m.export_id if m else None,
            "files_checked": self.files_checked, "proofs_checked": self.proofs_checked,
            "findings": [{**f.as_dict(), "code": _CODES.get(f.check, BUNDLE_INVALID).code}
                         for f in self.findings],
        }


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, check: str, file: str, message: str, *, item: str | None = None,
            **extra: Any) -> None:
        self.findings.append(Finding(check, file, item or file, message, None,
                                     {**extra, "fix": FIXES[check]}))


def _read(path: Path, name: str, report: _Report) -> bytes | None:
    target = path / name
    if target.is_symlink():
        report.add(FILE, name, "is a symbolic link; a bundle holds regular files only")
        return None
    try:
        return target.read_bytes()
    except FileNotFoundError:
        report.add(FILE, name, "missing: the file is listed but not in the bundle")
    except OSError as exc:
        report.add(FILE, name, f"unreadable: {exc.strerror or exc}")
    return None


def verify_bundle(path: Path, *, trusted_key: PublicKey | None = None,
                  trusted_keys: Sequence[PublicKey] = (),
                  revocations: Sequence[PinnedRevocation] = ()) -> BundleVerification:
    """Findings of every problem of the bundle at ``path`` (empty: intact, and signed by a key
    that ``trusted_key`` / ``trusted_keys`` are, or that the bundle's signed rotation statements
    link to them, valid when it signed; ``revocations`` are the verifier's own, e.g. from its
    trust file). Raises ``NotFoundError`` when ``path`` is not a directory."""
    if not path.is_dir():
        raise NotFoundError(f"{path} is not a bundle directory", details={"path": str(path)})
    report = _Report()
    body = _read(path, MANIFEST_FILE, report)
    manifest = _parse_manifest(body, report)
    key = _parse_key(_read(path, PUBLIC_KEY_FILE, report), report)
    _check_signature(body, _read(path, SIGNATURE_FILE, report), key, report)
    if key is not None and manifest is not None and manifest.key_id != key.key_id:
        report.add(KEY, MANIFEST_FILE, f"key_id mismatch: the manifest names key "
                   f"{manifest.key_id}, {PUBLIC_KEY_FILE} holds key {key.key_id}")
    anchors = [k for k in (trusted_key, *trusted_keys) if k is not None]
    keyring = _keyring(path, manifest, anchors or ([key] if key else []), revocations, report)
    signer = _check_signer(key, manifest, anchors, keyring, report)
    files = proofs = 0
    if manifest is not None:
        files = _check_files(path, manifest, report)
        proofs = _check_proofs(path, manifest, keyring, signer, report)
        _check_tlog(path, manifest, keyring, signer, report)
    _check_attestation(path, manifest, signer, report)
    _check_approvals(path, manifest, report)
    return BundleVerification(path, report.findings, key.key_id if key else None, files, proofs,
                              manifest)


def _keyring(path: Path, manifest: BundleManifest | None, anchors: list[PublicKey],
             revocations: Sequence[PinnedRevocation], report: _Report) -> SigningKeyring:
    """The keyring the anchors and the bundle's keys/keyring.json prove (a bundle without the
    file, from before key rotation, has only its own key)."""
    rotations: list[Rotation] = []
    revs: list[Revocation] = []
    problems: list[KeyProblem] = []
    if manifest is not None and KEYRING_FILE in manifest.files and (path / KEYRING_FILE).is_file():
        data = _read(path, KEYRING_FILE, report)
        try:
            doc = json.loads(data) if data is not None else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.add(KEY, KEYRING_FILE, f"not valid JSON: {exc}")
            doc = {}
        rotations, revs, problems = statements_of(doc)
    keyring = build_keyring(anchors, rotations, revs, revocations, problems)
    for problem in keyring.problems:
        report.add(KEY, KEYRING_FILE, problem.message, item=f"{KEYRING_FILE} {problem.item}")
    return keyring


def _check_signer(key: PublicKey | None, manifest: BundleManifest | None,
                  anchors: list[PublicKey], keyring: SigningKeyring,
                  report: _Report) -> PublicKey | None:
    """The key the attestation must be signed by: the bundle's, when the keyring trusts it."""
    if key is None:
        return anchors[0] if anchors else None
    if not keyring.trusts(key.key_id):
        trusted = ", ".join(k.key_id for k in anchors)
        report.add(KEY, PUBLIC_KEY_FILE, f"untrusted key: the bundle is signed by key "
                   f"{key.key_id}, which is not the trusted key {trusted} and which no rotation "
                   f"statement in {KEYRING_FILE} links to it")
        return anchors[0] if anchors else key
    if manifest is not None:
        outside = keyring.check(key.key_id, manifest.created_at)
        if outside is not None:
            report.add(KEY, PUBLIC_KEY_FILE, f"the bundle's signature was {outside}",
                       key_id=key.key_id, created_at=manifest.created_at)
    return key


def _parse_manifest(body: bytes | None, report: _Report) -> BundleManifest | None:
    if body is None:
        return None
    try:
        return BundleManifest.model_validate(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add(MANIFEST, MANIFEST_FILE, f"not valid JSON: {exc}")
    except ValidationError as exc:
        err = exc.errors()[0]
        report.add(MANIFEST, MANIFEST_FILE, f"not a bundle manifest: "
                   f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
    return None


def _parse_key(data: bytes | None, report: _Report) -> PublicKey | None:
    if data is None:
        return None
    try:
        return PublicKey.from_pem(data)
    except (ValueError, TypeError, GovernanceError) as exc:
        report.add(KEY, PUBLIC_KEY_FILE, f"not an Ed25519 public key PEM: {exc}")
    return None


def _check_signature(body: bytes | None, sig: bytes | None, key: PublicKey | None,
                     report: _Report) -> None:
    if body is None or sig is None:
        return
    try:
        signature = sig.decode("ascii").strip()
        bytes.fromhex(signature)
    except (UnicodeDecodeError, ValueError):
        report.add(SIGNATURE, SIGNATURE_FILE, "not a hex-encoded signature")
        return
    if key is None:
        report.add(SIGNATURE, SIGNATURE_FILE, "cannot be checked: the bundle has no usable key")
    elif not key.verify(signature, body):
        report.add(SIGNATURE, SIGNATURE_FILE, f"invalid signature: it does not verify over "
                   f"{MANIFEST_FILE} with key {key.key_id}")


def _present_files(path: Path, report: _Report) -> set[str]:
    found: set[str] = set()
    for directory, dirnames, filenames in os.walk(path):
        base = Path(directory)
        for name in dirnames + filenames:
            full = base / name
            rel = full.relative_to(path).as_posix()
            if full.is_symlink():
                report.add(FILE, rel, "unexpected symbolic link in the bundle")
            elif name in filenames:
                found.add(rel)
    return found


def _check_files(path: Path, manifest: BundleManifest, report: _Report) -> int:
    present = _present_files(path, report)
    listed = set(manifest.files)
    for name in sorted(present - listed - UNLISTED):
        report.add(FILE, name, "unexpected file: not listed in the manifest (added)")
    for name in sorted(UNLISTED & listed):
        report.add(MANIFEST, MANIFEST_FILE, f"lists {name}, which cannot digest itself")
    if PUBLIC_KEY_FILE not in listed:
        report.add(MANIFEST, MANIFEST_FILE, f"does not list {PUBLIC_KEY_FILE}")
    checked = 0
    for name, want in sorted(manifest.files.items()):
        if name in UNLISTED:
            continue
        if name not in present:
            if not (path / name).is_symlink():
                report.add(FILE, name, "missing: the file is listed but not in the bundle")
            continue
        data = _read(path, name, report)
        if data is None:
            continue
        checked += 1
        digest = sha256_hex(data)
        if digest != want.sha256:
            report.add(FILE, name, "altered: its sha256 differs from the manifest",
                       expected=want.sha256, actual=digest)
        elif len(data) != want.size:
            report.add(FILE, name, f"altered: {len(data)} bytes, the manifest says {want.size}")
    return checked


def _check_proofs(path: Path, manifest: BundleManifest, keyring: SigningKeyring,
                  fallback: PublicKey | None, report: _Report) -> int:
    """Each proof against its seal, checked with the seal's key (``fallback``, the bundle's
    trusted key, for a seal whose key the keyring does not trust: its proofs then fail)."""
    if PROOFS_FILE not in manifest.files:
        report.add(MANIFEST, MANIFEST_FILE, f"does not list {PROOFS_FILE}")
        return 0
    target = path / PROOFS_FILE
    if not target.is_file() or target.is_symlink():
        return 0  # reported by the file checks
    try:
        proofs = json.loads(target.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add(PROOF, PROOFS_FILE, f"unreadable: {exc}")
        return 0
    if not isinstance(proofs, list):
        report.add(PROOF, PROOFS_FILE, "not a list of proofs")
        return 0
    if len(proofs) != manifest.proof_count:
        report.add(PROOF, PROOFS_FILE, f"holds {len(proofs)} proofs, the manifest says "
                   f"{manifest.proof_count}")
    for seal in manifest.checkpoint.seals:
        outside = keyring.check(seal.key_id, seal.sealed_at)
        if outside is not None:
            report.add(KEY, MANIFEST_FILE, f"checkpoint seal of scope {seal.scope}: {outside}",
                       item=f"checkpoint {seal.seal_id}", scope=seal.scope)
    for index, proof in enumerate(proofs):
        item = f"{PROOFS_FILE}[{index}]"
        record = proof.get("record") if isinstance(proof, dict) else None
        if isinstance(record, dict):
            item += f" {record.get('table')} {record.get('key')}"
        scope = proof.get("scope") if isinstance(proof, dict) else None
        seal = manifest.checkpoint.seal(scope) if isinstance(scope, str) else None
        if seal is None:
            report.add(PROOF, PROOFS_FILE, f"proof for scope {scope!r}, which the checkpoint "
                       "does not cover", item=item)
            continue
        key = keyring.public(seal.key_id) or fallback
        if key is None:
            report.add(PROOF, PROOFS_FILE, "cannot be checked: no usable public key", item=item)
            continue
        for problem in verify_proof(proof, seal.model_dump(mode="json"), key):
            report.add(PROOF, PROOFS_FILE, problem, item=item, scope=scope)
    return len(proofs)


def _check_tlog(path: Path, manifest: BundleManifest, keyring: SigningKeyring,
                fallback: PublicKey | None, report: _Report) -> None:
    """The tlog-proof files, checkpoints and log key (``tlog_files``): their digests are the
    file checks'; here, that they are the ones the manifest's proofs and checkpoint call for,
    and that each proves its record. Each checkpoint is checked with its seal's key as the
    keyring trusts it (``fallback``, the bundle's trusted key, otherwise: it then fails)."""
    want = expected_names(manifest.proof_count, manifest.checkpoint.scopes)
    listed = {n for n in manifest.files if n.split("/", 1)[0] in WRITER_DIRS}
    for name in sorted(listed - want):
        report.add(TLOG, name, "unexpected tlog file: the manifest's proofs and checkpoint do "
                   "not call for it")
    if fallback is None and not keyring.entries:
        if want:
            report.add(TLOG, sorted(want)[0], "cannot be checked: no usable public key")
        return
    files: dict[str, bytes | None] = {}
    for name in sorted(want):
        target = path / name
        files[name] = target.read_bytes() if target.is_file() and not target.is_symlink() \
            else None
    for name, problem in check_tlog_files(files, manifest.checkpoint.seals,
                                          _json_proofs(path, manifest),
                                          lambda seal: keyring.public(seal.key_id) or fallback):
        report.add(TLOG, name, problem)


def _json_proofs(path: Path, manifest: BundleManifest) -> list[Any]:
    """proofs.json as a list padded to proof_count (its own problems are ``_check_proofs``')."""
    try:
        proofs = json.loads((path / PROOFS_FILE).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        proofs = []
    proofs = proofs if isinstance(proofs, list) else []
    return (proofs + [None] * manifest.proof_count)[:manifest.proof_count]


def _check_attestation(path: Path, manifest: BundleManifest | None, key: PublicKey | None,
                       report: _Report) -> None:
    if not (path / ATTESTATION_FILE).exists():
        report.add(ATTESTATION, ATTESTATION_FILE, "missing: the bundle has no attestation")
        return
    data = _read(path, ATTESTATION_FILE, report)
    if data is None:
        return
    if key is None:
        report.add(ATTESTATION, ATTESTATION_FILE, "cannot be checked: no usable public key")
        return
    opened = open_envelope(data, key)
    for problem in opened.problems:
        report.add(ATTESTATION, ATTESTATION_FILE, problem)
    if opened.statement is None:
        return
    predicate = opened.statement.get("predicate")
    if manifest is not None and isinstance(predicate, dict):
        for field in ("kind", "subject", "export_id", "key_id", "checkpoint"):
            if predicate.get(field) != manifest.model_dump(mode="json")[field]:
                report.add(ATTESTATION, ATTESTATION_FILE, f"predicate.{field} differs from "
                           f"{MANIFEST_FILE}")
    subjects = opened.subjects
    present = {name for name in _present_files(path, _Report()) if name != ATTESTATION_FILE}
    for name in sorted(present - set(subjects)):
        report.add(ATTESTATION, name, "unexpected file: not a subject of the attestation")
    for name, want in sorted(subjects.items()):
        if name not in present:
            report.add(ATTESTATION, name, "missing: a subject of the attestation is not in the "
                       "bundle")
            continue
        digest = sha256_hex((path / name).read_bytes())
        if digest != want:
            report.add(ATTESTATION, name, "subject digest mismatch: its sha256 differs from the "
                       "attestation", expected=want, actual=digest)


def _check_approvals(path: Path, manifest: BundleManifest | None, report: _Report) -> None:
    if manifest is None or CONTENT_JSON not in manifest.files:
        return
    target = path / CONTENT_JSON
    if not target.is_file() or target.is_symlink():
        return  # reported by the file checks
    try:
        doc = json.loads(target.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # not a bundle document of ours (a digest mismatch is reported elsewhere)
    for item, message in approval_problems(doc):
        report.add(APPROVAL, CONTENT_JSON, message, item=item)

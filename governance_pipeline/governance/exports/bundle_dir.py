"""Write a bundle directory: content files, proofs, VERIFY.md, public key, signed manifest and
its DSSE/in-toto attestation.

The bundle appears whole or not at all: everything is written into a temporary directory beside
the target, each file and the directory fsynced, then renamed into place. An existing target is
accepted only when empty. Writing needs an ``ExportClearance`` (issued by the export guard after
it re-checked the approvals), so no surface can write a bundle without passing the guard.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.enums import ExportKind
from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    ConfigError,
    ExitCode,
    OperationalError,
    register,
)
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.governance.exports.attestation import envelope_bytes, statement
from governance_pipeline.governance.exports.bundle_format import (
    ATTESTATION_FILE,
    FORMAT,
    FORMAT_VERSION,
    KEYRING_FILE,
    KEYS_DIR,
    MANIFEST_FILE,
    PROOFS_FILE,
    PUBLIC_KEY_FILE,
    SIGNATURE_FILE,
    VERIFY_FILE,
    BundleManifest,
    FileDigest,
    bad_file_name,
    json_bytes,
    manifest_bytes,
)
from governance_pipeline.governance.exports.checkpoint import Checkpoint
from governance_pipeline.governance.exports.clearance import ExportClearance
from governance_pipeline.governance.exports.tlog_files import expected_names
from governance_pipeline.governance.exports.verify_doc import render_verify_md
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.signing_keyring import SigningKeyring

OUTPUT_NOT_EMPTY = register(
    "GP-BUNDLE-002", "Output directory not empty",
    "Bundles are never written over existing files: choose a new --out directory, or remove "
    "the old bundle first.",
    ExitCode.INVALID_INPUT)
BUNDLE_INPUT_INVALID = register(
    "GP-BUNDLE-005", "The bundle cannot be assembled from what it was given",
    "The message names the problem: a content file name that is not a plain relative path or "
    "that collides with the writer's own files, a clearance for another export kind or subject, "
    "or a checkpoint sealed by another key than the one signing the bundle.",
    ExitCode.INVALID_INPUT)


@dataclass(frozen=True, slots=True)
class BundleResult:
    path: Path
    bundle_digest: str  # sha256 of the manifest.json bytes: what the signature covers
    files: dict[str, FileDigest]  # every file but manifest.json / manifest.sig
    key_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "bundle_digest": self.bundle_digest,
                "key_id": self.key_id,
                "files": {k: v.model_dump() for k, v in sorted(self.files.items())}}


def write_bundle(out_dir: Path, files: Mapping[str, bytes], *, kind: ExportKind, subject: str,
                 clearance: ExportClearance, signer: Signer, checkpoint: Checkpoint,
                 proofs: list[dict[str, Any]], created_at: str,
                 about: Mapping[str, Any] | None = None,
                 tlog: Mapping[str, bytes] | None = None,
                 keyring: SigningKeyring | None = None) -> BundleResult:
    """Write the bundle of ``files`` (name → bytes) into ``out_dir`` atomically.

    ``tlog`` is ``tlog_files.tlog_files(landscape, proofs, checkpoint)``: a tlog-proof per proof,
    the checkpoint of each scope and the log's verifier key; it must hold exactly those.

    ``about`` adds the facts of the bundle's content (period, run and incident ids, policy
    snapshot hash, ledger heads...) to the attestation's predicate. ``keyring`` (the
    Landscape's) lets the checkpoint hold seals of keys retired by a rotation: the bundle then
    carries them in keys/ with the statements linking them to the signer.

    Raises ``ConfigError`` GP-BUNDLE-002 when ``out_dir`` exists and is not empty, GP-BUNDLE-005
    for a bad file name, a clearance for another export, or a checkpoint not sealed by
    ``signer``; ``OperationalError`` GP-IO-001 when the file system fails.
    """
    tlog = dict(tlog or {})
    _check_inputs(files, kind, subject, clearance, signer, checkpoint, proofs, keyring)
    want = expected_names(len(proofs), checkpoint.scopes)
    if set(tlog) != want:
        raise ConfigError(f"the tlog files do not match the proofs and checkpoint: missing "
                          f"{sorted(want - set(tlog))}, unexpected {sorted(set(tlog) - want)}",
                          code=BUNDLE_INPUT_INVALID)
    _refuse_non_empty(out_dir)
    content: dict[str, bytes] = {**files, **tlog}
    if keyring is not None:
        content.update(_key_files(keyring, signer, checkpoint))
    content[PROOFS_FILE] = json_bytes(proofs)
    content[VERIFY_FILE] = render_verify_md(kind=kind.value, subject=subject,
                                            key_id=signer.key_id, created_at=created_at,
                                            export_id=clearance.export_id)
    content[PUBLIC_KEY_FILE] = signer.public.pem()
    digests = {name: FileDigest(sha256=sha256_hex(data), size=len(data))
               for name, data in sorted(content.items())}
    manifest = BundleManifest(
        format=FORMAT, format_version=FORMAT_VERSION, kind=kind, subject=subject,
        export_id=clearance.export_id, approval_id=clearance.approval_id,
        tenant_id=clearance.tenant_id, created_at=created_at, key_id=signer.key_id,
        public_key_file=PUBLIC_KEY_FILE, checkpoint=checkpoint, proof_count=len(proofs),
        files=digests)
    body = manifest_bytes(manifest)
    content[MANIFEST_FILE] = body
    content[SIGNATURE_FILE] = (signer.sign(body) + "\n").encode("ascii")
    content[ATTESTATION_FILE] = envelope_bytes(statement(
        {name: sha256_hex(data) for name, data in content.items()},
        predicate(manifest, about or {})), signer)
    _write_atomically(out_dir, content)
    return BundleResult(out_dir, sha256_hex(body), digests, signer.key_id)


def predicate(manifest: BundleManifest, about: Mapping[str, Any]) -> dict[str, Any]:
    """The attestation's predicate: the manifest's facts (but its file list, which the
    statement's subjects carry) and what the caller says about the content."""
    facts = manifest.model_dump(mode="json", exclude={"files", "format", "public_key_file"})
    return {**dict(about), **facts}


def _key_files(keyring: SigningKeyring, signer: Signer,
               checkpoint: Checkpoint) -> dict[str, bytes]:
    """keys/keyring.json and keys/<key_id>.pem of every key the bundle's signatures need."""
    out = {KEYRING_FILE: json_bytes(keyring.document())}
    for key_id in sorted({signer.key_id, *(s.key_id for s in checkpoint.seals)}):
        public = signer.public if key_id == signer.key_id else keyring.public(key_id)
        if public is not None:
            out[f"{KEYS_DIR}/{key_id}.pem"] = public.pem()
    return out


def _check_inputs(files: Mapping[str, bytes], kind: ExportKind, subject: str,
                  clearance: ExportClearance, signer: Signer, checkpoint: Checkpoint,
                  proofs: list[dict[str, Any]], keyring: SigningKeyring | None) -> None:
    for name in files:
        why = bad_file_name(name)
        if why:
            raise ConfigError(f"bundle file name {name!r} {why}", code=BUNDLE_INPUT_INVALID)
    names = set(files)
    for name in names:  # a file cannot also be a directory of the bundle
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        while parent:
            if parent in names:
                raise ConfigError(f"bundle file {parent!r} is also the directory of {name!r}",
                                  code=BUNDLE_INPUT_INVALID)
            parent = parent.rsplit("/", 1)[0] if "/" in parent else None
    if clearance.kind is not kind or clearance.subject != subject:
        raise ConfigError(f"the clearance is for {clearance.kind.value} {clearance.subject}, "
                          f"not for {kind.value} {subject}", code=BUNDLE_INPUT_INVALID)
    others = sorted(s.key_id for s in checkpoint.seals if s.key_id != signer.key_id and (
        keyring is None or keyring.check(s.key_id, s.sealed_at) is not None))
    if others:
        raise ConfigError(f"the checkpoint was sealed by key(s) {', '.join(others)}, the bundle "
                          f"is signed by {signer.key_id} and no keyring links them (valid at "
                          "their seal times)", code=BUNDLE_INPUT_INVALID)
    scopes = set(checkpoint.scopes)
    for proof in proofs:
        if proof.get("scope") not in scopes:
            raise ConfigError(f"a proof is for scope {proof.get('scope')!r}, which the "
                              "checkpoint does not cover", code=BUNDLE_INPUT_INVALID)


def _refuse_non_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty directory",
                          code=OUTPUT_NOT_EMPTY, details={"path": str(out_dir)})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(out_dir: Path, content: Mapping[str, bytes]) -> None:
    parent = out_dir.parent
    tmp = parent / f".{out_dir.name}.tmp-{secrets.token_hex(6)}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        directories = {tmp}
        for name, data in sorted(content.items()):
            path = tmp / name
            if path.parent not in directories:
                path.parent.mkdir(parents=True, exist_ok=True)
                directories.add(path.parent)
            with open(path, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            _fsync_dir(directory)
        try:
            os.replace(tmp, out_dir)  # an empty existing directory is replaced; a full one not
        except OSError as exc:
            if out_dir.is_dir() and any(out_dir.iterdir()):
                raise ConfigError(f"{out_dir} was filled while the bundle was being written",
                                  code=OUTPUT_NOT_EMPTY, details={"path": str(out_dir)}) from exc
            raise
        _fsync_dir(parent)
    except OSError as exc:
        raise OperationalError(f"cannot write bundle {out_dir}: {exc}",
                               code=FILE_IO_FAILED) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

"""The on-disk form of a bundle directory, shared by its writer and its offline verifier.

```
<bundle>/
  <content files>     e.g. bundle.json, bundle.pdf (named by the export)
  proofs.json         inclusion proofs of the sampled audit records
  proofs/<n>.tlog-proof   the same proofs as c2sp.org/tlog-proof@v1 files (exports.tlog_files)
  checkpoints/<scope>.checkpoint  each scope's signed checkpoint (c2sp.org/tlog-checkpoint)
  trust/log.vkey      the signed-note verifier key(s) of those checkpoints
  VERIFY.md           how to check the bundle offline
  public_key.pem      the Ed25519 key that signed manifest.sig (and the attestation)
  keys/keyring.json   every signing key of the Landscape with the signed rotation and revocation
                      statements that link them (how a verifier trusting one key trusts the rest)
  keys/<key_id>.pem   the public key of the signer and of every key that sealed the checkpoint
  manifest.json       sha256 + size of every file above, the checkpoint, who cleared the export
  manifest.sig        hex Ed25519 signature over the exact bytes of manifest.json
  attestation.intoto.json  DSSE envelope of an in-toto Statement v1 over every file above
```
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance_pipeline.contracts.enums import ExportKind
from governance_pipeline.governance.exports.checkpoint import Checkpoint

FORMAT = "governance-pipeline-bundle"
FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
PROOFS_FILE = "proofs.json"
VERIFY_FILE = "VERIFY.md"
PUBLIC_KEY_FILE = "public_key.pem"
ATTESTATION_FILE = "attestation.intoto.json"  # see exports.attestation
KEYS_DIR = "keys"
KEYRING_FILE = f"{KEYS_DIR}/keyring.json"
#: Files the bundle writer makes itself; content files may not take these names.
RESERVED = frozenset({MANIFEST_FILE, SIGNATURE_FILE, PROOFS_FILE, VERIFY_FILE, PUBLIC_KEY_FILE,
                      ATTESTATION_FILE})
#: Directories the bundle writer fills itself (exports.tlog_files); no content file lives there.
WRITER_DIRS = ("proofs", "checkpoints", "trust")
#: Files outside the manifest: the manifest itself, its signature and the attestation (whose
#: subjects cover the manifest and its signature in turn).
UNLISTED = frozenset({MANIFEST_FILE, SIGNATURE_FILE, ATTESTATION_FILE})


class FileDigest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class BundleManifest(BaseModel):
    """What ``manifest.sig`` signs. Unknown fields are refused: nothing unsigned can be added."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["governance-pipeline-bundle"]
    format_version: Literal[1]
    kind: ExportKind
    subject: str
    export_id: str
    approval_id: str
    tenant_id: str
    created_at: str
    key_id: str
    public_key_file: Literal["public_key.pem"]
    checkpoint: Checkpoint
    proof_count: int = Field(ge=0)
    files: dict[str, FileDigest]


def manifest_bytes(manifest: BundleManifest) -> bytes:
    """Deterministic, readable bytes: sorted keys, two-space indent, one trailing newline."""
    return json_bytes(manifest.model_dump(mode="json"))


def json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def bad_file_name(name: str) -> str:
    """Why ``name`` cannot name a content file ('' when it can): a relative POSIX path inside the
    bundle, no hidden or parent parts, not one of the writer's own files."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or str(path) != name:
        return "must be a normalised relative POSIX path"
    if any(part in ("", ".", "..") or part.startswith(".") for part in path.parts):
        return "must not have hidden, '.' or '..' parts"
    if name in RESERVED or path.parts[0] in (*WRITER_DIRS, KEYS_DIR):
        return "is a name the bundle writer uses itself"
    return ""

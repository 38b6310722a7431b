"""Which public key ``verify`` trusts, and where that trust comes from.

The signing key lives in ``$GOVERNANCE_HOME/keys``; whoever can replace it can re-sign every
seal consistently, so ``verify`` never trusts that directory. It trusts the key *pinned* in a
trust file kept apart from it (``$GOVERNANCE_TRUSTED_KEYS``, default
``$GOVERNANCE_HOME/trusted_keys.json``), or a key the caller names (``--public-key``). The first
key a home creates is pinned at that moment (trust on first use); any later key is trusted only
once an operator pins it (``governance-pipeline keys pin``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governance_pipeline.contracts.errors import ExitCode, GovernanceError, register
from governance_pipeline.contracts.settings import TRUST_FILE_NAME
from governance_pipeline.landscape.keys import (
    PRIVATE_KEY_FILE,
    KeySource,
    PublicKey,
    Signer,
    load_signer,
)
from governance_pipeline.landscape.signing_keyring import PinnedRevocation

TRUST_FILE_INVALID = register(
    "GP-KEY-002", "The trust file pinning the verify key cannot be used",
    "The file named by GOVERNANCE_TRUSTED_KEYS (default $GOVERNANCE_HOME/trusted_keys.json) must "
    "be the JSON that `governance-pipeline keys pin` writes; restore it from your copy, or pin "
    "the published key again with `keys pin --public-key FILE --replace`.",
    ExitCode.INVALID_INPUT)
KEY_ALREADY_PINNED = register(
    "GP-KEY-003", "Another key is already pinned",
    "A pinned key is replaced only on purpose: check that the new key is genuine (its key id is "
    "in the message), then run `governance-pipeline keys pin ... --replace`; seals made by the "
    "old key then verify only with `verify --public-key OLD.pem`.",
    ExitCode.INVALID_INPUT)
KEY_NOT_PINNED = register(
    "GP-KEY-004", "No pinned key to verify against",
    "The signing key exists but no trust file pins a key, so a swapped key could not be told "
    "apart. If you know this home's key is the original, pin it: `governance-pipeline keys pin`;"
    " else pin the published key (`keys pin --public-key FILE`) or pass `verify --public-key`.",
    ExitCode.INTEGRITY)


class PinnedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="raw Ed25519 key, hex")
    pinned_at: str
    note: str = ""

    def public(self) -> PublicKey:
        key = PublicKey(Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_key)))
        if key.key_id != self.key_id:
            raise ValueError(f"key_id {self.key_id} is not the id of its public_key "
                             f"({key.key_id})")
        return key


class RevokedKey(BaseModel):
    """A revocation the operator holds outside the database: it applies even if the database's
    signed revocation statement is deleted (``keys revoke`` writes both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    revoked_at: str
    reason: str
    noted_at: str


class TrustFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # 2 adds ``revocations``; a version-1 file reads as one without any.
    version: int = Field(default=1, ge=1, le=2)
    keys: list[PinnedKey] = Field(min_length=1)
    revocations: list[RevokedKey] = Field(default_factory=list)


@dataclass(frozen=True)
class TrustedKey:
    """The key verify checks seals against, and a sentence saying why it is trusted."""

    key: PublicKey
    source: str      # "pinned" or "--public-key"
    location: str    # the trust file or the key file

    def describe(self) -> str:
        how = (f"pinned in {self.location}" if self.source == "pinned"
               else f"given by --public-key {self.location}")
        return f"key {self.key.key_id} ({how})"

    def as_dict(self) -> dict[str, str]:
        return {"key_id": self.key.key_id, "source": self.source, "location": self.location}


def default_trust_file(keys_dir: Path) -> Path:
    return keys_dir.parent / TRUST_FILE_NAME


def read_trust_file(path: Path) -> list[tuple[PinnedKey, PublicKey]] | None:
    """The pinned keys, newest last; None when there is no trust file."""
    doc = read_trust_doc(path)
    return None if doc is None else [(pinned, pinned.public()) for pinned in doc.keys]


def read_trust_doc(path: Path) -> TrustFile | None:
    """The whole trust file (its keys checked against their ids); None when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GovernanceError(f"cannot read the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    try:
        doc = TrustFile.model_validate(orjson.loads(data))
        for pinned in doc.keys:
            pinned.public()
        return doc
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        raise GovernanceError(f"trust file {path} is not valid: {exc}",
                              code=TRUST_FILE_INVALID) from exc


def _write(path: Path, doc: TrustFile, *, exclusive: bool) -> bool:
    """Write atomically; with ``exclusive``, only if no trust file exists (False if one did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(doc.model_dump(), option=orjson.OPT_INDENT_2) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the name is taken: of two racers one pins
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _entry(key: PublicKey, note: str) -> PinnedKey:
    raw = key.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PinnedKey(key_id=key.key_id, public_key=raw.hex(), note=note,
                     pinned_at=datetime.now(UTC).isoformat(timespec="seconds"))


def pin_first_key(path: Path, key: PublicKey) -> bool:
    """Pin ``key`` if nothing is pinned yet (called when a home creates its first key)."""
    try:
        return _write(path, TrustFile(keys=[_entry(key, "pinned when the key was created")]),
                      exclusive=True)
    except OSError:
        # The operator may keep the trust file read-only or elsewhere: never fail the key
        # creation over it; verify then says that nothing is pinned.
        return False


def pin_key(path: Path, key: PublicKey, *, replace: bool, note: str) -> bool:
    """Pin ``key`` (True) or find it pinned already (False); another pinned key needs
    ``replace``, which keeps only ``key``."""
    pinned = read_trust_file(path)
    if pinned is not None:
        if any(p.key_id == key.key_id for p, _ in pinned):
            return False
        if not replace:
            held = ", ".join(p.key_id for p, _ in pinned)
            raise GovernanceError(f"{path} pins key {held}, not {key.key_id}",
                                  code=KEY_ALREADY_PINNED,
                                  details={"pinned": held, "key_id": key.key_id})
    old = read_trust_doc(path)
    kept = [] if old is None else list(old.revocations)
    try:
        _write(path, TrustFile(version=2 if kept else 1, keys=[_entry(key, note)],
                               revocations=kept), exclusive=False)
    except OSError as exc:
        raise GovernanceError(f"cannot write the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    return True


def add_pinned_key(path: Path, key: PublicKey, note: str) -> bool:
    """Pin ``key`` beside the keys pinned already (True), or find it pinned (False)."""
    doc = read_trust_doc(path)
    if doc is None:
        return pin_key(path, key, replace=False, note=note)
    if any(p.key_id == key.key_id for p in doc.keys):
        return False
    try:
        _write(path, TrustFile(version=doc.version, keys=[*doc.keys, _entry(key, note)],
                               revocations=doc.revocations), exclusive=False)
    except OSError as exc:
        raise GovernanceError(f"cannot write the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    return True


def pin_revocation(path: Path, key_id: str, revoked_at: str, reason: str) -> bool:
    """Add a revocation to the trust file (True), or find it there (False). Never creates
    a trust file: with none, nothing is pinned that the revocation could restrict."""
    doc = read_trust_doc(path)
    if doc is None:
        raise GovernanceError(f"no trust file at {path} to record the revocation in",
                              code=TRUST_FILE_INVALID, details={"trust_file": str(path)})
    if any(r.key_id == key_id and r.revoked_at == revoked_at for r in doc.revocations):
        return False
    entry = RevokedKey(key_id=key_id, revoked_at=revoked_at, reason=reason,
                       noted_at=datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        _write(path, TrustFile(version=2, keys=doc.keys,
                               revocations=[*doc.revocations, entry]), exclusive=False)
    except OSError as exc:
        raise GovernanceError(f"cannot write the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    return True


@dataclass(frozen=True)
class TrustAnchors:
    """What the verifier trusts of its own: pinned keys (or one given key) and pinned
    revocations. Everything else is linked to them through signed statements."""

    keys: list[PublicKey]
    revocations: list[PinnedRevocation]
    source: TrustedKey

    @classmethod
    def of(cls, trusted: TrustedKey, trust_file: Path | None) -> TrustAnchors:
        """The anchors of ``trusted``: every key of the trust file when it is the pinned one,
        and the trust file's revocations in either case."""
        doc = read_trust_doc(trust_file) if trust_file is not None else None
        revs = [PinnedRevocation(r.key_id, r.revoked_at, r.reason)
                for r in (doc.revocations if doc else [])]
        if trusted.source == "pinned" and doc is not None:
            return cls([p.public() for p in doc.keys], revs, trusted)
        return cls([trusted.key], revs, trusted)


def pinned_key(trust_file: Path, keys_dir: Path) -> TrustedKey:
    """The key verify trusts by default: the pinned one (of several, the newest).

    Raises ``KEY_NOT_PINNED`` when a signing key exists but nothing is pinned; when neither
    exists, the caller creates (and so pins) the first key before asking.
    """
    pinned = read_trust_file(trust_file)
    if pinned is None:
        raise GovernanceError(
            f"no trust file at {trust_file}, but the signing key "
            f"{keys_dir / PRIVATE_KEY_FILE} exists: nothing says it is the key that made the "
            "seals", code=KEY_NOT_PINNED, details={"trust_file": str(trust_file)})
    return TrustedKey(pinned[-1][1], "pinned", str(trust_file))


def explicit_key(key: PublicKey, path: Path) -> TrustedKey:
    return TrustedKey(key, "--public-key", str(path))


def load_or_create_pinned_signer(keys_dir: Path, trust_file: Path,
                                 source: KeySource | None = None) -> Signer:
    """The home's signing key (from ``source``, default keys/); a key created now is pinned if
    nothing is pinned yet."""
    source = source or KeySource(keys_dir)
    existed = source.exists()
    signer = load_signer(source)
    if not existed:
        pin_first_key(trust_file, signer.public)
    return signer

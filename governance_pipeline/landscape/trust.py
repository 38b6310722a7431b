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
    PublicKey,
    Signer,
    load_or_create_signer,
)

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


class TrustFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    keys: list[PinnedKey] = Field(min_length=1)


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
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GovernanceError(f"cannot read the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    try:
        doc = TrustFile.model_validate(orjson.loads(data))
        return [(pinned, pinned.public()) for pinned in doc.keys]
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
    try:
        _write(path, TrustFile(keys=[_entry(key, note)]), exclusive=False)
    except OSError as exc:
        raise GovernanceError(f"cannot write the trust file {path}: {exc.strerror}",
                              code=TRUST_FILE_INVALID) from exc
    return True


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


def load_or_create_pinned_signer(keys_dir: Path, trust_file: Path) -> Signer:
    """The home's signing key; a key created now is pinned if nothing is pinned yet."""
    existed = (keys_dir / PRIVATE_KEY_FILE).exists()
    signer = load_or_create_signer(keys_dir)
    if not existed:
        pin_first_key(trust_file, signer.public)
    return signer

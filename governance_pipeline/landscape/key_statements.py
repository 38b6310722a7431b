"""Signed key statements: a rotation (old key → new key, at a time) and a revocation.

A rotation is signed by *both* keys over the same canonical bytes: the old key says "my
successor is this key from this moment", the new key proves it holds its private half. So a
verifier that trusts either key can trust the other, for the window the statement gives it, and
nobody can name a successor without the old key. A revocation names a key and a moment after
which nothing it signs is accepted, with a reason; it is signed by the key that was active when
it was made (or by the revoked key itself).

The statements are plain data (JSON-safe dicts of scalars): the Landscape keeps each as the
inputs of its ``keys.rotate`` / ``keys.revoke`` operator-log entry (so the global chain covers
it), bundles carry them in ``keys/keyring.json``, and anyone can check them offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.landscape.keys import PublicKey, Signer

ROTATION = "governance-pipeline/key-rotation/v1"
REVOCATION = "governance-pipeline/key-revocation/v1"


def moment(text: Any) -> datetime | None:
    """An ISO 8601 timestamp with a zone as a datetime, else None (never compared as text)."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _public(hex_key: Any, key_id: Any) -> tuple[PublicKey | None, str]:
    try:
        key = PublicKey.from_raw(bytes.fromhex(str(hex_key)))
    except ValueError as exc:
        return None, f"public key {hex_key!r:.20} is not a raw Ed25519 key: {exc}"
    if key.key_id != key_id:
        return None, f"key id {key_id} is not the id of its public key ({key.key_id})"
    return key, ""


@dataclass(frozen=True, slots=True)
class Rotation:
    old_key_id: str
    old_public_key: str   # raw Ed25519, hex
    new_key_id: str
    new_public_key: str
    rotated_at: str
    old_signature: str    # hex Ed25519 over message(), by the old key
    new_signature: str    # the same, by the new key
    origin: str = ""      # where it was read (operator event id, bundle item): not signed

    def message(self) -> bytes:
        return canonical_json({"type": ROTATION, "old_key_id": self.old_key_id,
                               "old_public_key": self.old_public_key,
                               "new_key_id": self.new_key_id,
                               "new_public_key": self.new_public_key,
                               "rotated_at": self.rotated_at})

    @classmethod
    def make(cls, old: Signer, new: Signer, rotated_at: str) -> Rotation:
        unsigned = cls(old.key_id, old.public.raw.hex(), new.key_id, new.public.raw.hex(),
                       rotated_at, "", "")
        message = unsigned.message()
        return cls(unsigned.old_key_id, unsigned.old_public_key, unsigned.new_key_id,
                   unsigned.new_public_key, rotated_at, old.sign(message), new.sign(message))

    def problems(self) -> list[str]:
        """Why this statement proves nothing ([] when both keys signed it)."""
        old, why_old = _public(self.old_public_key, self.old_key_id)
        new, why_new = _public(self.new_public_key, self.new_key_id)
        found = [w for w in (why_old, why_new) if w]
        if moment(self.rotated_at) is None:
            found.append(f"rotated_at {self.rotated_at!r} is not a timestamp with a zone")
        if old is not None and not old.verify(self.old_signature, self.message()):
            found.append(f"the old key {self.old_key_id} did not sign this rotation")
        if new is not None and not new.verify(self.new_signature, self.message()):
            found.append(f"the new key {self.new_key_id} did not sign this rotation")
        if self.old_key_id == self.new_key_id:
            found.append("the rotation names the same key twice")
        return found

    def as_inputs(self) -> dict[str, str]:
        return {"statement": ROTATION,
                **{k: v for k, v in asdict(self).items() if k != "origin"}}

    @classmethod
    def from_inputs(cls, data: Mapping[str, Any], origin: str) -> Rotation:
        return cls(**_strings(cls, data), origin=origin)


@dataclass(frozen=True, slots=True)
class Revocation:
    key_id: str
    public_key: str
    revoked_at: str       # nothing the key signs after this moment is accepted
    reason: str
    recorded_at: str      # when the revocation was made (revoked_at may be earlier)
    signed_by: str        # key id of the signer
    signature: str
    origin: str = ""

    def message(self) -> bytes:
        return canonical_json({"type": REVOCATION, "key_id": self.key_id,
                               "public_key": self.public_key, "revoked_at": self.revoked_at,
                               "reason": self.reason, "recorded_at": self.recorded_at,
                               "signed_by": self.signed_by})

    @classmethod
    def make(cls, key: PublicKey, revoked_at: str, reason: str, recorded_at: str,
             signer: Signer) -> Revocation:
        unsigned = cls(key.key_id, key.raw.hex(), revoked_at, reason, recorded_at,
                       signer.key_id, "")
        return cls(unsigned.key_id, unsigned.public_key, revoked_at, reason, recorded_at,
                   signer.key_id, signer.sign(unsigned.message()))

    def problems(self, signer: PublicKey | None) -> list[str]:
        """Why this revocation proves nothing; ``signer`` is the key ``signed_by`` names."""
        _, why = _public(self.public_key, self.key_id)
        found = [why] if why else []
        if moment(self.revoked_at) is None or moment(self.recorded_at) is None:
            found.append("revoked_at / recorded_at are not timestamps with a zone")
        if signer is None:
            found.append(f"signed by key {self.signed_by}, which the keyring does not trust")
        elif not signer.verify(self.signature, self.message()):
            found.append(f"the signature of key {self.signed_by} does not verify")
        return found

    def as_inputs(self) -> dict[str, str]:
        return {"statement": REVOCATION,
                **{k: v for k, v in asdict(self).items() if k != "origin"}}

    @classmethod
    def from_inputs(cls, data: Mapping[str, Any], origin: str) -> Revocation:
        return cls(**_strings(cls, data), origin=origin)


def _strings(cls: type, data: Mapping[str, Any]) -> dict[str, str]:
    names = [f.name for f in fields(cls) if f.name != "origin"]
    missing = [n for n in names if not isinstance(data.get(n), str)]
    if missing:
        raise ValueError(f"not a {cls.__name__.lower()} statement: {', '.join(missing)} "
                         "missing or not text")
    return {n: data[n] for n in names}

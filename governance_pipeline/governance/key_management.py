"""Rotating and revoking the signing key, and the keyring table ``keys list`` shows.

``rotate_key`` makes a new Ed25519 key, has the old *and* the new key sign the rotation
statement (``landscape.key_statements``) and commits it as the inputs of the ``keys.rotate``
operator-log entry in the global chain, sealed by the old key at exactly the rotation time.
Only then is the new private key moved into place (written beforehand as ``<key file>.next``, so
an interrupted rotation leaves it there, and the retired key is refused: GP-KEY-005). The old
private key is destroyed unless ``keep_old_key``: nothing needs it to verify, and a retired key
that can still sign is a key that can still backdate.

``revoke_key`` ends a retired key's validity at a moment (``at``: when it may have been
compromised, default now): the active key signs the revocation, the operator log records it,
and the trust file records it too, so it applies even if the database forgets it. A revocation
dated before the key's own rotation also pins the active key in the trust file: the rotation
was signed after the compromise, so only the pin vouches for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.governance.operator_log import OperatorAction, operator_action
from governance_pipeline.landscape.key_errors import (
    KEY_ALREADY_REVOKED,
    KEY_UNKNOWN,
    NEW_KEY_FILE_EXISTS,
    REVOCATION_TIME_INVALID,
    REVOKE_ACTIVE_KEY,
    ROTATE_TARGET_UNKNOWN,
    SIGNING_KEY_RETIRED,
    SIGNING_KEY_UNTRUSTED,
)
from governance_pipeline.landscape.key_statements import Revocation, Rotation, moment
from governance_pipeline.landscape.keys import (
    FileKeyProvider,
    PublicKey,
    Signer,
    write_private_key,
)
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, runs
from governance_pipeline.landscape.database import read_snapshot
from governance_pipeline.landscape.signing_keyring import (
    KeyStatus,
    SigningKeyring,
    signing_key_ended,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.trust import add_pinned_key, pin_revocation

PENDING_SUFFIX = ".next"


@dataclass(frozen=True)
class RotationResult:
    old_key_id: str
    new_key_id: str
    rotated_at: str
    new_key_file: str
    old_key: str          # what became of the old private key
    event_id: str
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"old_key_id": self.old_key_id, "new_key_id": self.new_key_id,
                "rotated_at": self.rotated_at, "new_key_file": self.new_key_file,
                "old_key": self.old_key, "event_id": self.event_id, "notes": self.notes}


@dataclass(frozen=True)
class RevocationResult:
    key_id: str
    revoked_at: str
    reason: str
    signed_by: str
    event_id: str
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "revoked_at": self.revoked_at, "reason": self.reason,
                "signed_by": self.signed_by, "event_id": self.event_id, "notes": self.notes}


def _trusted_signer(landscape: Landscape) -> tuple[Signer, SigningKeyring]:
    signer = landscape.signer  # GP-KEY-005 when a rotation or revocation ended it
    keyring = landscape.signing_keyring()
    if not keyring.trusts(signer.key_id):
        raise GovernanceError(
            f"the signing key {signer.key_id} at {signer.location} is not pinned in "
            f"{landscape.trust_path} and no rotation links it to a pinned key",
            code=SIGNING_KEY_UNTRUSTED, details={"key_id": signer.key_id})
    return signer, keyring


def running_runs(landscape: Landscape) -> list[str]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(runs.select().with_only_columns(runs.c.run_id)
                                 .where(runs.c.status == "running")).scalars())


def rotate_key(landscape: Landscape, *, actor: str, new_key_file: Path | None = None,
               keep_old_key: bool = False) -> RotationResult:
    """Rotate the signing key (see the module docstring)."""
    with operator_action(landscape, action=OperatorAction.KEYS_ROTATE, actor=actor) as act:
        old, _ = _trusted_signer(landscape)
        act.subject = old.key_id
        current = landscape.signing_key_source.path  # None: the key is in the environment
        target = (new_key_file.expanduser().resolve() if new_key_file is not None else current)
        if target is None:
            raise GovernanceError("the signing key comes from the environment and no "
                                  "--new-key-file was given", code=ROTATE_TARGET_UNKNOWN)
        in_place = current is not None and target == current.resolve()
        pending = target.with_name(target.name + PENDING_SUFFIX) if in_place else target
        if pending.exists():
            raise GovernanceError(f"{pending} exists already", code=NEW_KEY_FILE_EXISTS,
                                  details={"path": str(pending)})
        with read_snapshot(landscape.engine) as conn:
            # Another process may have rotated since this one loaded the key: two successors
            # of one key would be a fork (which verify reports, but better never made).
            ended = signing_key_ended(conn, old.public)
        if ended:
            raise GovernanceError(f"the signing key {old.key_id} {ended}",
                                  code=SIGNING_KEY_RETIRED, details={"key_id": old.key_id})
        new = Signer(FileKeyProvider.generate(str(target)))
        write_private_key(pending, new.provider)  # type: ignore[arg-type]
        try:
            with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
                # The old key seals this unit at uow.now: its last valid moment.
                rotation = Rotation.make(old, new, uow.now)
                act.inputs.update(rotation.as_inputs())
                act.inputs["new_key_location"] = str(target)
                event = act.record_in(uow)
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
    notes: list[str] = []
    if in_place:
        assert current is not None
        if keep_old_key:
            archive = current.with_name(f"{current.stem}.{old.key_id}.retired{current.suffix}")
            os.link(current, archive)
            fate = f"kept at {archive} (it can no longer sign anything verify accepts)"
        else:
            fate = "destroyed (its public key stays in the keyring)"
        os.replace(pending, target)
        landscape.use_signer(new)
    else:
        fate = (f"left at {current}: remove it once GOVERNANCE_SIGNING_KEY_FILE names the new "
                "file" if current is not None else
                "in GOVERNANCE_SIGNING_KEY: replace it with the new key")
        notes.append(f"the new private key is at {target}: set GOVERNANCE_SIGNING_KEY_FILE="
                     f"{target} (or load it into GOVERNANCE_SIGNING_KEY) before the next run; "
                     f"until then the retired key {old.key_id} is refused (GP-KEY-005)")
    notes.append(f"key {new.key_id} is trusted through the rotation statement that key "
                 f"{old.key_id} signed: a verifier that pins {old.key_id} needs nothing new; "
                 "publish the new key with `governance-pipeline keys public`")
    running = running_runs(landscape)
    if running:
        notes.append("runs still running keep sealing with the retired key, which verify "
                     f"will report: {', '.join(running[:5])}")
    return RotationResult(old.key_id, new.key_id, rotation.rotated_at, str(target), fate,
                          event.event_id, notes)


def revoke_key(landscape: Landscape, key_id: str, *, reason: str, actor: str,
               at: str | None = None) -> RevocationResult:
    """Revoke the retired key ``key_id`` from ``at`` (default now), signed by the active key."""
    with operator_action(landscape, action=OperatorAction.KEYS_REVOKE, actor=actor,
                         inputs={"key_id": key_id, "reason": reason}, subject=key_id) as act:
        signer, keyring = _trusted_signer(landscape)
        entry = keyring.entry(key_id)
        if entry is None or not entry.trusted:
            raise GovernanceError(f"no key {key_id} in the keyring", code=KEY_UNKNOWN,
                                  details={"key_id": key_id})
        if entry.status is KeyStatus.REVOKED:
            raise GovernanceError(f"key {key_id} was revoked at {entry.revoked_at} "
                                  f"({entry.revocation_reason})", code=KEY_ALREADY_REVOKED)
        if key_id == signer.key_id:
            raise GovernanceError(f"key {key_id} is the active signing key",
                                  code=REVOKE_ACTIVE_KEY)
        now = landscape.clock.now()
        when = moment(at) if at is not None else now
        if when is None or when > now:
            raise GovernanceError(f"--at {at!r} is not a past ISO 8601 time with a zone",
                                  code=REVOCATION_TIME_INVALID)
        with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
            revoked_at = uow.now if at is None else to_iso(when)
            revocation = Revocation.make(entry.public, revoked_at, reason, uow.now, signer)
            act.inputs.update(revocation.as_inputs())
            event = act.record_in(uow)
    notes = _pin_revocation(landscape, entry.key_id, revoked_at, reason)
    retired = moment(entry.retired_at)
    successor = keyring.entry(entry.successor) if entry.successor else None
    if retired is not None and when < retired and successor is not None:
        notes += _pin_successor(landscape, successor.public)
    return RevocationResult(key_id, revoked_at, reason, signer.key_id, event.event_id, notes)


def _pin_revocation(landscape: Landscape, key_id: str, revoked_at: str,
                    reason: str) -> list[str]:
    try:
        pin_revocation(landscape.trust_path, key_id, revoked_at, reason)
    except GovernanceError as exc:
        return [f"the trust file was not updated ({exc.message}): verifiers must record the "
                f"revocation of {key_id} at {revoked_at} in their own trust file"]
    return [f"recorded in {landscape.trust_path}: copy it to every verifier (`verify-bundle "
            f"--trusted-key {landscape.trust_path.name}`)"]


def _pin_successor(landscape: Landscape, key: PublicKey) -> list[str]:
    note = "pinned by keys revoke: its rotation was signed after the revoked key's compromise"
    try:
        add_pinned_key(landscape.trust_path, key, note)
    except GovernanceError as exc:
        return [f"pin key {key.key_id} yourself ({exc.message})"]
    return [f"the revocation predates the rotation to {key.key_id}, so that rotation proves "
            f"nothing by itself: key {key.key_id} is now pinned in {landscape.trust_path}; "
            "verifiers elsewhere must pin it too (`keys pin --public-key`)"]

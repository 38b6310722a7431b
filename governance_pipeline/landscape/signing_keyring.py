"""The signing keyring: every key this Landscape ever signed with, and when each was valid.

Nothing here is trusted because of where it is stored. The keyring is *derived*: from the keys
the verifier trusts already (pinned in the trust file, or given on the command line), through
the signed rotation statements (``key_statements``), to every key linked to them; each key is
valid from the rotation that introduced it up to the rotation that retired it, and never after a
revocation. A statement that does not verify, two successors of one key (a fork), or a rotation
made by a key after its revocation is a problem (a ``key`` finding of verify, exit 5).

The statements are read from the operator log in the global chain (``statements_in``): deleting
or editing one is a ledger finding too. Revocations pinned in the trust file apply even when the
database no longer holds them.

``SigningKeyring.check(key_id, at)`` is what every signature check calls: None when a signature
by ``key_id`` made at ``at`` is acceptable, else the sentence saying why not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, inspect, select

from governance_pipeline.contracts.operator_records import OperatorAction, OperatorResult
from governance_pipeline.landscape.key_statements import (
    REVOCATION,
    ROTATION,
    Revocation,
    Rotation,
    moment,
)
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import operator_events


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"   # replaced by a rotation: its signatures up to then stay valid
    REVOKED = "revoked"   # nothing it signed after revoked_at is accepted


@dataclass(frozen=True, slots=True)
class PinnedRevocation:
    """A revocation the verifier holds itself (the trust file): trusted without a signature."""

    key_id: str
    revoked_at: str
    reason: str


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    public: PublicKey
    status: KeyStatus
    trusted: bool
    active_from: str | None = None      # None: since the beginning (a pinned root key)
    retired_at: str | None = None
    successor: str | None = None
    revoked_at: str | None = None
    revocation_reason: str | None = None

    @property
    def until(self) -> str | None:
        ends = [t for t in (self.retired_at, self.revoked_at) if t is not None]
        return min(ends, key=lambda t: moment(t) or datetime.max) if ends else None

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "status": self.status.value, "trusted": self.trusted,
                "fingerprint": self.public.fingerprint, "public_key": self.public.raw.hex(),
                "active_from": self.active_from, "retired_at": self.retired_at,
                "successor": self.successor, "revoked_at": self.revoked_at,
                "revocation_reason": self.revocation_reason}


@dataclass(frozen=True, slots=True)
class KeyProblem:
    item: str      # where the statement came from (operator event id, bundle entry)
    message: str


@dataclass
class SigningKeyring:
    entries: dict[str, KeyEntry]
    rotations: list[Rotation]
    revocations: list[Revocation]
    problems: list[KeyProblem] = field(default_factory=list)

    def entry(self, key_id: str) -> KeyEntry | None:
        return self.entries.get(key_id)

    def public(self, key_id: str) -> PublicKey | None:
        """The public key of a *trusted* key id, else None."""
        found = self.entries.get(key_id)
        return found.public if found is not None and found.trusted else None

    def trusts(self, key_id: str) -> bool:
        return self.public(key_id) is not None

    def trusted(self) -> list[KeyEntry]:
        """The keys pinned, or linked to a pinned key by rotations (whatever their status)."""
        return [e for e in self.entries.values() if e.trusted]

    def check(self, key_id: str, at: str) -> str | None:
        """None when a signature by ``key_id`` made at ``at`` is acceptable, else why not."""
        found = self.entries.get(key_id)
        if found is None or not found.trusted:
            return (f"key {key_id} is not trusted: it is not pinned and no rotation statement "
                    "links it to a pinned key")
        when = moment(at)
        if when is None:
            return f"the time {at!r} is not a timestamp with a zone"
        revoked = moment(found.revoked_at)
        if revoked is not None and when > revoked:
            return (f"made at {at} by key {key_id}, which was revoked at {found.revoked_at} "
                    f"({found.revocation_reason})")
        retired = moment(found.retired_at)
        if retired is not None and when > retired:
            return (f"made at {at} by key {key_id}, which was retired at {found.retired_at} by "
                    f"the rotation to key {found.successor}")
        start = moment(found.active_from)
        if start is not None and when < start:
            return (f"made at {at} by key {key_id}, before it became active at "
                    f"{found.active_from}")
        return None

    def active(self) -> list[KeyEntry]:
        return [e for e in self.entries.values() if e.status is KeyStatus.ACTIVE and e.trusted]

    def document(self) -> dict[str, Any]:
        """The keyring as a bundle carries it (``keys/keyring.json``): the statements, which
        prove everything, and the derived table for the reader."""
        return {"version": 1,
                "keys": [e.as_dict() for e in sorted(self.entries.values(),
                                                      key=lambda e: e.active_from or "")],
                "rotations": [r.as_inputs() for r in self.rotations],
                "revocations": [r.as_inputs() for r in self.revocations]}


def build_keyring(anchors: Sequence[PublicKey], rotations: Iterable[Rotation],
                  revocations: Iterable[Revocation],
                  pinned_revocations: Iterable[PinnedRevocation] = (),
                  problems: Iterable[KeyProblem] = ()) -> SigningKeyring:
    """The keyring that ``anchors`` (the trusted keys) and the statements prove."""
    found = list(problems)
    good: list[Rotation] = []
    for rotation in rotations:
        why = rotation.problems()
        if why:
            found.append(KeyProblem(rotation.origin, f"rotation {rotation.old_key_id} -> "
                                    f"{rotation.new_key_id} proves nothing: {'; '.join(why)}"))
        else:
            good.append(rotation)
    keys: dict[str, PublicKey] = {k.key_id: k for k in anchors}
    for r in good:
        keys.setdefault(r.old_key_id, PublicKey.from_raw(bytes.fromhex(r.old_public_key)))
        keys.setdefault(r.new_key_id, PublicKey.from_raw(bytes.fromhex(r.new_public_key)))
    found += _forks(good)
    trusted = _linked({k.key_id for k in anchors}, good)
    retired: dict[str, Rotation] = {}
    introduced: dict[str, Rotation] = {}
    for r in sorted(good, key=lambda r: moment(r.rotated_at) or datetime.max):
        retired.setdefault(r.old_key_id, r)
        introduced.setdefault(r.new_key_id, r)
    revs = list(revocations)
    revoked = _revoked(revs, keys, trusted, pinned_revocations, found)
    anchor_ids = {k.key_id for k in anchors}
    for r in good:
        end = revoked.get(r.old_key_id)
        # Made after the old key's compromise, the rotation proves nothing by itself (whoever
        # stole the key could have made it): only pinning the new key vouches for it.
        if end is not None and r.new_key_id not in anchor_ids \
                and (moment(r.rotated_at) or datetime.max) > (moment(end[0]) or datetime.min):
            found.append(KeyProblem(r.origin, f"rotation {r.old_key_id} -> {r.new_key_id} at "
                                    f"{r.rotated_at} was made after key {r.old_key_id} was "
                                    f"revoked at {end[0]}; pin key {r.new_key_id} if this rotation is genuine"))
    entries = {}
    for key_id, key in keys.items():
        rev = revoked.get(key_id)
        out = retired.get(key_id)
        status = (KeyStatus.REVOKED if rev else KeyStatus.RETIRED if out else KeyStatus.ACTIVE)
        into = introduced.get(key_id)
        entries[key_id] = KeyEntry(
            key_id, key, status, key_id in trusted,
            active_from=into.rotated_at if into else None,
            retired_at=out.rotated_at if out else None,
            successor=out.new_key_id if out else None,
            revoked_at=rev[0] if rev else None, revocation_reason=rev[1] if rev else None)
    return SigningKeyring(entries, good, revs, found)


def _forks(good: Sequence[Rotation]) -> list[KeyProblem]:
    found = []
    for side, other in (("old_key_id", "new_key_id"), ("new_key_id", "old_key_id")):
        seen: dict[str, Rotation] = {}
        for r in good:
            first = seen.setdefault(getattr(r, side), r)
            if getattr(first, other) != getattr(r, other):
                found.append(KeyProblem(r.origin, f"fork: key {getattr(r, side)} is rotated "
                                        f"both with key {getattr(first, other)} and with key "
                                        f"{getattr(r, other)}"))
    return found


def _linked(anchors: set[str], good: Sequence[Rotation]) -> set[str]:
    """Keys reachable from ``anchors`` through rotations (both keys signed each one)."""
    reached, frontier = set(anchors), list(anchors)
    while frontier:
        key_id = frontier.pop()
        for r in good:
            for a, b in ((r.old_key_id, r.new_key_id), (r.new_key_id, r.old_key_id)):
                if a == key_id and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return reached


def _revoked(revs: Sequence[Revocation], keys: Mapping[str, PublicKey], trusted: set[str],
             pinned: Iterable[PinnedRevocation],
             found: list[KeyProblem]) -> dict[str, tuple[str, str]]:
    """key id -> (revoked_at, reason), the earliest of every valid revocation."""
    out: dict[str, tuple[str, str]] = {}

    def note(key_id: str, at: str, reason: str) -> None:
        known = out.get(key_id)
        if known is None or (moment(at) or datetime.max) < (moment(known[0]) or datetime.max):
            out[key_id] = (at, reason)

    for rev in revs:
        signer = keys.get(rev.signed_by) if rev.signed_by in trusted else None
        why = rev.problems(signer)
        if why:
            found.append(KeyProblem(rev.origin, f"revocation of key {rev.key_id} proves "
                                    f"nothing: {'; '.join(why)}"))
        elif rev.key_id in keys:
            note(rev.key_id, rev.revoked_at, rev.reason)
    for pin in pinned:
        if pin.key_id in keys:
            note(pin.key_id, pin.revoked_at, pin.reason)
    return out


def statements_in(conn: Connection) -> tuple[list[Rotation], list[Revocation],
                                             list[KeyProblem]]:
    """The rotation and revocation statements of the operator log (successful entries)."""
    rotations: list[Rotation] = []
    revocations: list[Revocation] = []
    problems: list[KeyProblem] = []
    if not inspect(conn).has_table(operator_events.name):
        return [], [], []  # a database from before the operator log (0005) is being upgraded
    query = (select(operator_events.c.event_id, operator_events.c.action,
                    operator_events.c.inputs_json)
             .where(operator_events.c.action.in_([OperatorAction.KEYS_ROTATE.value,
                                                  OperatorAction.KEYS_REVOKE.value]),
                    operator_events.c.result == OperatorResult.OK.value)
             .order_by(operator_events.c.occurred_at, operator_events.c.event_id))
    for event_id, action, inputs_json in conn.execute(query):
        try:
            data = orjson.loads(inputs_json)
            kind = data.get("statement") if isinstance(data, dict) else None
            if action == OperatorAction.KEYS_ROTATE.value and kind == ROTATION:
                rotations.append(Rotation.from_inputs(data, str(event_id)))
            elif action == OperatorAction.KEYS_REVOKE.value and kind == REVOCATION:
                revocations.append(Revocation.from_inputs(data, str(event_id)))
            else:
                raise ValueError(f"a successful {action} entry must carry its signed statement")
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            problems.append(KeyProblem(str(event_id), f"key statement unreadable: {exc}"))
    return rotations, revocations, problems


def statements_of(doc: Any) -> tuple[list[Rotation], list[Revocation], list[KeyProblem]]:
    """The statements of a bundle's ``keys/keyring.json`` document."""
    rotations: list[Rotation] = []
    revocations: list[Revocation] = []
    problems: list[KeyProblem] = []
    if not isinstance(doc, dict):
        return [], [], [KeyProblem("keyring", "not a keyring document")]
    for name, cls, out in (("rotations", Rotation, rotations),
                           ("revocations", Revocation, revocations)):
        items = doc.get(name, [])
        if not isinstance(items, list):
            problems.append(KeyProblem(name, f"{name} is not a list"))
            continue
        for index, item in enumerate(items):
            origin = f"{name}[{index}]"
            try:
                out.append(cls.from_inputs(item, origin))  # type: ignore[attr-defined]
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(KeyProblem(origin, f"unreadable statement: {exc}"))
    return rotations, revocations, problems


def signing_key_ended(conn: Connection, key: PublicKey) -> str:
    """Why ``key`` must not sign any more ('' when it may): a rotation it signed retired it, or
    a revocation by it or by a key it rotated to revoked it."""
    rotations, revocations, _ = statements_in(conn)
    good = [r for r in rotations if not r.problems()]
    linked = _linked({key.key_id}, good)
    keys = {key.key_id: key}
    for r in good:
        keys.setdefault(r.old_key_id, PublicKey.from_raw(bytes.fromhex(r.old_public_key)))
        keys.setdefault(r.new_key_id, PublicKey.from_raw(bytes.fromhex(r.new_public_key)))
    for rev in revocations:
        if rev.key_id == key.key_id and rev.signed_by in linked \
                and not rev.problems(keys.get(rev.signed_by)):
            return f"was revoked at {rev.revoked_at} ({rev.reason})"
    for r in good:
        if r.old_key_id == key.key_id:
            return f"was retired at {r.rotated_at} by the rotation to key {r.new_key_id}"
    return ""

"""Witness checks of ``verify --witness DIR``: the ledger still has every root a witness recorded.

Whoever holds the signing key can rewrite a chain consistently, recompute every entry and re-sign
every checkpoint: the ledger then verifies against itself. A witnessed checkpoint is a root the
ledger had *before*, kept by someone else (``witness_log``). For each one of a scope verify
checks, the tree is recomputed from the entries as they are now: at the witnessed size it must
have the witnessed root, and the scope's latest checkpoint must extend it (the Landscape's
consistency proof from that size verifies). With cosigner keys, every witnessed checkpoint must
also carry a valid tlog-cosignature v1 of each of them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.errors import AuditIntegrityError, ExitCode, register
from governance_pipeline.contracts.signed_note import Verifier, open_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint, open_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape import tlog_view
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.verify_chain import Tally
from governance_pipeline.landscape.witness_log import Witnessed, witnessed_in

WITNESS = "witness"

WITNESS_MISMATCH = register(
    "GP-WITNESS-008", "The ledger disagrees with a witnessed checkpoint",
    "Each finding names the witnessed file (origin and tree size) and what differs: the ledger "
    "was rewritten, truncated or rolled back after the witness saw it, even if every seal "
    "verifies. Treat the audit trail of that scope as altered; restore it from a backup that "
    "matches the witness and investigate who holds the signing key.",
    ExitCode.INTEGRITY)


@dataclass
class WitnessInput:
    """What ``verify`` was given: the directory (read before the database snapshot, so it can
    only lag it) and the cosigners whose cosignatures are required."""

    root: Path
    cosigners: Sequence[Verifier] = ()
    by_origin: dict[str, list[Witnessed]] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    checked: int = 0

    @classmethod
    def read(cls, root: Path, cosigners: Sequence[Verifier] = ()) -> WitnessInput:
        found, bad = witnessed_in(root)
        return cls(root, tuple(cosigners), found, bad)

    def as_dict(self) -> dict[str, object]:
        return {"dir": str(self.root), "checkpoints_checked": self.checked,
                "origins": sorted(self.by_origin),
                "cosigners": [v.name for v in self.cosigners]}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_witnessed(conn: Connection, scopes: Sequence[str], witness: WitnessInput,
                    trusted: Sequence[PublicKey], state: Tally, *, every_scope: bool) -> None:
    """``trusted``: the keys a checkpoint may be signed by (the keyring's trusted keys, so a
    checkpoint witnessed before a rotation still checks). ``every_scope``: verify covers the whole Landscape, so a witnessed log it does not have
    (a deleted run, or an origin the ledger no longer uses) is a finding too."""
    for path, why in witness.unreadable:
        state.add(WITNESS, WITNESS, _name(witness.root, path),
                  f"unreadable witness file: {why}", None)
    prefix = tlog_view.origin_prefix(conn)
    wanted = {tlog_view.origin(prefix, s): s for s in scopes} if prefix is not None else {}
    for origin, items in sorted(witness.by_origin.items()):
        scope = wanted.get(origin)
        if scope is None:
            if every_scope and items:
                _report_unknown(origin, prefix, items[-1], witness, state)
            continue
        leaves = tlog_view.leaf_hashes(conn, scope)
        latest = _latest(conn, scope, origin, trusted)
        roots = _roots_at(leaves, sorted({w.size for w in items}))
        for item in items:
            witness.checked += 1
            _check_one(conn, scope, origin, item, witness, leaves, roots, latest, trusted, state)


def _report_unknown(origin: str, prefix: str | None, newest: Witnessed, witness: WitnessInput,
                    state: Tally) -> None:
    split = tlog_view.split_origin(origin)
    if split is not None and split[0] == prefix:
        why = (f"the Landscape has no log of scope {split[1]} any more (the witness recorded "
               f"size {newest.size}): the run was deleted")
    else:
        why = (f"it is not a log of this Landscape (origin prefix {prefix!r}): the ledger's "
               "origin was changed after it was witnessed, or DIR witnesses another Landscape "
               "(give each its own directory)")
    state.add(WITNESS, WITNESS, _name(witness.root, newest.path),
              f"witnessed log {origin}: {why}", split[1] if split else None)


def _name(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _latest(conn: Connection, scope: str, origin: str,
            trusted: Sequence[PublicKey]) -> Checkpoint | None:
    """The scope's latest checkpoint, when it verifies (a bad one is the checkpoint checks'
    finding)."""
    note = tlog_view.stored_checkpoint(conn, scope)
    if note is None:
        return None
    try:
        return open_checkpoint(note, tlog_view.log_verifiers(trusted, [origin]), origin)[0]
    except TlogError:
        return None


def _roots_at(leaves: Sequence[bytes], sizes: Sequence[int]) -> dict[int, bytes]:
    """The root of the current tree at each of ``sizes`` (those it reaches), in one pass."""
    roots: dict[int, bytes] = {}
    frontier = merkle.Frontier()
    if 0 in sizes:
        roots[0] = frontier.root()
    wanted = set(sizes)
    for leaf in leaves:
        frontier.append(leaf)
        if frontier.size in wanted:
            roots[frontier.size] = frontier.root()
    return roots


def _check_one(conn: Connection, scope: str, origin: str, item: Witnessed, witness: WitnessInput,
               leaves: Sequence[bytes], roots: dict[int, bytes], latest: Checkpoint | None,
               trusted: Sequence[PublicKey], state: Tally) -> None:
    key = _name(witness.root, item.path)
    size, root = item.size, item.checkpoint.root_hash
    said = f"the witness recorded size {size} root {_b64(root)}"
    try:
        open_checkpoint(item.text, tlog_view.log_verifiers(trusted, [origin]), origin)
    except TlogError as exc:
        ids = ", ".join(k.key_id for k in trusted) or "none"
        state.add(WITNESS, WITNESS, key, f"witnessed checkpoint not signed by a trusted key "
                  f"({ids}): {exc.message}", scope, size=size)
    for cosigner in witness.cosigners:
        try:
            open_note(item.text, [cosigner])
        except TlogError as exc:
            state.add(WITNESS, WITNESS, key, f"no valid cosignature of {cosigner.name} on the "
                      f"witnessed checkpoint: {exc.message}", scope, size=size,
                      cosigner=cosigner.name)
    if size > len(leaves):
        state.add(WITNESS, WITNESS, key, f"ledger truncated: {said}, the chain of scope {scope} "
                  f"now has {len(leaves)} entries", scope, size=size, entries=len(leaves))
        return
    now = roots[size]
    if now != root:
        state.add(WITNESS, WITNESS, key, f"ledger rewritten: {said}, the tree of scope {scope} "
                  f"at that size now has root {_b64(now)}", scope, size=size,
                  witnessed_root=_b64(root), current_root=_b64(now))
        return
    if latest is None or latest.size < size:
        state.add(WITNESS, WITNESS, key, f"ledger rolled back: {said}, the latest checkpoint of "
                  f"scope {scope} is size {latest.size if latest else 0}", scope, size=size)
        return
    try:
        proof = tlog_view.consistency_proof(conn, scope, size, latest.size)
    except (TlogError, AuditIntegrityError):
        proof = []  # the chain cannot give one (the chain checks say why): none verifies
    if not merkle.verify_consistency(size, latest.size, root, latest.root_hash, proof):
        state.add(WITNESS, WITNESS, key, f"latest checkpoint does not extend the witnessed one: "
                  f"{said}, no consistency proof leads to the latest checkpoint (size "
                  f"{latest.size} root {_b64(latest.root_hash)})", scope, size=size)

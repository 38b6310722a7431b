"""Checkpoint checks of ``verify``: every C2SP checkpoint of a scope against its chain.

For each stored checkpoint, in order of tree size: its note must be signed by a trusted key of
the keyring (within that key's validity, as seals are)
under the scope's origin (the key name is the origin, c2sp.org/tlog-checkpoint), its size and
origin must be the row's, its root must be the RFC 6962 root of the chain's first ``size``
entries as verify replayed them, and it must extend the scope's previous checkpoint: a
consistency proof between the two sizes is computed from the entries and verified against the
two *signed* roots. A chain rewritten and re-signed with the real key passes the chain and seal
checks, but an older checkpoint still held names a root the rewritten chain does not have, and
the next one does not extend it.

Seals made before checkpoints existed (revision 0008) have none; they are checked as legacy
seals by ``verify_chain.check_seals`` only. From a scope's first checkpoint on, every seal has
one at its seq (written in the seal's transaction), so a missing one is a finding too; deleting
*every* checkpoint of a scope leaves only its legacy seals, which is what they prove.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from governance_pipeline.contracts.merkle import (
    Frontier,
    MerkleTree,
    leaf_hash,
    verify_consistency,
)
from governance_pipeline.contracts.signed_note import Verifier, open_note_detailed
from governance_pipeline.contracts.tlog_checkpoint import parse_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape.checkpoints import (
    entry_leaf,
    log_verifier,
    origin_of,
    read_origin_prefix,
)
from governance_pipeline.landscape.schema import ledger_checkpoints, ledger_seals
from governance_pipeline.landscape.signing_keyring import SigningKeyring
from governance_pipeline.landscape.verify_chain import Chain, Tally, raw_select

CHECKPOINT = "checkpoint"
_TABLE = "ledger_checkpoints"


def checkpoint_key(scope: str, size: object) -> str:
    return f'["{scope}",{size}]' if type(size) is int else repr([scope, size])


def chain_tree(chain: Chain) -> MerkleTree:
    """The tree of the entries verify replayed, in seq order (a missing entry shifts every later
    leaf, so no later root matches: the gap is reported by the chain check as well)."""
    leaves = []
    for seq in sorted(chain.heads):
        stored = chain.heads[seq]
        try:
            leaves.append(entry_leaf(stored))
        except (ValueError, TypeError):
            # Not an entry hash at all (the chain check reports it): a leaf no root can match.
            leaves.append(leaf_hash(repr(stored).encode()))
    return MerkleTree(leaves)


@dataclass(frozen=True, slots=True)
class _Signed:
    size: int
    root: bytes


def check_checkpoints(conn: Connection, scope: str, chain: Chain, keyring: SigningKeyring,
                      state: Tally, prefix: str | None = None) -> int:
    """Check every checkpoint of ``scope`` against the trusted keys of ``keyring`` (each within
    its validity, as seals are); returns how many there are."""
    rows = conn.execute(raw_select(ledger_checkpoints)
                        .where(ledger_checkpoints.c.scope == scope)
                        .order_by(ledger_checkpoints.c.tree_size)).mappings().all()
    if not rows:
        return 0
    prefix = prefix if prefix is not None else read_origin_prefix(conn)
    origin = origin_of(prefix, scope) if prefix is not None else None
    verifiers = ({log_verifier(origin, e.public): e.key_id for e in keyring.trusted()}
                 if origin is not None else {})
    tree = chain_tree(chain)
    previous: _Signed | None = None
    for row in rows:
        size = row["tree_size"]
        key = checkpoint_key(scope, size)
        signed = _check_one(row, key, scope, origin, verifiers, keyring, state)
        if signed is None:
            continue  # not evidence of anything: the next one is compared with the one before
        if signed.size > tree.size:
            state.add(CHECKPOINT, _TABLE, key,
                      f"tree truncated: the checkpoint covers {signed.size} entries, the chain "
                      f"now holds {tree.size}", scope, tree_size=signed.size,
                      last_seq=chain.last_seq)
        elif tree.root(signed.size) != signed.root:
            state.add(CHECKPOINT, _TABLE, key,
                      f"root mismatch: the checkpoint's root is not the root of the chain's "
                      f"first {signed.size} entries (they were rewritten after it was signed)",
                      scope, tree_size=signed.size, signed_root=signed.root.hex(),
                      recomputed_root=tree.root(signed.size).hex())
        if not _frontier_matches(row["frontier"], signed):
            # The next seal would extend this frontier: an altered one poisons later roots.
            state.add(CHECKPOINT, _TABLE, key,
                      "frontier altered: the stored frontier is not the signed tree's (size "
                      f"{signed.size}); the next seal would build on it", scope,
                      tree_size=signed.size)
        if previous is not None and not _extends(tree, previous, signed):
            state.add(CHECKPOINT, _TABLE, key,
                      f"fork: the checkpoint of size {signed.size} does not extend the scope's "
                      f"previous checkpoint of size {previous.size} (no consistency proof from "
                      "the chain's entries leads from one signed root to the other)", scope,
                      tree_size=signed.size, previous_size=previous.size)
        previous = signed
    _check_missing(conn, scope, {r["tree_size"] for r in rows}, state)
    return len(rows)


def _check_missing(conn: Connection, scope: str, sizes: set[object], state: Tally) -> None:
    """Every seal from the scope's first checkpoint on wrote one at its seq, in its own
    transaction: a seal without it lost its checkpoint (deleted, e.g. to hide a fork)."""
    first = min((s for s in sizes if type(s) is int), default=None)
    if first is None:
        return
    seals = conn.execute(select(ledger_seals.c.seal_id, ledger_seals.c.seq)
                         .where(ledger_seals.c.scope == scope)
                         .order_by(ledger_seals.c.seq)).all()
    reported: set[int] = set()
    for seal_id, seq in seals:
        if type(seq) is int and seq >= first and seq not in sizes and seq not in reported:
            reported.add(seq)
            state.add(CHECKPOINT, _TABLE, checkpoint_key(scope, seq),
                      f"checkpoint missing: seal {seal_id} of seq {seq} was made after the "
                      f"scope's first checkpoint (size {first}) but its checkpoint is gone",
                      scope, tree_size=seq, seal_id=str(seal_id))


def _frontier_matches(stored: object, signed: _Signed) -> bool:
    if not isinstance(stored, (bytes, memoryview)):
        return False
    try:
        frontier = Frontier.from_bytes(bytes(stored))
    except ValueError:
        return False
    return frontier.size == signed.size and frontier.root() == signed.root


def _extends(tree: MerkleTree, old: _Signed, new: _Signed) -> bool:
    if new.size > tree.size:
        return False  # nothing to compute the proof from; reported as truncated
    proof = tree.consistency_proof(old.size, new.size)
    return verify_consistency(old.size, new.size, old.root, new.root, proof)


def _check_one(row: object, key: str, scope: str, origin: str | None,
               verifiers: dict[Verifier, str], keyring: SigningKeyring,
               state: Tally) -> _Signed | None:
    """The checkpoint's signed size and root, or None (and a finding) when it is not signed
    evidence of this scope."""
    size, note = row["tree_size"], row["note"]  # type: ignore[index]
    if type(size) is not int or not isinstance(note, str):
        state.add(CHECKPOINT, _TABLE, key,
                  f"checkpoint malformed: tree_size holds {type(size).__name__}, note holds "
                  f"{type(note).__name__}", scope)
        return None
    if not verifiers or origin is None:
        state.add(CHECKPOINT, _TABLE, key,
                  "invalid signature: the Landscape's checkpoint origin (ledger_origin) is "
                  "missing, so no checkpoint can be checked against it", scope, tree_size=size)
        return None
    try:
        opened = open_note_detailed(note, list(verifiers))
        checkpoint = parse_checkpoint(opened.body)
    except TlogError as exc:
        state.add(CHECKPOINT, _TABLE, key,
                  f"invalid signature: the checkpoint is not signed by the trusted key as "
                  f"{origin} ({exc.code.code}: {exc.message})", scope, tree_size=size,
                  reason=exc.code.code)
        return None
    for signature in opened.verified:
        key_id = verifiers[signature.verifier]
        why = keyring.check(key_id, str(row["created_at"]))  # type: ignore[index]
        if why is not None:
            state.add(CHECKPOINT, _TABLE, key,
                      f"invalid signature: the checkpoint is signed by key {key_id} outside its "
                      f"validity ({why})", scope, tree_size=size, key_id=key_id)
            return None
    if checkpoint.origin != origin:
        state.add(CHECKPOINT, _TABLE, key,
                  f"wrong origin: the checkpoint names {checkpoint.origin!r}, this scope's "
                  f"origin is {origin!r}", scope, tree_size=size)
        return None
    if checkpoint.size != size:
        state.add(CHECKPOINT, _TABLE, key,
                  f"checkpoint moved: its note is of size {checkpoint.size}, stored as size "
                  f"{size}", scope, tree_size=size, signed_size=checkpoint.size)
    return _Signed(checkpoint.size, checkpoint.root_hash)

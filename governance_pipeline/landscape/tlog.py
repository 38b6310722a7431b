"""Reading the ledger as a transparency log: checkpoints, inclusion and consistency proofs.

Each scope's chain is an RFC 6962 tree (leaf i = ledger entry seq i+1, leaf hash =
SHA-256(0x00 || the 32 bytes of its entry hash), ``checkpoints.entry_leaf``), and each seal
stored a signed C2SP checkpoint of it (``checkpoints.write_checkpoint``). This module hands those
out, with proofs computed from the entries, for bundles (tlog-proof files) and witnesses:

- ``latest_checkpoint(conn, scope)`` / ``checkpoint_at(conn, scope, size)``: a stored checkpoint;
- ``inclusion_proof(conn, scope, seq, size)``: (leaf index, hashes) of entry ``seq`` in the tree
  of the scope's first ``size`` entries;
- ``consistency_proof(conn, scope, old_size, new_size)``: RFC 6962 hashes between two sizes;
- ``tlog_proof(conn, scope, seq)``: a c2sp.org/tlog-proof of an entry against a checkpoint;
- ``ScopeTree``: the scope's tree loaded once, for many proofs.

Every proof handed out is checked against the stored checkpoint's root first: a chain rewritten
after its checkpoint was signed yields an error, never a proof that would not verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from governance_pipeline.contracts.errors import LEDGER_TAMPERED, AuditIntegrityError
from governance_pipeline.contracts.merkle import MerkleTree, verify_consistency, verify_inclusion
from governance_pipeline.contracts.signed_note import Verifier, parse_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint, parse_checkpoint
from governance_pipeline.contracts.tlog_errors import (
    CHECKPOINT_MISSING,
    INCLUSION_FAILED,
    PROOF_RANGE,
    TlogError,
)
from governance_pipeline.contracts.tlog_proof import TlogProof
from governance_pipeline.landscape.checkpoints import (
    entry_leaf,
    log_verifier,
    origin_of,
    read_origin_prefix,
)
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import ledger_checkpoints, ledger_entries

__all__ = ["ScopeTree", "StoredCheckpoint", "checked_consistency", "checkpoint_at",
           "consistency_proof", "entry_leaf", "inclusion_proof", "latest_checkpoint",
           "scope_origin", "scope_verifier", "tlog_proof"]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One row of ``ledger_checkpoints``: the signed note exactly as stored."""

    scope: str
    size: int
    note: str
    seal_id: str
    created_at: str

    def checkpoint(self) -> Checkpoint:
        """The parsed checkpoint (its signature is not checked here: ``open_checkpoint`` does)."""
        return parse_checkpoint(parse_note(self.note)[0])


def scope_origin(conn: Connection, scope: str) -> str:
    """The origin line (= key name) of ``scope``'s checkpoints."""
    prefix = read_origin_prefix(conn)
    if prefix is None:
        raise TlogError("this Landscape has written no checkpoint yet (no origin is fixed)",
                        code=CHECKPOINT_MISSING, details={"scope": scope})
    return origin_of(prefix, scope)


def scope_verifier(conn: Connection, scope: str, public: PublicKey | bytes) -> Verifier:
    """The signed-note verifier (vkey: ``.vkey()``) of ``scope``'s checkpoints under ``public``."""
    return log_verifier(scope_origin(conn, scope), public)


def _stored(row: object) -> StoredCheckpoint:
    return StoredCheckpoint(row.scope, row.tree_size, row.note, row.seal_id,  # type: ignore[attr-defined]
                            row.created_at)  # type: ignore[attr-defined]


def _columns() -> tuple[object, ...]:
    c = ledger_checkpoints.c
    return (c.scope, c.tree_size, c.note, c.seal_id, c.created_at)


def latest_checkpoint(conn: Connection, scope: str) -> StoredCheckpoint:
    row = conn.execute(select(*_columns()).where(ledger_checkpoints.c.scope == scope)
                       .order_by(ledger_checkpoints.c.tree_size.desc()).limit(1)).first()
    if row is None:
        raise TlogError(f"scope {scope} has no checkpoint", code=CHECKPOINT_MISSING,
                        details={"scope": scope})
    return _stored(row)


def checkpoint_at(conn: Connection, scope: str, size: int) -> StoredCheckpoint:
    row = conn.execute(select(*_columns()).where(ledger_checkpoints.c.scope == scope,
                                                 ledger_checkpoints.c.tree_size == size)).first()
    if row is None:
        raise TlogError(f"scope {scope} has no checkpoint of size {size}",
                        code=CHECKPOINT_MISSING, details={"scope": scope, "size": size})
    return _stored(row)


class ScopeTree:
    """The Merkle tree of one scope's first ``size`` entries, read once from the chain."""

    def __init__(self, scope: str, tree: MerkleTree) -> None:
        self.scope = scope
        self.tree = tree

    @classmethod
    def load(cls, conn: Connection, scope: str, size: int | None = None) -> ScopeTree:
        query = (select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
                 .where(ledger_entries.c.scope == scope).order_by(ledger_entries.c.seq))
        if size is not None:
            query = query.where(ledger_entries.c.seq <= size)
        leaves = []
        for expected, row in enumerate(conn.execute(query), start=1):
            if row.seq != expected:
                raise AuditIntegrityError(f"the chain of {scope} lacks entry seq {expected}",
                                          code=LEDGER_TAMPERED, details={"scope": scope})
            try:
                leaves.append(entry_leaf(row.entry_hash))
            except ValueError as exc:
                raise AuditIntegrityError(f"entry seq {row.seq} of {scope}: {exc}",
                                          code=LEDGER_TAMPERED, details={"scope": scope}) from exc
        if size is not None and len(leaves) < size:
            raise TlogError(f"scope {scope} has {len(leaves)} entries, not {size}",
                            code=PROOF_RANGE, details={"scope": scope, "size": size})
        return cls(scope, MerkleTree(leaves))

    @property
    def size(self) -> int:
        return self.tree.size

    def root(self, size: int | None = None) -> bytes:
        return self.tree.root(size)

    def inclusion_proof(self, seq: int, size: int) -> tuple[int, list[bytes]]:
        """(leaf index = seq - 1, RFC 6962 inclusion proof in the tree of ``size`` entries)."""
        if not 1 <= seq <= size <= self.size:
            raise TlogError(f"entry seq {seq} in a tree of size {size}: need 1 <= seq <= size "
                            f"<= {self.size}", code=PROOF_RANGE,
                            details={"scope": self.scope, "seq": seq, "size": size})
        return seq - 1, self.tree.inclusion_proof(seq - 1, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 <= old_size <= new_size <= self.size:
            raise TlogError(f"sizes {old_size} -> {new_size}: need 0 <= old <= new <= "
                            f"{self.size}", code=PROOF_RANGE,
                            details={"scope": self.scope, "old": old_size, "new": new_size})
        return self.tree.consistency_proof(old_size, new_size)

    def matches(self, stored: StoredCheckpoint) -> Checkpoint:
        """The stored checkpoint, parsed, after checking its root is this tree's at its size."""
        checkpoint = stored.checkpoint()
        if checkpoint.size > self.size or self.root(checkpoint.size) != checkpoint.root_hash:
            raise TlogError(f"the checkpoint of {self.scope} at size {checkpoint.size} does not "
                            "match the chain's entries (verify reports how)",
                            code=INCLUSION_FAILED, details={"scope": self.scope})
        return checkpoint


def inclusion_proof(conn: Connection, scope: str, seq: int, size: int) -> tuple[int, list[bytes]]:
    """(leaf index, hashes) proving entry ``seq`` is in the tree of the first ``size`` entries."""
    index, proof = ScopeTree.load(conn, scope, size).inclusion_proof(seq, size)
    return index, proof


def consistency_proof(conn: Connection, scope: str, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 consistency proof from the tree of ``old_size`` entries to ``new_size``."""
    return ScopeTree.load(conn, scope, new_size).consistency_proof(old_size, new_size)


def tlog_proof(conn: Connection, scope: str, seq: int, *,
               checkpoint: StoredCheckpoint | None = None, extra: bytes | None = None,
               tree: ScopeTree | None = None) -> TlogProof:
    """A c2sp.org/tlog-proof of entry ``seq`` against ``checkpoint`` (default: the scope's
    latest), checked before it is returned: its inclusion proof leads to the checkpoint's root.

    The leaf a verifier recomputes is ``entry_leaf(entry_hash)`` of that entry.
    """
    stored = checkpoint or latest_checkpoint(conn, scope)
    tree = tree or ScopeTree.load(conn, scope, stored.size)
    parsed = tree.matches(stored)
    index, hashes = tree.inclusion_proof(seq, parsed.size)
    if not verify_inclusion(tree.tree.leaf(index), index, parsed.size, hashes,
                            parsed.root_hash):
        raise TlogError(f"the inclusion proof of {scope} seq {seq} does not verify",
                        code=INCLUSION_FAILED, details={"scope": scope, "seq": seq})
    return TlogProof(index, tuple(hashes), stored.note, extra)


def checked_consistency(tree: ScopeTree, old: StoredCheckpoint,
                        new: StoredCheckpoint) -> list[bytes]:
    """The consistency proof between two stored checkpoints, checked against their roots."""
    a, b = tree.matches(old), tree.matches(new)
    proof = tree.consistency_proof(a.size, b.size)
    if not verify_consistency(a.size, b.size, a.root_hash, b.root_hash, proof):
        raise TlogError(f"checkpoints {a.size} and {b.size} of {tree.scope} are not consistent",
                        code=INCLUSION_FAILED, details={"scope": tree.scope})
    return proof

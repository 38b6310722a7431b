"""RFC 6962 §2.1 Merkle hash trees: roots, inclusion and consistency proofs, and the frontier.

The hashing is the one every transparency log uses (Certificate Transparency, the Go checksum
database, Sigstore, the C2SP tlog specs), so a third party can recompute our roots and check our
proofs with their own tools:

- leaf hash  = SHA-256(0x00 || leaf data)
- node hash  = SHA-256(0x01 || left || right)
- the root of n > 1 leaves splits at k, the largest power of two < n: MTH(D[0:k]) and MTH(D[k:n]);
  the root of no leaves is SHA-256 of the empty string.

Proof verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 (the RFC 6962 proofs, stated as
algorithms). Everything here works on leaf *hashes*: what a leaf's data is, is the caller's
business (``leaf_hash`` turns data into one).

``Frontier`` is the compact right edge of an append-only tree: one hash per set bit of the size,
largest subtree first. Appending a leaf and re-rooting each cost O(log n), so a log that is sealed
after every append never re-reads its leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_SIZE_BYTES = 8  # Frontier.to_bytes: the size as an unsigned 64-bit big-endian integer


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash of ``data``: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of an append-only RFC 6962 tree: enough to append and to compute the root.

    ``_nodes[i]`` is the root of a perfect subtree; their sizes are the set bits of ``size``,
    largest first, so there are at most 64 of them.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._nodes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash on the right: merges as many equal-sized subtrees as carry bits."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        h, s = leaf, self._size
        while s & 1:
            h = node_hash(self._nodes.pop(), h)
            s >>= 1
        self._nodes.append(h)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree's root: the subtrees folded right to left (RFC 6962's unbalanced right edge)."""
        if not self._nodes:
            return EMPTY_ROOT
        r = self._nodes[-1]
        for h in reversed(self._nodes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> Frontier:
        f = Frontier()
        f._nodes = list(self._nodes)
        f._size = self._size
        return f

    def to_bytes(self) -> bytes:
        """8-byte big-endian size followed by popcount(size) 32-byte subtree hashes."""
        return self._size.to_bytes(_SIZE_BYTES, "big") + b"".join(self._nodes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        if len(data) < _SIZE_BYTES:
            raise ValueError("a frontier is at least 8 bytes (its size)")
        size = int.from_bytes(data[:_SIZE_BYTES], "big")
        body = data[_SIZE_BYTES:]
        count = size.bit_count()
        if len(body) != count * HASH_SIZE:
            raise ValueError(f"a frontier of size {size} holds {count} hashes "
                             f"({count * HASH_SIZE} bytes), got {len(body)} bytes")
        f = cls()
        f._size = size
        f._nodes = [body[i:i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return f

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Frontier) and self._size == other._size
                and self._nodes == other._nodes)

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves (given as leaf hashes): O(n) time, O(log n) memory."""
    f = Frontier()
    f.extend(leaf_hashes)
    return f.root()


class MerkleTree:
    """Every leaf in memory, with the hash of every perfect (aligned, power-of-two) subtree
    cached level by level: the root of any prefix, and any inclusion or consistency proof within
    it, cost O(log² n) hashes after an O(n) build (about 64 bytes of memory per leaf).

    The module's ``inclusion_proof`` and ``consistency_proof`` build one for a single proof; a
    caller proving many things about one tree (verify, a bundle) builds it once.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        base = bytearray()
        for leaf in leaf_hashes:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
            base += leaf
        levels = [bytes(base)]
        step = 2 * HASH_SIZE
        while len(levels[-1]) >= step:
            cur = levels[-1]
            levels.append(b"".join(node_hash(cur[i:i + HASH_SIZE], cur[i + HASH_SIZE:i + step])
                                   for i in range(0, len(cur) - len(cur) % step, step)))
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE]

    def subtree_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (0 <= lo <= hi <= size)."""
        if not 0 <= lo <= hi <= self.size:
            raise ValueError(f"range {lo}..{hi} is outside a tree of {self.size} leaves")
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:  # a cached perfect subtree
            level = n.bit_length() - 1
            i = (lo >> level) * HASH_SIZE
            return self._levels[level][i:i + HASH_SIZE]
        k = _split(n)
        return node_hash(self.subtree_root(lo, lo + k), self.subtree_root(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all)."""
        return self.subtree_root(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.1 PATH(index, D[size]): leaf's sibling first."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is outside 0..{self.size}")
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} is outside a tree of {n} leaves")
        proof: list[bytes] = []
        lo, hi, m = 0, n, index
        # Walk down from the root; each level contributes the other side's subtree root.
        # Collected top-down, returned bottom-up (the order RFC 6962 and tlog-proof use).
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                proof.append(self.subtree_root(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.subtree_root(lo, lo + k))
                lo, m = lo + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.2 PROOF(old_size, D[new_size]); empty when old_size is 0 or new_size."""
        n = self.size if new_size is None else new_size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is outside 0..{self.size}")
        if not 0 <= old_size <= n:
            raise ValueError(f"old size {old_size} is outside 0..{n}")
        if old_size in (0, n):
            return []
        proof: list[bytes] = []
        lo, hi, m, complete = 0, n, old_size, True
        # SUBPROOF(m, D[lo:hi], complete), unrolled; collected top-down, returned bottom-up.
        while True:
            if m == hi - lo:
                if not complete:
                    proof.append(self.subtree_root(lo, hi))
                break
            k = _split(hi - lo)
            if m <= k:
                proof.append(self.subtree_root(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.subtree_root(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        proof.reverse()
        return proof


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[n]) for n = len(leaf_hashes): leaf's sibling first."""
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(old_size, D[n]) for n = len(leaf_hashes).

    Empty when old_size is 0 or n (there is nothing to prove).
    """
    return MerkleTree(leaf_hashes).consistency_proof(old_size)


def _ok_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """True iff ``proof`` shows the leaf hash at ``index`` in the tree of ``size`` with ``root``."""
    if not 0 <= index < size or not _ok_hashes(leaf_hash, root, *proof):
        return False
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True iff ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    An empty old tree is a prefix of every tree (and needs an empty proof); equal sizes need equal
    roots and an empty proof.
    """
    if not 0 <= old_size <= new_size or not _ok_hashes(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a perfect old tree is itself a node of the new one
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root

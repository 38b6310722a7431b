"""RFC 6962 Merkle trees: the known answers published with transparency-dev/merkle, byte for
byte, and properties over random trees (every proof verifies; any alteration does not)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from governance_pipeline_tests.rfc6962_vectors import (
    CONSISTENCY_PROBES,
    INCLUSION_PROBES,
    LEAF_INPUTS,
    ROOTS,
)

LEAVES = [leaf_hash(bytes.fromhex(x)) for x in LEAF_INPUTS]
_h = bytes.fromhex


def _hashes(items: list[str]) -> list[bytes]:
    return [_h(x) for x in items]


# --- published vectors ---------------------------------------------------------------------------

def test_hash_primitives_match_rfc6962_definitions():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == _h(ROOTS[0])
    # testonly/constants.go NodeHashes()[0][0]: the leaf hash of the empty leaf input.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    # NodeHashes()[1][0] = node(leaf 0, leaf 1).
    assert node_hash(LEAVES[0], LEAVES[1]).hex() == (
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")


@pytest.mark.parametrize("size", range(9))
def test_root_of_every_prefix_matches_testonly_root_hashes(size):
    # testonly/constants.go RootHashes()[size]
    assert root_hash(LEAVES[:size]).hex() == ROOTS[size]
    f = Frontier()
    f.extend(LEAVES[:size])
    assert f.root().hex() == ROOTS[size] and f.size == size


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=[p[0] for p in INCLUSION_PROBES])
def test_published_inclusion_proofs_verify_and_are_what_we_generate(probe):
    path, index, size, root, leaf, proof = probe
    assert verify_inclusion(_h(leaf), index, size, _hashes(proof), _h(root)), path
    assert inclusion_proof(LEAVES[:size], index) == _hashes(proof)
    assert root_hash(LEAVES[:size]).hex() == root


def _one_bit_off(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=[p[0] for p in INCLUSION_PROBES])
def test_published_inclusion_proofs_fail_once_any_hash_is_altered(probe):
    path, index, size, root, leaf, proof = probe
    hashes = _hashes(proof)
    assert not verify_inclusion(_one_bit_off(_h(leaf)), index, size, hashes, _h(root)), path
    assert not verify_inclusion(_h(leaf), index, size, hashes, _one_bit_off(_h(root))), path
    for i in range(len(hashes)):
        altered = hashes[:i] + [_one_bit_off(hashes[i])] + hashes[i + 1:]
        assert not verify_inclusion(_h(leaf), index, size, altered, _h(root)), (path, i)
    assert not verify_inclusion(_h(leaf), index, size, hashes + [_h(root)], _h(root)), path


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=[p[0] for p in CONSISTENCY_PROBES])
def test_published_consistency_proofs_verify_and_are_what_we_generate(probe):
    path, size1, size2, root1, root2, proof = probe
    assert verify_consistency(size1, size2, _h(root1), _h(root2), _hashes(proof)), path
    assert consistency_proof(LEAVES[:size2], size1) == _hashes(proof)


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=[p[0] for p in CONSISTENCY_PROBES])
def test_published_consistency_proofs_fail_once_any_hash_is_altered(probe):
    path, size1, size2, root1, root2, proof = probe
    hashes = _hashes(proof)
    assert not verify_consistency(size1, size2, _one_bit_off(_h(root1)), _h(root2), hashes), path
    assert not verify_consistency(size1, size2, _h(root1), _one_bit_off(_h(root2)), hashes), path
    for i in range(len(hashes)):
        altered = hashes[:i] + [_one_bit_off(hashes[i])] + hashes[i + 1:]
        assert not verify_consistency(size1, size2, _h(root1), _h(root2), altered), (path, i)


# --- properties ----------------------------------------------------------------------------------

def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.integers(0, 255))
def test_every_inclusion_proof_verifies_and_no_alteration_does(size_index, bit):
    size, index = size_index
    leaves = _leaves(size)
    root = root_hash(leaves)
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(leaves[index], index, size, proof, root)
    assert not verify_inclusion(_flip(leaves[index], bit), index, size, proof, root)
    assert not verify_inclusion(leaves[index], index, size, proof, _flip(root, bit))
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], bit)
        assert not verify_inclusion(leaves[index], index, size, bad, root)
    for wrong in {index + 1, index - 1, index ^ 1} - {index}:
        if 0 <= wrong < size and leaves[wrong] != leaves[index]:
            assert not verify_inclusion(leaves[index], wrong, size, proof, root)
    # (A size whose path has the same shape, e.g. 4 for leaf 0 of 3, recomputes the same root:
    # the size is bound by the signed checkpoint, not by the proof.)
    assert not verify_inclusion(leaves[index], index, size * 2, proof, root)
    if size > 1:
        assert not verify_inclusion(leaves[index], index, size, proof + [root], root)
    if proof:
        assert not verify_inclusion(leaves[index], index, size, proof[:-1], root)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.integers(0, 255))
def test_every_consistency_proof_verifies_and_no_alteration_does(sizes, bit):
    old, new = sizes
    leaves = _leaves(new)
    old_root, new_root = root_hash(leaves[:old]), root_hash(leaves)
    proof = consistency_proof(leaves, old)
    assert verify_consistency(old, new, old_root, new_root, proof)
    if 0 < old < new:
        assert not verify_consistency(old, new, _flip(old_root, bit), new_root, proof)
        assert not verify_consistency(old, new, old_root, _flip(new_root, bit), proof)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = _flip(bad[i], bit)
            assert not verify_consistency(old, new, old_root, new_root, bad)
        assert not verify_consistency(old, new * 2, old_root, new_root, proof)
        if old > 1:
            assert not verify_consistency(old - 1, new, old_root, new_root, proof)
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, proof + [new_root])
        # A different old tree of the same size (a fork) is not extended by the new one.
        forked = root_hash(leaves[:old - 1] + [leaf_hash(b"forked")])
        assert not verify_consistency(old, new, forked, new_root, proof)
    assert not verify_consistency(new + 1, new, new_root, new_root, [])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_frontier_appends_equal_the_full_root_and_round_trip(chunks):
    leaves: list[bytes] = []
    f = Frontier()
    for n in chunks:
        new = [leaf_hash(f"{len(leaves) + i}".encode()) for i in range(n)]
        leaves += new
        f.extend(new)
        assert f.root() == root_hash(leaves) and f.size == len(leaves)
        g = Frontier.from_bytes(f.to_bytes())
        assert g == f and g.root() == f.root()
        assert len(f.to_bytes()) == 8 + 32 * bin(len(leaves)).count("1")


def test_frontier_round_trip_of_empty_and_rejects_bad_bytes():
    assert Frontier.from_bytes(Frontier().to_bytes()).root() == EMPTY_ROOT
    f = Frontier()
    f.extend(LEAVES[:3])
    raw = f.to_bytes()
    for bad in (raw[:-1], raw + b"\x00", raw[:7], (4).to_bytes(8, "big") + raw[8:]):
        with pytest.raises(ValueError):
            Frontier.from_bytes(bad)
    with pytest.raises(ValueError):
        f.append(b"short")


def test_proof_builders_refuse_out_of_range():
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:3], 4)
    assert merkle.consistency_proof(LEAVES[:3], 0) == []
    assert not verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_merkle_tree_prefixes_equal_the_prefix_trees(n_size):
    n, size = n_size
    leaves = _leaves(n)
    tree = merkle.MerkleTree(leaves)
    assert tree.size == n and tree.root() == root_hash(leaves)
    assert tree.root(size) == root_hash(leaves[:size])
    prefix = merkle.MerkleTree(leaves[:size])
    for index in {0, size // 2, size - 1} if size else set():
        assert tree.inclusion_proof(index, size) == prefix.inclusion_proof(index)
    for old in {0, size // 3, size}:
        assert tree.consistency_proof(old, size) == prefix.consistency_proof(old)
        assert verify_consistency(old, size, tree.root(old), tree.root(size),
                                  tree.consistency_proof(old, size))
    with pytest.raises(ValueError):
        tree.root(n + 1)

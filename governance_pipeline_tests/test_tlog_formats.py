"""C2SP checkpoints and tlog proofs: the spec examples byte for byte, round trips, a must-reject
for every parse rule, and end-to-end verification of a proof against a signed checkpoint."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts import tlog_errors as codes
from governance_pipeline.contracts.merkle import inclusion_proof, leaf_hash, root_hash
from governance_pipeline.contracts.signed_note import (
    Verifier,
    add_signatures,
    cosign,
    parse_note,
    sign_note,
)
from governance_pipeline.contracts.tlog_checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
)
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.contracts.tlog_proof import TlogProof, parse_tlog_proof, verify_tlog_proof

# c2sp.org/tlog-checkpoint, the example at the top (copied in /work/wt/c2sp-specs/).
SPEC_CHECKPOINT = ("example.com/behind-the-sofa\n20852163\n"
                   "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
SPEC_CHECKPOINT_SIG = ("— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDe"
                       "OoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n")
# c2sp.org/tlog-proof, the example's unelided lines (its signatures are elided with "[...]").
SPEC_PROOF_HEAD = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=
"""
SPEC_PROOF_CHECKPOINT = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n"


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def _code(exc: pytest.ExceptionInfo[TlogError]) -> str:
    return exc.value.code.code


# --- checkpoints ---------------------------------------------------------------------------------

def test_spec_checkpoint_parses_and_formats_byte_for_byte():
    body, sigs = parse_note(SPEC_CHECKPOINT + "\n" + SPEC_CHECKPOINT_SIG)
    cp = parse_checkpoint(body)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.body() == SPEC_CHECKPOINT
    assert sigs[0].name == cp.origin and len(sigs[0].signature) == 64


def test_checkpoint_round_trip_with_extensions_and_empty_tree():
    cp = Checkpoint("landscape.example/run/r1", 0, root_hash([]), ("ext one", "ext-2"))
    assert cp.body() == ("landscape.example/run/r1\n0\n"
                         "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next-2\n")
    assert parse_checkpoint(cp.body()) == cp


BAD_CHECKPOINTS = {
    "two lines": "origin\n5\n",
    "no final newline": "origin\n5\n" + "A" * 43 + "=",
    "empty origin": "\n5\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "leading zero": "origin\n05\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "negative size": "origin\n-5\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "plus sign": "origin\n+5\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "size with space": "origin\n5 \n" + base64.b64encode(bytes(32)).decode() + "\n",
    "size above 2^64-1": f"origin\n{2**64}\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "root of 31 bytes": "origin\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",
    "root of 33 bytes": "origin\n5\n" + base64.b64encode(bytes(33)).decode() + "\n",
    "root not base64": "origin\n5\n" + "*" * 44 + "\n",
    "root unpadded": "origin\n5\n" + base64.b64encode(bytes(32)).decode().rstrip("=") + "\n",
    "empty extension line": "origin\n5\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
    "empty middle extension": "origin\n5\n" + base64.b64encode(bytes(32)).decode() + "\na\n\nb\n",
}


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
def test_malformed_checkpoints_are_refused(name):
    with pytest.raises(TlogError) as exc:
        parse_checkpoint(BAD_CHECKPOINTS[name])
    assert _code(exc) == codes.CHECKPOINT_MALFORMED.code


def test_checkpoint_constructor_refuses_what_parse_refuses():
    for kwargs in ({"origin": ""}, {"size": -1}, {"size": 2**64}, {"root_hash": bytes(31)},
                   {"extensions": ("",)}):
        args = {"origin": "o", "size": 1, "root_hash": bytes(32)} | kwargs
        with pytest.raises(TlogError):
            Checkpoint(**args)


def _log(n: int) -> tuple[list[bytes], Ed25519PrivateKey, str, Verifier]:
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(n)]
    key = Ed25519PrivateKey.generate()
    origin = "landscape.example/scope/run_1"
    return leaves, key, origin, Verifier.ed25519(origin, _raw(key))


def test_open_checkpoint_requires_a_log_signature_and_the_origin():
    leaves, key, origin, v = _log(5)
    note = sign_note(Checkpoint(origin, 5, root_hash(leaves)).body(), origin, key.sign, _raw(key))
    cp, _ = open_checkpoint(note, [v], origin)
    assert cp.size == 5 and cp.root_hash == root_hash(leaves)
    with pytest.raises(TlogError) as exc:
        open_checkpoint(note, [v], "landscape.example/scope/other")
    assert _code(exc) == codes.CHECKPOINT_ORIGIN.code
    # A witness's cosignature alone does not make the checkpoint the log's.
    w = Ed25519PrivateKey.generate()
    wv = Verifier.cosigner("witness.example", _raw(w))
    cosigned = add_signatures(note, [cosign(parse_note(note)[0], "witness.example", w.sign,
                                            _raw(w), 1700000000)])
    with pytest.raises(TlogError) as exc:
        open_checkpoint(cosigned, [wv], origin)
    assert _code(exc) == codes.NOTE_UNVERIFIED.code
    _, opened = open_checkpoint(cosigned, [v, wv], origin)
    assert [s.timestamp for s in opened.verified] == [None, 1700000000]


# --- tlog proofs ---------------------------------------------------------------------------------

def test_spec_proof_example_parses_and_formats_byte_for_byte():
    # The example's signature lines are elided; ours are a real signature over its checkpoint.
    key = Ed25519PrivateKey.generate()
    note = sign_note(SPEC_PROOF_CHECKPOINT, "example.com/fancylog", key.sign, _raw(key))
    text = SPEC_PROOF_HEAD + "\n" + note
    proof = parse_tlog_proof(text)
    assert proof.index == 73894 and len(proof.hashes) == 5
    assert proof.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert proof.hashes[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert proof.checkpoint_note == note
    assert proof.format() == text
    assert proof.checkpoint().size == 109482


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.one_of(st.none(), st.binary(min_size=1, max_size=40)))
def test_proof_round_trip_and_verification(size_index, extra):
    size, index = size_index
    leaves, key, origin, v = _log(size)
    note = sign_note(Checkpoint(origin, size, root_hash(leaves)).body(), origin, key.sign,
                     _raw(key))
    proof = TlogProof(index, tuple(inclusion_proof(leaves, index)), note, extra)
    assert parse_tlog_proof(proof.format()) == proof
    assert verify_tlog_proof(parse_tlog_proof(proof.format()), leaves[index], [v], origin).size \
        == size
    other = (index + 1) % size
    if leaves[other] != leaves[index]:
        with pytest.raises(TlogError) as exc:
            verify_tlog_proof(proof, leaves[other], [v], origin)
        assert _code(exc) == codes.INCLUSION_FAILED.code


def test_verify_tlog_proof_refusals():
    leaves, key, origin, v = _log(7)
    body = Checkpoint(origin, 7, root_hash(leaves)).body()
    note = sign_note(body, origin, key.sign, _raw(key))
    proof = TlogProof(3, tuple(inclusion_proof(leaves, 3)), note)
    assert verify_tlog_proof(proof, leaves[3], [v], origin).root_hash == root_hash(leaves)
    stranger = Verifier.ed25519(origin, _raw(Ed25519PrivateKey.generate()))
    with pytest.raises(TlogError) as exc:
        verify_tlog_proof(proof, leaves[3], [stranger], origin)
    assert _code(exc) == codes.NOTE_UNVERIFIED.code
    with pytest.raises(TlogError) as exc:
        verify_tlog_proof(proof, leaves[3], [v], origin + "x")
    assert _code(exc) == codes.CHECKPOINT_ORIGIN.code
    wrong_index = TlogProof(4, proof.hashes, note)
    with pytest.raises(TlogError) as exc:
        verify_tlog_proof(wrong_index, leaves[3], [v], origin)
    assert _code(exc) == codes.INCLUSION_FAILED.code
    # A checkpoint re-signed for a bigger size with the same root: its signature is the log's,
    # but the proof does not fit the size.
    lying = sign_note(Checkpoint(origin, 14, root_hash(leaves)).body(), origin, key.sign,
                      _raw(key))
    with pytest.raises(TlogError) as exc:
        verify_tlog_proof(TlogProof(3, proof.hashes, lying), leaves[3], [v], origin)
    assert _code(exc) == codes.INCLUSION_FAILED.code
    tampered = note.replace("\n7\n", "\n8\n")
    with pytest.raises(TlogError) as exc:
        verify_tlog_proof(TlogProof(3, proof.hashes, tampered), leaves[3], [v], origin)
    assert _code(exc) == codes.NOTE_SIGNATURE_INVALID.code


def _good_proof_text() -> str:
    leaves, key, origin, _ = _log(4)
    note = sign_note(Checkpoint(origin, 4, root_hash(leaves)).body(), origin, key.sign, _raw(key))
    return TlogProof(1, tuple(inclusion_proof(leaves, 1)), note, b"x").format()


def _mangle(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


H = base64.b64encode(bytes(32)).decode()
BAD_PROOFS = {
    "wrong header": lambda t: _mangle(t, "c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
    "no header": lambda t: t.split("\n", 1)[1],
    "extra not base64": lambda t: _mangle(t, "extra eA==", "extra e*=="),
    "extra empty": lambda t: _mangle(t, "extra eA==", "extra "),
    "extra after index": lambda t: _mangle(_mangle(t, "extra eA==\n", ""), "index 1\n",
                                           "index 1\nextra eA==\n"),
    "no index": lambda t: _mangle(t, "index 1\n", ""),
    "index leading zero": lambda t: _mangle(t, "index 1", "index 01"),
    "index negative": lambda t: _mangle(t, "index 1", "index -1"),
    "index two spaces": lambda t: _mangle(t, "index 1", "index  1"),
    "short hash": lambda t: _mangle(t, "index 1\n", "index 1\n"
                                    + base64.b64encode(bytes(31)).decode() + "\n"),
    "no blank line": lambda t: t.replace("\n\n", "\n", 1),
    "no checkpoint": lambda t: t.split("\n\n", 1)[0] + "\n\n",
    "unsigned checkpoint": lambda t: t.split("\n\n", 1)[0] + "\n\norigin\n4\n" + H + "\n",
    "bad checkpoint": lambda t: _mangle(t, "\n4\n", "\n04\n"),
}


@pytest.mark.parametrize("name", BAD_PROOFS)
def test_malformed_proofs_are_refused(name):
    text = BAD_PROOFS[name](_good_proof_text())
    with pytest.raises(TlogError) as exc:
        parse_tlog_proof(text)
    assert _code(exc) == codes.PROOF_MALFORMED.code


def test_the_good_proof_of_the_rejection_table_parses():
    # Must-pass twin of the table above.
    proof = parse_tlog_proof(_good_proof_text())
    assert proof.index == 1 and proof.extra == b"x" and len(proof.hashes) == 2

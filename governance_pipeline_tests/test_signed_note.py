"""C2SP signed notes and Ed25519 cosignatures: the published vectors byte for byte, round trips,
and a must-reject for every rule of the format."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts import tlog_errors as codes
from governance_pipeline.contracts.signed_note import (
    MAX_SIGNATURES,
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    NoteSignature,
    Verifier,
    add_signatures,
    cosign,
    cosignature_message,
    note_key_id,
    open_note,
    open_note_detailed,
    parse_note,
    sign_note,
)
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape.keys import Signer

# golang.org/x/mod sumdb/note/note_test.go (TestNewVerifier, TestSign, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = ("If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n")
PETER_SIG = ("— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
             "qdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
             "wnWLox33WWd1RvMc+QQ=\n")

# c2sp.org/signed-note, "Verifier keys / Example" (copied in /work/wt/c2sp-specs/signed-note.md).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfX"
             "ppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")


def _peter() -> tuple[Ed25519PrivateKey, bytes]:
    # The skey's last field is base64(0x01 || 32-byte Ed25519 seed).
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])  # PRIVATE+KEY+name+id+key
    assert raw[0] == SIG_ED25519
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    return key, _raw(key)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def _code(exc: pytest.ExceptionInfo[TlogError]) -> str:
    return exc.value.code.code


# --- vectors ---------------------------------------------------------------------------------

def test_spec_vkey_verifies_the_spec_note():
    v = Verifier.from_vkey(SPEC_VKEY)
    assert (v.name, v.key_id, v.sig_type) == ("example.com/foo", 0x530D903A, SIG_ED25519)
    assert v.vkey() == SPEC_VKEY
    assert open_note(SPEC_NOTE, [v]) == ("This is an example message.\n", [v])


def test_go_vector_key_id_vkey_and_signature_byte_for_byte():
    key, pub = _peter()
    assert note_key_id("PeterNeumann", SIG_ED25519, pub) == 0xC74F20A3
    assert Verifier.ed25519("PeterNeumann", pub).vkey() == PETER_VKEY
    # Ed25519 is deterministic: our note equals TestSign's `want` exactly.
    assert sign_note(TEXT, "PeterNeumann", key.sign, pub) == TEXT + "\n" + PETER_SIG


def test_go_vector_open_one_known_one_unknown_and_both():
    peter, enoch = Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = open_note_detailed(note, [peter])
    assert opened.body == TEXT and [v.verifier for v in opened.verified] == [peter]
    assert [s.name for s in opened.unverified] == ["EnochRoot"]
    assert open_note(note, [peter, enoch]) == (TEXT, [peter, enoch])
    with pytest.raises(TlogError) as exc:
        open_note(note, [])
    assert _code(exc) == codes.NOTE_UNVERIFIED.code
    # Duplicate lines count once (TestOpen "Duplicated verified and unverified signatures").
    assert open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG, [peter])[1] == [peter]


def test_go_vector_invalid_signature_of_a_known_key_rejects_the_note():
    peter = Verifier.from_vkey(PETER_VKEY)
    bad = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]  # TestOpen "Invalid signature"
    with pytest.raises(TlogError) as exc:
        open_note(bad, [peter])
    assert _code(exc) == codes.NOTE_SIGNATURE_INVALID.code
    # The same bad signature from a key we do not know is ignored; Peter's good one verifies.
    enoch_bad = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    assert open_note(TEXT + "\n" + PETER_SIG + enoch_bad, [peter])[1] == [peter]


def test_go_vector_mangled_vkeys_are_refused():
    # TestNewVerifier: every substring and every byte+1 of the vkey is refused.
    b = PETER_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(TlogError):
                    Verifier.from_vkey(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(TlogError):
            Verifier.from_vkey(mangled.decode())
    for k in ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
              "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):
        with pytest.raises(TlogError) as exc:
            Verifier.from_vkey(k)
        assert _code(exc) == codes.VKEY_INVALID.code


BAD_NOTES = {
    # TestOpen badMsgs
    "no signatures": TEXT,
    "blank line, no signatures": TEXT + "\n",
    "no final newline": TEXT + "\n" + PETER_SIG[:-1],
    "control character": "\x01" + TEXT + "\n" + PETER_SIG,
    "space in key name": TEXT + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F"
                                "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    "line after the signatures": TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    # The other rules of c2sp.org/signed-note.
    "tab": TEXT.replace(" ", "\t", 1) + "\n" + PETER_SIG,
    "carriage return": TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG,
    "hyphen, not em dash": TEXT + "\n" + PETER_SIG.replace("—", "-"),
    "no space after dash": TEXT + "\n" + PETER_SIG.replace("— ", "—"),
    "plus in key name": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
    "empty key name": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", ""),
    "no-break space in key name": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter\u00a0N"),
    "not base64": TEXT + "\n— PeterNeumann not*base64\n",
    "base64 without padding": TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM\n"),
    "base64 of 4 bytes": TEXT + "\n— PeterNeumann AAAAAA==\n",
    "non-canonical base64": TEXT + "\n— PeterNeumann AAAAAAB=\n",
    "two blank lines before the signatures": TEXT + "\n" + PETER_SIG + "\n",
    "too many signatures": TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1),
}


@pytest.mark.parametrize("name", BAD_NOTES)
def test_malformed_notes_are_refused(name):
    peter = Verifier.from_vkey(PETER_VKEY)
    with pytest.raises(TlogError) as exc:
        open_note(BAD_NOTES[name], [peter])
    assert _code(exc) == codes.NOTE_MALFORMED.code


def test_invalid_utf8_is_refused_and_the_cap_is_inclusive():
    peter = Verifier.from_vkey(PETER_VKEY)
    with pytest.raises(TlogError) as exc:
        parse_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode())  # TestOpen "\xff" badMsg
    assert _code(exc) == codes.NOTE_MALFORMED.code
    with pytest.raises(TlogError):
        parse_note("\ud800" + TEXT + "\n" + PETER_SIG)  # a lone surrogate is not UTF-8
    assert open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [peter])[1] == [peter]
    assert open_note((TEXT + "\n" + PETER_SIG).encode(), [peter])[0] == TEXT


def test_the_separator_is_the_last_blank_line():
    key, pub = _peter()
    body = "first\n\nsecond paragraph\n"
    note = sign_note(body, "PeterNeumann", key.sign, pub)
    assert parse_note(note)[0] == body
    assert open_note(note, [Verifier.ed25519("PeterNeumann", pub)])[0] == body


# --- round trips and signing --------------------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)),
                        max_size=30), min_size=1, max_size=5),
       st.sampled_from(["example.com/log", "landscape.example/global", "ünïcode.example/ß"]))
def test_sign_open_round_trip(lines, name):
    key = Ed25519PrivateKey.generate()
    body = "\n".join(lines) + "\n"
    note = sign_note(body, name, key.sign, _raw(key))
    v = Verifier.ed25519(name, _raw(key))
    assert open_note(note, [v]) == (body, [v])
    assert Verifier.from_vkey(v.vkey()) == v
    sig = parse_note(note)[1][0]
    assert sig.line() == note[len(body) + 1:]


def test_existing_signer_adapts_through_hex():
    signer = Signer.generate()
    pub = _raw_pub(signer)
    note = sign_note("hello\n", "landscape.example", lambda m: bytes.fromhex(signer.sign(m)), pub)
    assert open_note(note, [Verifier.ed25519("landscape.example", pub)])[0] == "hello\n"


def _raw_pub(signer: Signer) -> bytes:
    return signer.public.key.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)


def test_signing_refuses_bad_bodies_names_and_mismatched_keys():
    key, pub = _peter()
    for body in ("abc", "", "tab\there\n"):  # TestSign "short text"; empty; control character
        with pytest.raises(TlogError):
            sign_note(body, "PeterNeumann", key.sign, pub)
    with pytest.raises(TlogError) as exc:
        sign_note(TEXT, "a+b", key.sign, pub)
    assert _code(exc) == codes.KEY_NAME_INVALID.code
    other = Ed25519PrivateKey.generate()
    with pytest.raises(TlogError) as exc:
        sign_note(TEXT, "PeterNeumann", other.sign, pub)
    assert _code(exc) == codes.SIGNER_FAILED.code


def test_add_signatures_appends_once_and_keeps_the_body():
    key, pub = _peter()
    note = sign_note(TEXT, "PeterNeumann", key.sign, pub)
    both = add_signatures(note, [ENOCH_SIG, ENOCH_SIG, PETER_SIG])
    assert both == TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, [Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)])[1]
    with pytest.raises(TlogError):
        add_signatures(note, ["— bad name AAAAAAA=\n"])


def test_ambiguous_verifiers_are_refused_when_they_matter():
    peter = Verifier.from_vkey(PETER_VKEY)
    enoch = Verifier.from_vkey(ENOCH_VKEY)
    # Same name and id, different key: a forged Verifier bypassing the id check is the only way.
    impostor = object.__new__(Verifier)
    for f, val in (("name", enoch.name), ("key_id", enoch.key_id), ("sig_type", SIG_ED25519),
                   ("public_key_raw", peter.public_key_raw)):
        object.__setattr__(impostor, f, val)
    with pytest.raises(TlogError) as exc:
        open_note(TEXT + "\n" + ENOCH_SIG, [enoch, impostor])
    assert _code(exc) == codes.VERIFIERS_AMBIGUOUS.code
    # TestOpen "Check unused duplicated verifier": duplicates of one key are fine.
    assert open_note(TEXT + "\n" + PETER_SIG, [enoch, peter, enoch])[1] == [peter]


def test_key_id_mismatch_is_refused():
    _, pub = _peter()
    with pytest.raises(TlogError) as exc:
        Verifier("PeterNeumann", 0xC74F20A4, SIG_ED25519, pub)
    assert _code(exc) == codes.VKEY_INVALID.code


# --- cosignatures (c2sp.org/tlog-cosignature) -----------------------------------------------------

# tlog-cosignature.md: the example checkpoint and its witness line, and the signed message.
COSIG_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
COSIG_LINE = ("— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
              "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==")
COSIG_MESSAGE = ("cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
                 "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")


def test_spec_cosignature_message_and_timestamp():
    assert cosignature_message(COSIG_BODY, 1679315147) == COSIG_MESSAGE.encode()
    _, sigs = parse_note(COSIG_BODY + "\n" + COSIG_LINE + "\n")
    # The spec's example line carries the example's timestamp (its key is not published).
    assert sigs[0].cosignature_timestamp() == 1679315147
    assert len(sigs[0].signature) == 72


def test_cosign_round_trip_and_refusals():
    log, witness = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    note = sign_note(COSIG_BODY, "example.com/behind-the-sofa", log.sign, _raw(log))
    line = cosign(COSIG_BODY, "witness.example/w1", witness.sign, _raw(witness), 1700000000)
    cosigned = add_signatures(note, [line])
    wv = Verifier.cosigner("witness.example/w1", _raw(witness))
    assert wv.sig_type == SIG_COSIGNATURE_V1 and Verifier.from_vkey(wv.vkey()) == wv
    opened = open_note_detailed(cosigned, [Verifier.ed25519("example.com/behind-the-sofa",
                                                            _raw(log)), wv])
    assert [(v.verifier.sig_type, v.timestamp) for v in opened.verified] == [
        (SIG_ED25519, None), (SIG_COSIGNATURE_V1, 1700000000)]
    # The same key as an 0x01 verifier has another key id: the cosignature is just unknown.
    with pytest.raises(TlogError) as exc:
        open_note(cosigned, [Verifier.ed25519("witness.example/w1", _raw(witness))])
    assert _code(exc) == codes.NOTE_UNVERIFIED.code
    # A changed timestamp breaks the signature.
    sig = parse_note(cosigned)[1][1]
    moved = NoteSignature(sig.name, sig.key_id, (1700000001).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(TlogError) as exc:
        open_note(note + moved.line(), [wv])
    assert _code(exc) == codes.NOTE_SIGNATURE_INVALID.code
    for ts in (-1, 2**63):
        with pytest.raises(TlogError) as exc:
            cosign(COSIG_BODY, "w", witness.sign, _raw(witness), ts)
        assert _code(exc) == codes.COSIGNATURE_MALFORMED.code
    too_big = NoteSignature(sig.name, sig.key_id, (2**63).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(TlogError) as exc:
        too_big.cosignature_timestamp()
    assert _code(exc) == codes.COSIGNATURE_MALFORMED.code
    with pytest.raises(TlogError) as exc:
        open_note(note + too_big.line(), [wv])
    assert _code(exc) == codes.NOTE_SIGNATURE_INVALID.code

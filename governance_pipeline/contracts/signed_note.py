"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 and Ed25519 cosignatures (tlog-cosignature).

A signed note is a text ending in a newline, a blank line, and one or more lines
``— <key name> base64(uint32 key id || signature)``. We implement the two Ed25519 signature types
transparency logs use: 0x01 (the log's own signature over the text) and 0x04 (a witness's
timestamped cosignature over ``cosignature/v1\\ntime T\\n`` + the text). Nothing else is accepted
for signing or as a verifier, and unknown signatures are ignored when opening a note, as the spec
requires.

Signing takes a ``sign(message) -> 64-byte signature`` callable and the raw public key, not a
private key, so a key held in a KMS or HSM can sign. The result is checked against the public key
before it is returned: a mismatched pair fails at signing time, not at some later verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from governance_pipeline.contracts.tlog_errors import (
    COSIGNATURE_MALFORMED,
    KEY_NAME_INVALID,
    NOTE_MALFORMED,
    NOTE_SIGNATURE_INVALID,
    NOTE_UNVERIFIED,
    SIGNER_FAILED,
    VERIFIERS_AMBIGUOUS,
    VKEY_INVALID,
    TlogError,
)

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
SUPPORTED_TYPES = frozenset({SIG_ED25519, SIG_COSIGNATURE_V1})

#: The spec asks verifiers to accept at least 16; the Go reference (golang.org/x/mod/sumdb/note)
#: caps at 100, and so do we, so no note is accepted here that it rejects.
MAX_SIGNATURES = 100
ED25519_KEY_SIZE = 32
ED25519_SIG_SIZE = 64
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = 2**63 - 1

SIG_PREFIX = "\u2014 "  # em dash, space
COSIGNATURE_HEADER = b"cosignature/v1\n"

Sign = Callable[[bytes], bytes]


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes | None:
    """Standard padded base64 (RFC 4648 §4) in its one canonical spelling, or None.

    Python's decoder, like Go's default one, accepts non-zero trailing bits; re-encoding catches
    those, so one value has exactly one accepted text.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if _b64encode(raw) == text else None


def valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+`` (and no control characters, which notes forbid)."""
    return (bool(name) and "+" not in name
            and not any(ch.isspace() or ord(ch) < 0x20 for ch in name)
            and _utf8_ok(name))


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def note_key_id(name: str, sig_type: int, public_key_raw: bytes) -> int:
    """uint32 key id: the first 4 bytes, big-endian, of SHA-256(name || 0x0A || type || key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type])
                            + bytes(public_key_raw)).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted key: name, key id, signature type (0x01 or 0x04) and raw Ed25519 public key."""

    name: str
    key_id: int
    sig_type: int
    public_key_raw: bytes

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise TlogError(f"invalid key name {self.name!r}", code=KEY_NAME_INVALID)
        if self.sig_type not in SUPPORTED_TYPES:
            raise TlogError(f"unsupported signature type {self.sig_type:#04x}",
                            code=VKEY_INVALID)
        if len(self.public_key_raw) != ED25519_KEY_SIZE:
            raise TlogError(f"an Ed25519 public key is 32 bytes, got {len(self.public_key_raw)}",
                            code=VKEY_INVALID)
        if self.key_id != note_key_id(self.name, self.sig_type, self.public_key_raw):
            raise TlogError(f"key id {self.key_id:08x} is not the id of key {self.name}",
                            code=VKEY_INVALID)

    @classmethod
    def ed25519(cls, name: str, public_key_raw: bytes) -> Verifier:
        return cls(name, note_key_id(name, SIG_ED25519, public_key_raw), SIG_ED25519,
                   bytes(public_key_raw))

    @classmethod
    def cosigner(cls, name: str, public_key_raw: bytes) -> Verifier:
        return cls(name, note_key_id(name, SIG_COSIGNATURE_V1, public_key_raw),
                   SIG_COSIGNATURE_V1, bytes(public_key_raw))

    @classmethod
    def from_vkey(cls, text: str) -> Verifier:
        """Parse ``<name>+<hex key id>+<base64(type || key)>`` and check the id is the key's."""
        name, _, rest = text.partition("+")
        key_hex, _, key_b64 = rest.partition("+")
        if not valid_key_name(name):
            raise TlogError(f"invalid key name in vkey {text!r}", code=VKEY_INVALID)
        if (len(key_hex) != 8 or any(c not in "0123456789abcdef" for c in key_hex)):
            raise TlogError(f"vkey {text!r}: the key id is not 8 lowercase hex digits",
                            code=VKEY_INVALID)
        raw = b64decode_strict(key_b64)
        if raw is None or len(raw) < 1:
            raise TlogError(f"vkey {text!r}: the key is not base64", code=VKEY_INVALID)
        return cls(name, int(key_hex, 16), raw[0], raw[1:])

    def vkey(self) -> str:
        return (f"{self.name}+{self.key_id:08x}+"
                f"{_b64encode(bytes([self.sig_type]) + self.public_key_raw)}")

    def _public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key_raw)

    def verify(self, body: str, signature: bytes) -> tuple[bool, int | None]:
        """(verified, cosignature timestamp or None) for ``signature`` over the note ``body``."""
        if self.sig_type == SIG_COSIGNATURE_V1:
            if len(signature) != TIMESTAMP_SIZE + ED25519_SIG_SIZE:
                return False, None
            timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
            if timestamp > MAX_TIMESTAMP:
                return False, None
            message = cosignature_message(body, timestamp)
            sig = signature[TIMESTAMP_SIZE:]
        else:
            if len(signature) != ED25519_SIG_SIZE:
                return False, None
            timestamp, message, sig = None, body.encode("utf-8"), signature
        try:
            self._public_key().verify(sig, message)
        except (InvalidSignature, ValueError):  # ValueError: the 32 bytes are not a point
            return False, None
        return True, timestamp


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key id, and the signature bytes after the 4-byte id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """``— <name> base64(id || signature)`` with its newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIG_PREFIX}{self.name} {_b64encode(blob)}\n"

    def cosignature_timestamp(self) -> int:
        """The timestamp of an Ed25519 cosignature (type 0x04), unverified."""
        if len(self.signature) != TIMESTAMP_SIZE + ED25519_SIG_SIZE:
            raise TlogError(f"cosignature of {self.name} is {len(self.signature)} bytes, "
                            f"not 8 + 64", code=COSIGNATURE_MALFORMED)
        timestamp = int.from_bytes(self.signature[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise TlogError(f"cosignature timestamp {timestamp} exceeds 2^63-1",
                            code=COSIGNATURE_MALFORMED)
        return timestamp


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    verifier: Verifier
    timestamp: int | None  # the cosignature's time (POSIX seconds); None for type 0x01


@dataclass(frozen=True, slots=True)
class OpenedNote:
    body: str
    verified: tuple[VerifiedSignature, ...]
    unverified: tuple[NoteSignature, ...]  # signatures of keys not configured


def _malformed(why: str) -> TlogError:
    return TlogError(f"malformed note: {why}", code=NOTE_MALFORMED)


def _check_text(text: str) -> None:
    if not _utf8_ok(text):
        raise _malformed("not valid UTF-8")
    bad = next((ch for ch in text if ord(ch) < 0x20 and ch != "\n"), None)
    if bad is not None:
        raise _malformed(f"control character {ord(bad):#04x} (only newline is allowed)")


def _check_body(body: str) -> None:
    _check_text(body)
    if not body or not body.endswith("\n"):
        raise _malformed("the text must be non-empty and end in a newline")


def parse_signature_line(line: str) -> NoteSignature:
    """One line without its newline: ``— <name> <base64>``."""
    if not line.startswith(SIG_PREFIX):
        raise _malformed(f"signature line does not start with an em dash and a space: {line!r}")
    name, sep, b64 = line[len(SIG_PREFIX):].partition(" ")
    if not sep or not valid_key_name(name):
        raise _malformed(f"invalid key name in signature line {line!r}")
    raw = b64decode_strict(b64)
    # 4 bytes of key id and at least one of signature (the Go reference's rule too).
    if raw is None or len(raw) < 5:
        raise _malformed(f"signature of {name} is not base64 of at least 5 bytes")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def parse_note(text: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text (with its final newline) and its signature lines.

    Enforces the format of c2sp.org/signed-note; checks no signature (``open_note`` does).
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("not valid UTF-8") from None
    _check_text(text)
    split = text.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line separates the text from the signatures")
    body, block = text[:split + 1], text[split + 2:]
    if not block or not block.endswith("\n"):
        raise _malformed("the signature lines must be non-empty and end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"{len(lines)} signatures, more than the {MAX_SIGNATURES} accepted")
    return body, [parse_signature_line(line) for line in lines]


def _sign_checked(message: bytes, sign: Sign, public_key_raw: bytes) -> bytes:
    signature = bytes(sign(message))
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key_raw)).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise TlogError("the signature returned does not verify with the public key given",
                        code=SIGNER_FAILED) from exc
    return signature


def sign_note(body: str, name: str, sign: Sign, public_key_raw: bytes) -> str:
    """The whole signed note: ``body``, a blank line, and one Ed25519 (0x01) signature line."""
    _check_body(body)
    return body + "\n" + signature_line(body, name, sign, public_key_raw)


def signature_line(body: str, name: str, sign: Sign, public_key_raw: bytes) -> str:
    """An Ed25519 (0x01) signature line over ``body``, with its newline."""
    _check_body(body)
    verifier = Verifier.ed25519(name, public_key_raw)
    signature = _sign_checked(body.encode("utf-8"), sign, public_key_raw)
    return NoteSignature(name, verifier.key_id, signature).line()


def add_signatures(note_text: str, lines: Iterable[str | NoteSignature]) -> str:
    """The note with ``lines`` appended to its signatures; exact duplicates are written once."""
    body, existing = parse_note(note_text)
    known = {s.line() for s in existing}
    out = [s.line() for s in existing]
    for item in lines:
        line = item.line() if isinstance(item, NoteSignature) else item
        sig = parse_signature_line(line[:-1] if line.endswith("\n") else line)
        if sig.line() not in known:
            known.add(sig.line())
            out.append(sig.line())
    text = body + "\n" + "".join(out)
    parse_note(text)  # the signature cap
    return text


def cosignature_message(body: str, timestamp: int) -> bytes:
    """What an Ed25519 cosigner signs: ``cosignature/v1``, ``time T`` and the checkpoint text."""
    _check_body(body)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise TlogError(f"cosignature timestamp {timestamp} is outside 0..2^63-1",
                        code=COSIGNATURE_MALFORMED)
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode("ascii") + body.encode("utf-8")


def cosign(body: str, name: str, sign: Sign, public_key_raw: bytes, timestamp: int) -> str:
    """An Ed25519 cosignature (0x04) line over the checkpoint ``body`` at ``timestamp``."""
    verifier = Verifier.cosigner(name, public_key_raw)
    signature = _sign_checked(cosignature_message(body, timestamp), sign, public_key_raw)
    return NoteSignature(name, verifier.key_id,
                         timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature).line()


def open_note_detailed(text: str | bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Verify every signature of a configured key; see ``open_note``."""
    body, signatures = parse_note(text)
    by_id: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        same = by_id.setdefault((v.name, v.key_id), [])
        if v not in same:
            same.append(v)
    verified: list[VerifiedSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[NoteSignature] = set()
    for sig in signatures:
        if sig in seen:
            continue  # the same line twice says nothing more
        seen.add(sig)
        candidates = by_id.get((sig.name, sig.key_id))
        if not candidates:
            unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise TlogError(f"ambiguous key {sig.name}+{sig.key_id:08x}",
                            code=VERIFIERS_AMBIGUOUS)
        ok, timestamp = candidates[0].verify(body, sig.signature)
        if not ok:
            raise TlogError(f"invalid signature for key {sig.name}+{sig.key_id:08x}",
                            code=NOTE_SIGNATURE_INVALID)
        if all(vs.verifier != candidates[0] for vs in verified):
            verified.append(VerifiedSignature(candidates[0], timestamp))
    if not verified:
        raise TlogError("the note has no verifiable signature of a configured key",
                        code=NOTE_UNVERIFIED)
    return OpenedNote(body, tuple(verified), tuple(unverified))


def open_note(text: str | bytes, verifiers: Sequence[Verifier]) -> tuple[str, list[Verifier]]:
    """The note's text and the configured keys whose signatures verified.

    Signatures of keys not in ``verifiers`` are ignored; a configured key whose signature fails
    rejects the whole note (GP-TLOG-002); no verified signature rejects it (GP-TLOG-003).
    """
    opened = open_note_detailed(text, verifiers)
    return opened.body, [vs.verifier for vs in opened.verified]

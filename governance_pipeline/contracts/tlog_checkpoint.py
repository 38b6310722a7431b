"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): the text a log signs.

    <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

``Checkpoint.body()`` writes exactly those bytes and ``parse_checkpoint`` accepts exactly them,
so one tree head has one text (and one signature input).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from governance_pipeline.contracts.merkle import HASH_SIZE
from governance_pipeline.contracts.signed_note import (
    SIG_ED25519,
    OpenedNote,
    Verifier,
    b64decode_strict,
    open_note_detailed,
)
from governance_pipeline.contracts.tlog_errors import (
    CHECKPOINT_MALFORMED,
    CHECKPOINT_ORIGIN,
    NOTE_UNVERIFIED,
    TlogError,
)

_SIZE = re.compile(r"0|[1-9][0-9]*")
MAX_SIZE = 2**64 - 1  # tree sizes and indexes are uint64 in every tlog implementation


def _malformed(why: str) -> TlogError:
    return TlogError(f"malformed checkpoint: {why}", code=CHECKPOINT_MALFORMED)


def _check_line(line: str, what: str) -> None:
    if not line:
        raise _malformed(f"the {what} is empty")
    if any(ord(ch) < 0x20 for ch in line):
        raise _malformed(f"the {what} holds a control character")


def parse_decimal(text: str, what: str) -> int:
    """A uint64 in ASCII decimal without leading zeros (``0`` itself allowed)."""
    if not _SIZE.fullmatch(text):
        raise _malformed(f"the {what} {text!r} is not a decimal without leading zeros")
    value = int(text)
    if value > MAX_SIZE:
        raise _malformed(f"the {what} {text} exceeds 2^64-1")
    return value


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if not 0 <= self.size <= MAX_SIZE:
            raise _malformed(f"the tree size {self.size} is outside 0..2^64-1")
        if len(self.root_hash) != HASH_SIZE:
            raise _malformed(f"the root hash is {len(self.root_hash)} bytes, not 32")
        for ext in self.extensions:
            _check_line(ext, "extension line")

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(f"{line}\n" for line in
                       (self.origin, str(self.size), root, *self.extensions))


def parse_checkpoint(body: str) -> Checkpoint:
    """The checkpoint in a note's text (``open_note``'s first result), strictly."""
    if not body.endswith("\n"):
        raise _malformed("the text does not end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise _malformed("fewer than three lines (origin, size, root hash)")
    origin, size_text, root_text, *extensions = lines
    _check_line(origin, "origin")
    size = parse_decimal(size_text, "tree size")
    root = b64decode_strict(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise _malformed("the root hash is not the base64 of 32 bytes")
    for ext in extensions:
        _check_line(ext, "extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


def open_checkpoint(note_text: str, verifiers: Sequence[Verifier],
                    origin: str | None = None) -> tuple[Checkpoint, OpenedNote]:
    """Verify a signed checkpoint note: a configured Ed25519 log key (type 0x01) must have signed
    it, and its origin must be ``origin`` when one is given.

    ``verifiers`` may also hold cosigners (type 0x04): their signatures are verified too and come
    back in the ``OpenedNote``, but a cosignature alone does not make a checkpoint the log's.
    """
    opened = open_note_detailed(note_text, verifiers)
    if not any(vs.verifier.sig_type == SIG_ED25519 for vs in opened.verified):
        raise TlogError("the checkpoint carries no verified signature of a log key (only "
                        "cosignatures)", code=NOTE_UNVERIFIED)
    checkpoint = parse_checkpoint(opened.body)
    if origin is not None and checkpoint.origin != origin:
        raise TlogError(f"the checkpoint's origin is {checkpoint.origin!r}, not {origin!r}",
                        code=CHECKPOINT_ORIGIN)
    return checkpoint, opened

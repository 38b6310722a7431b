"""C2SP tlog proofs (c2sp.org/tlog-proof@v1): an offline-checkable proof that an entry is logged.

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional)
    index <n>
    <base64 hash>             (the inclusion proof, leaf's sibling first; zero or more)

    <the signed checkpoint note, verbatim>

``TlogProof.format()`` writes exactly this and ``parse_tlog_proof`` accepts exactly it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from governance_pipeline.contracts.merkle import HASH_SIZE, verify_inclusion
from governance_pipeline.contracts.signed_note import Verifier, b64decode_strict, parse_note
from governance_pipeline.contracts.tlog_checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    parse_decimal,
)
from governance_pipeline.contracts.tlog_errors import (
    INCLUSION_FAILED,
    PROOF_MALFORMED,
    TlogError,
)

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # a uint64-sized tree is at most 64 levels deep


def _malformed(why: str) -> TlogError:
    return TlogError(f"malformed tlog proof: {why}", code=PROOF_MALFORMED)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise _malformed("the index is negative")
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise _malformed(f"more than {MAX_PROOF_HASHES} proof hashes")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise _malformed("a proof hash is not 32 bytes")
        if self.extra is not None and not self.extra:
            # "extra " with nothing after it would be a line the spec does not describe.
            raise _malformed("the extra data is empty (leave it out instead)")
        try:
            parse_checkpoint(parse_note(self.checkpoint_note)[0])
        except TlogError as exc:
            raise _malformed(f"the checkpoint: {exc.message}") from exc

    def format(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64(h) for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    def checkpoint(self) -> Checkpoint:
        """The checkpoint the proof leads to, unverified (``verify_tlog_proof`` verifies it)."""
        return parse_checkpoint(parse_note(self.checkpoint_note)[0])


def parse_tlog_proof(text: str) -> TlogProof:
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise _malformed("no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise _malformed(f"the first line is not {HEADER!r}")
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = b64decode_strict(lines[pos][len("extra "):])
        if not extra:
            raise _malformed("the extra line is not non-empty base64")
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise _malformed("no `index N` line")
    try:
        index = parse_decimal(lines[pos][len("index "):], "index")
    except TlogError:
        raise _malformed("the index is not a decimal without leading zeros") from None
    hashes = []
    for line in lines[pos + 1:]:
        h = b64decode_strict(line)
        if h is None or len(h) != HASH_SIZE:
            raise _malformed(f"proof line {line!r} is not the base64 of a 32-byte hash")
        hashes.append(h)
    return TlogProof(index, tuple(hashes), note, extra)


def verify_tlog_proof(proof: TlogProof, leaf_hash: bytes, verifiers: Sequence[Verifier],
                      origin: str) -> Checkpoint:
    """Check a proof: the checkpoint's origin is ``origin``, a configured log key signed it, and
    the inclusion proof leads from ``leaf_hash`` at ``proof.index`` to its root.

    Returns the verified checkpoint. Cosignatures of configured witnesses are verified by
    ``open_checkpoint`` as well; how many are needed is the caller's policy.
    """
    checkpoint, _ = open_checkpoint(proof.checkpoint_note, verifiers, origin)
    if not verify_inclusion(leaf_hash, proof.index, checkpoint.size, list(proof.hashes),
                            checkpoint.root_hash):
        raise TlogError(f"the inclusion proof of index {proof.index} does not lead to the root "
                        f"of the checkpoint of size {checkpoint.size}", code=INCLUSION_FAILED)
    return checkpoint

"""Error codes of the transparency-log formats (signed notes, checkpoints, tlog proofs).

One area, ``GP-TLOG-001`` … ``GP-TLOG-019``. A note, checkpoint or proof that does not parse or
does not verify is evidence that something was altered (exit 5); a key or name we are *given*
that is unusable is invalid input (exit 2).
"""

from __future__ import annotations

from governance_pipeline.contracts.errors import ErrorCode, ExitCode, GovernanceError, register

NOTE_MALFORMED = register(
    "GP-TLOG-001", "A signed note is malformed",
    "A signed note is UTF-8 text ending in a newline, a blank line, then one to 100 lines "
    "`— NAME BASE64` (c2sp.org/signed-note). The message names the rule broken; the note was "
    "altered or was not written by a signed-note implementation.",
    ExitCode.INTEGRITY)
NOTE_SIGNATURE_INVALID = register(
    "GP-TLOG-002", "A signature of a trusted key on a signed note does not verify",
    "The note's text or the signature was altered after signing: obtain the note again from "
    "its source, and check that the verifier key (vkey) configured is the right one.",
    ExitCode.INTEGRITY)
NOTE_UNVERIFIED = register(
    "GP-TLOG-003", "No signature of a trusted key is on the signed note",
    "Configure the verifier key (vkey) of the log or witness that signed it; signatures of "
    "unknown keys are ignored, as c2sp.org/signed-note requires.",
    ExitCode.INTEGRITY)
VKEY_INVALID = register(
    "GP-TLOG-004", "A verifier key (vkey) is invalid",
    "A vkey is `NAME+KEYID+BASE64`: KEYID the 8 lowercase hex digits of the key's id and BASE64 "
    "the signature type byte (0x01 Ed25519, 0x04 cosignature) followed by the 32-byte Ed25519 "
    "key. Copy it again from its publisher.",
    ExitCode.INVALID_INPUT)
KEY_NAME_INVALID = register(
    "GP-TLOG-005", "A signed-note key name is invalid",
    "Key names are non-empty and contain no spaces and no `+`; a schema-less URL such as "
    "`example.com/landscape` is recommended.",
    ExitCode.INVALID_INPUT)
VERIFIERS_AMBIGUOUS = register(
    "GP-TLOG-006", "Two configured verifier keys share a name and key id",
    "Remove one of the two vkeys named in the message: a signature cannot tell them apart.",
    ExitCode.INVALID_INPUT)
CHECKPOINT_MALFORMED = register(
    "GP-TLOG-007", "A checkpoint is malformed",
    "A checkpoint's text is an origin line, the tree size in decimal without leading zeros, the "
    "base64 of the 32-byte root hash, then optional non-empty extension lines "
    "(c2sp.org/tlog-checkpoint). The message names the rule broken.",
    ExitCode.INTEGRITY)
CHECKPOINT_ORIGIN = register(
    "GP-TLOG-008", "The checkpoint is not from the expected log",
    "The checkpoint's origin line names another log: check that the proof belongs to this "
    "Landscape and scope, and that the configured origin is right.",
    ExitCode.INTEGRITY)
PROOF_MALFORMED = register(
    "GP-TLOG-009", "A tlog proof is malformed",
    "A tlog proof is `c2sp.org/tlog-proof@v1`, an optional `extra BASE64` line, `index N`, the "
    "base64 inclusion-proof hashes one a line, a blank line and the signed checkpoint "
    "(c2sp.org/tlog-proof). The message names the rule broken.",
    ExitCode.INTEGRITY)
INCLUSION_FAILED = register(
    "GP-TLOG-010", "The inclusion proof does not lead from the entry to the checkpoint's root",
    "The entry, its index or the proof was altered, or the proof belongs to another tree: "
    "recompute the leaf from the bundle's entry and obtain the proof again.",
    ExitCode.INTEGRITY)
COSIGNATURE_MALFORMED = register(
    "GP-TLOG-011", "A cosignature is malformed",
    "An Ed25519 cosignature (c2sp.org/tlog-cosignature) is an 8-byte big-endian timestamp "
    "(at most 2^63-1) followed by a 64-byte signature; the message says which part is wrong.",
    ExitCode.INTEGRITY)
SIGNER_FAILED = register(
    "GP-TLOG-012", "The signing key returned a signature that its public key does not verify",
    "The signing callable and the public key given with it are not one key pair: check the "
    "key provider's configuration (the public key must be the signing key's).",
    ExitCode.OPERATIONAL)
CHECKPOINT_MISSING = register(
    "GP-TLOG-013", "The scope has no checkpoint at the size asked for",
    "Checkpoints are written when a scope is sealed: seal the scope (runs are sealed when they "
    "finish; the global scope at every commit), or ask for a size that was checkpointed.",
    ExitCode.INVALID_INPUT)
PROOF_RANGE = register(
    "GP-TLOG-014", "The proof asked for is outside the tree",
    "An inclusion proof needs 1 <= seq <= size and a consistency proof 0 <= old <= new <= the "
    "scope's number of entries: check the sequence number and the sizes.",
    ExitCode.INVALID_INPUT)
CHECKPOINT_INVALID = register(
    "GP-TLOG-015", "A ledger checkpoint does not verify",
    "The finding says which check failed: its signature (altered note, or not signed by the "
    "trusted key under the scope's origin), its root (the chain's entries were rewritten since "
    "it was signed), or its extension of the scope's previous checkpoint (a fork). Restore the "
    "database from a backup that verifies and investigate who held write access.",
    ExitCode.INTEGRITY)
ORIGIN_FIXED = register(
    "GP-TLOG-016", "The checkpoint origin prefix cannot change once checkpoints name it",
    "A log's checkpoints all name one origin. Choose the prefix before the Landscape's first "
    "seal (a new database), or keep the current one: the message names it.",
    ExitCode.INVALID_INPUT)


class TlogError(GovernanceError):
    """A signed note, checkpoint or proof is malformed or does not verify (GP-TLOG-*)."""

    default_code: ErrorCode = NOTE_MALFORMED

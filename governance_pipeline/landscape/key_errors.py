"""Error codes of signing-key rotation, revocation and the keyring (GP-KEY-005 … GP-KEY-019)."""

from __future__ import annotations

from governance_pipeline.contracts.errors import ExitCode, register

SIGNING_KEY_RETIRED = register(
    "GP-KEY-005", "The configured signing key is retired or revoked",
    "A rotation or revocation ended this key's validity, so anything it signed now would fail "
    "verify. Point GOVERNANCE_SIGNING_KEY_FILE / GOVERNANCE_SIGNING_KEY at the active key "
    "(`governance-pipeline keys list` names it); if a rotation was interrupted, the new key is "
    "in the .next file beside the old one: move it into place.",
    ExitCode.INVALID_INPUT)
SIGNING_KEY_UNTRUSTED = register(
    "GP-KEY-006", "The signing key is not linked to any trusted key",
    "Rotation and revocation statements are signed by the current key, so it must itself be "
    "trusted: neither pinned in the trust file nor linked to a pinned key by a rotation. If you "
    "know this key is genuine, pin it (`governance-pipeline keys pin`); otherwise the key in "
    "use was swapped: run `governance-pipeline verify`.",
    ExitCode.INTEGRITY)
KEY_UNKNOWN = register(
    "GP-KEY-007", "No such key in the keyring",
    "Give a key id that `governance-pipeline keys list` shows (16 hex digits).",
    ExitCode.INVALID_INPUT)
REVOKE_ACTIVE_KEY = register(
    "GP-KEY-008", "The active signing key cannot be revoked on its own",
    "Something must go on signing: run `governance-pipeline keys rotate` first (the new key "
    "signs the revocation), then `keys revoke OLD_KEY_ID --reason ... [--at WHEN]`, with --at "
    "the moment the key may have been compromised.",
    ExitCode.INVALID_INPUT)
KEY_ALREADY_REVOKED = register(
    "GP-KEY-009", "The key is already revoked",
    "Nothing to do: `governance-pipeline keys list` shows when and why. A second revocation "
    "with an earlier --at is refused too; ask for a fresh review if the compromise began "
    "earlier than recorded.",
    ExitCode.INVALID_INPUT)
KEY_FINDING = register(
    "GP-KEY-010", "A signature was made by a key outside its validity, or the keyring is broken",
    "A seal or statement signed by a retired key after its rotation, by a revoked key after its "
    "revocation, or a rotation statement that does not verify, is evidence of a stolen or "
    "misconfigured key: treat what it signed as untrustworthy, restore from a verified backup "
    "and check who holds the retired key.",
    ExitCode.INTEGRITY)
ROTATE_TARGET_UNKNOWN = register(
    "GP-KEY-011", "Nowhere to write the new signing key",
    "The current key comes from the GOVERNANCE_SIGNING_KEY environment variable, which this "
    "command cannot change: pass `keys rotate --new-key-file PATH`, then set "
    "GOVERNANCE_SIGNING_KEY from that file (or GOVERNANCE_SIGNING_KEY_FILE to it) and remove "
    "the file if your secret manager holds it.",
    ExitCode.INVALID_INPUT)
REVOCATION_TIME_INVALID = register(
    "GP-KEY-012", "The revocation time is not usable",
    "--at takes an ISO 8601 time with a zone (e.g. 2026-01-31T09:00:00Z), not in the future: "
    "the moment from which nothing the key signs is accepted.",
    ExitCode.INVALID_INPUT)
NEW_KEY_FILE_EXISTS = register(
    "GP-KEY-013", "The new key file exists already",
    "A rotation never overwrites a key: choose a new --new-key-file path, or remove the stale "
    "file (a .next file left by an interrupted rotation that the keyring does not name).",
    ExitCode.INVALID_INPUT)

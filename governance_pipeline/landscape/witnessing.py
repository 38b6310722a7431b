"""``ledger witness``: append the log's latest checkpoint to a witness directory, as a witness.

Before appending, the witness does what c2sp.org/tlog-witness asks of one: it checks the log's
signature with the trusted (pinned) key, and that the new checkpoint is consistent with the newest
it holds for that origin — an RFC 6962 consistency proof from the Landscape, verified here with
``contracts.merkle``. It refuses a smaller tree (a rollback), another root at the same size and a
proof that fails (a fork), and never cosigns what it refuses. With a key of its own it adds a
tlog-cosignature v1 line. Check and append run under a lock of the origin's directory, so two
witnesses cannot interleave (the race tlog-witness describes). Layout: ``witness_log``.
"""

from __future__ import annotations

import base64
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, select

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    AuditIntegrityError,
    ConfigError,
    ExitCode,
    OperationalError,
    register,
)
from governance_pipeline.contracts.signed_note import Verifier, add_signatures, cosign, parse_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint, open_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape import tlog_view
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, ledger_seals
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import _read_snapshot
from governance_pipeline.landscape.witness_log import (
    LOCK_FILE,
    WITNESS_FILE_INVALID,
    SUFFIX,
    newest,
    origin_dir,
    read_witnessed,
    witnessed_in,
)

WITNESS_FORK = register(
    "GP-WITNESS-001", "The witness already holds another checkpoint of this size",
    "The log now shows a different tree at a size the witness recorded: the ledger was rewritten "
    "(or the witness directory belongs to another Landscape). Do not cosign; run "
    "`governance-pipeline verify --witness DIR` to see which entries disagree.",
    ExitCode.INTEGRITY)
WITNESS_ROLLBACK = register(
    "GP-WITNESS-002", "The log's latest checkpoint is smaller than the one the witness holds",
    "The ledger lost entries after they were witnessed (a truncation or a restored backup): run "
    "`governance-pipeline verify --witness DIR`; restore the database to a copy that includes "
    "every witnessed entry.",
    ExitCode.INTEGRITY)
WITNESS_INCONSISTENT = register(
    "GP-WITNESS-003", "The log's checkpoint is not consistent with the witnessed one",
    "No RFC 6962 consistency proof leads from the newest witnessed tree to the log's latest: "
    "entries the witness saw were changed. Do not cosign; run `governance-pipeline verify "
    "--witness DIR` to see which witnessed size disagrees.",
    ExitCode.INTEGRITY)
WITNESS_UNSIGNED = register(
    "GP-WITNESS-004", "The checkpoint is not signed by the trusted log key",
    "The witness checks the log's signature with the pinned key (trusted_keys.json), or a key "
    "its signed rotations link to, before it appends anything: pin the log's published key "
    "(`governance-pipeline keys pin`), or find out who re-signed the ledger.",
    ExitCode.INTEGRITY)
COSIGN_KEY_INVALID = register(
    "GP-WITNESS-006", "The cosigning key or cosigner name cannot be used",
    "--cosign-key must be an unencrypted Ed25519 private key in PEM (PKCS#8) and --cosigner-name "
    "a non-empty key name without spaces or '+', e.g. witness.example.com/w1; both go together.",
    ExitCode.INVALID_INPUT)
WITNESS_OTHER_LOG = register(
    "GP-WITNESS-009", "The witness directory holds the checkpoints of another log",
    "A witness directory serves one Landscape (one origin prefix): give each Landscape its own "
    "directory. If this is the Landscape's own directory, its checkpoint origin changed since "
    "it was witnessed: the ledger was re-created; run `governance-pipeline verify --witness DIR`.",
    ExitCode.INTEGRITY)
NOTHING_TO_WITNESS = register(
    "GP-WITNESS-007", "The scope has no signed checkpoint to witness",
    "The global scope is sealed at its first commit: run something first (`governance-pipeline "
    "demo`). A run is sealed when it finishes.",
    ExitCode.INVALID_INPUT)


@dataclass(frozen=True, slots=True)
class Cosigner:
    """The witness's own key: it adds a tlog-cosignature v1 line to what it appends."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)

    def verifier(self) -> Verifier:
        return Verifier.cosigner(self.name, self.public_raw)

    @classmethod
    def from_file(cls, path: Path, name: str) -> Cosigner:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot load the cosigning key {path}: {exc}",
                              code=COSIGN_KEY_INVALID) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 private key", code=COSIGN_KEY_INVALID)
        if not name or any(c.isspace() or c == "+" for c in name):
            raise ConfigError(f"cosigner name {name!r} is empty or holds a space or '+'",
                              code=COSIGN_KEY_INVALID)
        return cls(name, key)


@dataclass(frozen=True, slots=True)
class WitnessOutcome:
    scope: str
    origin: str
    size: int
    root: str             # base64, as the checkpoint writes it
    path: Path
    written: bool         # False: this checkpoint was witnessed already
    previous_size: int | None
    cosigned: bool

    def as_dict(self) -> dict[str, object]:
        return {"scope": self.scope, "origin": self.origin, "size": self.size,
                "root_hash": self.root, "path": str(self.path), "written": self.written,
                "previous_size": self.previous_size, "cosigned": self.cosigned}


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _append(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``; never over an existing file (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def witness_scopes(landscape: Landscape, runs: bool) -> list[str]:
    """The global scope, and with ``runs`` every run that has a seal."""
    if not runs:
        return [GLOBAL_SCOPE]
    with landscape.engine.connect() as conn:
        sealed = set(conn.execute(select(ledger_seals.c.scope).distinct()).scalars())
    return [GLOBAL_SCOPE, *sorted(str(s) for s in sealed - {GLOBAL_SCOPE})]


def witness_scope(landscape: Landscape, scope: str, out: Path, *,
                  trusted: PublicKey | Sequence[PublicKey], cosigner: Cosigner | None = None,
                  now: int | None = None) -> WitnessOutcome:
    """Append ``scope``'s latest checkpoint to ``out`` after checking it (see the module doc).

    ``trusted``: the keys the log may sign with (``Landscape.trusted_public_keys``: the pinned
    key and those its rotations link to, so the witness follows the log across a rotation).

    Raises ``AuditIntegrityError`` (GP-WITNESS-001..005) for a checkpoint the witness must not
    append, ``ConfigError`` GP-WITNESS-007 when the scope has none, ``OperationalError`` when
    the directory cannot be written.
    """
    keys = [trusted] if isinstance(trusted, PublicKey) else list(trusted)
    with _read_snapshot(landscape.engine) as conn:
        prefix = tlog_view.origin_prefix(conn)
        note = tlog_view.stored_checkpoint(conn, scope) if prefix is not None else None
        if prefix is None or note is None:
            raise ConfigError(f"scope {scope} has no signed checkpoint", code=NOTHING_TO_WITNESS,
                              details={"scope": scope})
        _refuse_other_logs(out, prefix)
        checkpoint = _opened(note, tlog_view.origin(prefix, scope), scope, keys)
        directory = origin_dir(out, checkpoint.origin)
        try:
            with _locked(directory):
                return _check_and_append(conn, scope, note, checkpoint, directory, cosigner, now,
                                         keys)
        except OSError as exc:
            raise OperationalError(f"cannot write the witness directory {directory}: {exc}",
                                   code=FILE_IO_FAILED, details={"path": str(directory)}) from exc


def _refuse_other_logs(out: Path, prefix: str) -> None:
    """A witness follows one log: refuse a directory holding another origin prefix's."""
    found, _ = witnessed_in(out)
    for origin in found:
        split = tlog_view.split_origin(origin)
        if split is None or split[0] != prefix:
            raise AuditIntegrityError(
                f"{out} witnesses origin {origin!r}, not a log of this Landscape (origin prefix "
                f"{prefix!r})", code=WITNESS_OTHER_LOG,
                details={"origin": origin, "prefix": prefix})


def _opened(note: str, origin: str, scope: str, trusted: Sequence[PublicKey]) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(note, tlog_view.log_verifiers(trusted, [origin]), origin)
    except TlogError as exc:
        ids = ", ".join(k.key_id for k in trusted) or "none"
        raise AuditIntegrityError(f"the latest checkpoint of scope {scope} does not verify with "
                                  f"a trusted key ({ids}) as {origin}: {exc.message}",
                                  code=WITNESS_UNSIGNED, details={"scope": scope}) from exc
    return checkpoint


def _check_and_append(conn: Connection, scope: str, note: str, checkpoint: Checkpoint,
                      directory: Path, cosigner: Cosigner | None, now: int | None,
                      trusted: Sequence[PublicKey]) -> WitnessOutcome:
    origin, size, root = checkpoint.origin, checkpoint.size, checkpoint.root_hash
    previous = newest(directory.parent, origin)
    shown = _b64(root)
    if previous is not None:
        try:  # a file planted in DIR must not steer the witness
            open_checkpoint(previous.text, tlog_view.log_verifiers(trusted, [origin]), origin)
        except TlogError as exc:
            raise AuditIntegrityError(f"{previous.path} is not a checkpoint signed by the trusted "
                                      f"key: {exc.message}", code=WITNESS_FILE_INVALID,
                                      details={"path": str(previous.path)}) from exc
        old = previous.checkpoint
        where = f"{origin}: the witness holds size {old.size} root {_b64(old.root_hash)}"
        if old.size > size:
            raise AuditIntegrityError(f"{where}, the log's latest checkpoint is size {size}",
                                      code=WITNESS_ROLLBACK,
                                      details={"origin": origin, "witnessed_size": old.size,
                                               "size": size})
        if old.size == size:
            if old.root_hash != root:
                raise AuditIntegrityError(f"{where}, the log now has root {shown} at that size",
                                          code=WITNESS_FORK,
                                          details={"origin": origin, "size": size})
            return WitnessOutcome(scope, origin, size, shown, previous.path, False, old.size,
                                  False)
        try:
            proof = tlog_view.consistency_proof(conn, scope, old.size, size)
        except (TlogError, AuditIntegrityError):
            proof = []  # the chain cannot give one: no proof verifies
        if not merkle.verify_consistency(old.size, size, old.root_hash, root, proof):
            raise AuditIntegrityError(f"{where}; no consistency proof leads from it to the log's "
                                      f"size {size} root {shown}", code=WITNESS_INCONSISTENT,
                                      details={"origin": origin, "witnessed_size": old.size,
                                               "size": size})
    text = note
    if cosigner is not None:
        ts = int(now if now is not None else time.time())
        line = cosign(parse_note(note)[0], cosigner.name, cosigner.private_key.sign,
                      cosigner.public_raw, ts)
        text = add_signatures(note, [line])
    path = directory / f"{size}{SUFFIX}"
    try:
        _append(path, text)
    except FileExistsError:  # only possible without our lock (a copy synced in meanwhile)
        existing = read_witnessed(path, origin)
        if existing.checkpoint.root_hash != root:
            raise AuditIntegrityError(f"{path} holds another root for size {size}",
                                      code=WITNESS_FORK,
                                      details={"origin": origin, "size": size}) from None
        return WitnessOutcome(scope, origin, size, shown, path, False, size, False)
    return WitnessOutcome(scope, origin, size, shown, path, True,
                          previous.size if previous else None, cosigner is not None)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")

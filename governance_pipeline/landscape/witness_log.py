"""An append-only directory of witnessed checkpoints, kept outside the database.

The signing key can re-sign a rewritten ledger so that it verifies, and the head file beside the
key (``witness.py``) is rewritten as easily. What an attacker holding both cannot change is a
copy of the checkpoints that a second party keeps: ``ledger witness --out DIR`` appends the
latest checkpoint of the global scope (and, asked to, of every run) to such a directory, and
``verify --witness DIR`` checks that the ledger still has every witnessed root (``verify_witness``).

Layout: ``DIR/<origin, percent-encoded>/<tree size>.checkpoint``, each file the signed checkpoint
note as the log issued it, optionally followed by C2SP tlog-cosignature v1 lines of the witness's
own key. A file is created once (O_EXCL) and never rewritten; ``witnessing`` appends (after
checking consistency), this module reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from governance_pipeline.contracts.errors import AuditIntegrityError, ExitCode, register
from governance_pipeline.contracts.signed_note import parse_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint, parse_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError

WITNESS_FILE_INVALID = register(
    "GP-WITNESS-005", "A file in the witness directory is not a witnessed checkpoint",
    "Files under DIR/<origin>/ are named <tree size>.checkpoint and hold a checkpoint note of "
    "that origin and size. Restore the directory from the second party's copy; never edit it.",
    ExitCode.INTEGRITY)

SUFFIX = ".checkpoint"
LOCK_FILE = ".lock"


@dataclass(frozen=True, slots=True)
class Witnessed:
    """One checkpoint the directory holds."""

    path: Path
    text: str
    checkpoint: Checkpoint

    @property
    def size(self) -> int:
        return self.checkpoint.size


def origin_dir(root: Path, origin: str) -> Path:
    return root / quote(origin, safe="")


def read_witnessed(path: Path, origin: str) -> Witnessed:
    try:
        text = path.read_text(encoding="utf-8")
        checkpoint = parse_checkpoint(parse_note(text)[0])
    except (OSError, UnicodeDecodeError, TlogError) as exc:
        raise AuditIntegrityError(f"witnessed checkpoint {path} is unreadable: {exc}",
                                  code=WITNESS_FILE_INVALID, details={"path": str(path)}) from exc
    if checkpoint.origin != origin or path.name != f"{checkpoint.size}{SUFFIX}":
        raise AuditIntegrityError(
            f"witnessed checkpoint {path} holds origin {checkpoint.origin!r} size "
            f"{checkpoint.size}, which its place in the directory does not name",
            code=WITNESS_FILE_INVALID, details={"path": str(path)})
    return Witnessed(path, text, checkpoint)


def witnessed_in(root: Path) -> tuple[dict[str, list[Witnessed]], list[tuple[Path, str]]]:
    """Every witnessed checkpoint under ``root`` (origin → checkpoints by increasing size), and
    the files there that are not one (path, why): a reader reports those, it does not stop."""
    found: dict[str, list[Witnessed]] = {}
    bad: list[tuple[Path, str]] = []
    if not root.is_dir():
        return found, bad
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        origin = unquote(directory.name)
        items = []
        for path in sorted(directory.iterdir()):
            if path.name == LOCK_FILE:
                continue
            if not (path.is_file() and path.name.endswith(SUFFIX)) or path.is_symlink():
                bad.append((path, f"not a <tree size>{SUFFIX} file"))
                continue
            try:
                items.append(read_witnessed(path, origin))
            except AuditIntegrityError as exc:
                bad.append((path, exc.message))
        found[origin] = sorted(items, key=lambda w: w.size)
    return found, bad


def newest(root: Path, origin: str) -> Witnessed | None:
    directory = origin_dir(root, origin)
    if not directory.is_dir():
        return None
    items = [read_witnessed(p, origin) for p in directory.iterdir()
             if p.is_file() and p.name.endswith(SUFFIX)]
    return max(items, key=lambda w: w.size, default=None)



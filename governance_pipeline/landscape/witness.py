"""The global head witness: the newest global head this host committed, kept beside the key.

Sealing at every commit stops a rewrite of the global chain, but not a clean truncation: delete
the last entries, their records and their seals, and what is left is a shorter chain that is
still sealed throughout. Nothing inside the database can tell, since whoever edits the database
can edit all of it. So after each global commit the recorder also writes the new head (seq and
entry hash) to ``$GOVERNANCE_HOME/keys/global_head.json``, outside the database and beside the
signing key (which an attacker who can rewrite the audit trail must not have either), and verify
checks that the chain still reaches it.

The file is keyed by the global chain's first entry hash, so one GOVERNANCE_HOME may serve several
databases. It only moves forward (under a file lock, so concurrent committers cannot move it
back), and it is written after the commit: it may lag the database after a crash, never lead it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from governance_pipeline.contracts.errors import FILE_IO_FAILED, OperationalError

WITNESS_FILE = "global_head.json"
_LOCK_FILE = "global_head.lock"


@dataclass(frozen=True, slots=True)
class WitnessedHead:
    seq: int
    head_hash: str


@contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(keys_dir / _LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _load(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def record(keys_dir: Path, chain_id: str, seq: int, head_hash: str) -> None:
    """Move the witness of chain ``chain_id`` forward to ``seq``; never back."""
    path = keys_dir / WITNESS_FILE
    try:
        with _locked(keys_dir):
            data = _load(path)
            known = data.get(chain_id)
            if isinstance(known, dict) and isinstance(known.get("seq"), int) \
                    and known["seq"] >= seq:  # type: ignore[operator]
                return
            data[chain_id] = {"seq": seq, "head_hash": head_hash}
            tmp = path.with_name(f".{WITNESS_FILE}.{os.getpid()}")
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"cannot update the global head witness {path}: {exc} (the audit "
                               "transaction itself was committed)", code=FILE_IO_FAILED,
                               details={"path": str(path)}) from exc


def snapshot(keys_dir: Path) -> dict[str, WitnessedHead]:
    """Every chain's witnessed head. Read before the database snapshot, so that it can only lag
    what the snapshot sees; no lock is needed, the file is only ever replaced whole."""
    path = keys_dir / WITNESS_FILE
    try:
        data = _load(path)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"cannot read the global head witness {path}: {exc}",
                               code=FILE_IO_FAILED, details={"path": str(path)}) from exc
    return {chain: WitnessedHead(known["seq"], known["head_hash"])  # type: ignore[arg-type]
            for chain, known in data.items()
            if isinstance(known, dict) and type(known.get("seq")) is int
            and isinstance(known.get("head_hash"), str)}

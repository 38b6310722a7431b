"""Chunks staged on disk, so Dagster passes references between ops, never rows.

The read op writes each chunk's source records to ``$GOVERNANCE_HOME/runs/<run_id>/chunks/`` and
hands on a ``StagedChunk`` (index, path, digest, row count). Every op output is pickled into
Dagster's storage; a reference costs a few hundred bytes where the rows would cost the chunk.

Staged files are written once, durably (temporary sibling, fsync, rename), and are read back only
after their SHA-256 matches the digest recorded when they were written: the bytes that are
unpickled are exactly the bytes this product wrote, never something placed or edited since.
Records are pickled rather than JSON-encoded because a source record carries raw bytes and
Python values (large integers, exact floats) that must reach the engine unchanged.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from governance_pipeline.contracts.errors import FILE_IO_FAILED, AuditIntegrityError, OperationalError
from governance_pipeline.engine.plugin_api import SourceRecord

_PROTOCOL = 5


@dataclass(frozen=True, slots=True)
class StagedChunk:
    """One chunk of source records on disk: chunk ``index`` holds rows ``first_row..last_row``."""

    index: int
    path: str
    sha256: str
    rows: int
    first_row: int
    last_row: int


@dataclass(frozen=True, slots=True)
class ChunkGroup:
    """The chunks one Dagster step processes, in order (consecutive chunk indices)."""

    chunks: tuple[StagedChunk, ...]

    @property
    def mapping_key(self) -> str:
        return f"chunk_{self.chunks[0].index:06d}"

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)


def stage_chunk(directory: Path, index: int, records: Sequence[SourceRecord]) -> StagedChunk:
    data = pickle.dumps([(r.index, r.row, r.raw, r.error) for r in records], protocol=_PROTOCOL)
    target = directory / f"{index:06d}.pickle"
    tmp = directory / f".{target.name}.tmp-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise OperationalError(f"cannot stage chunk {index} at {target}: {exc}",
                               code=FILE_IO_FAILED, details={"path": str(target)}) from exc
    return StagedChunk(index, str(target), hashlib.sha256(data).hexdigest(), len(records),
                       records[0].index, records[-1].index)


def load_chunk(staged: StagedChunk) -> list[SourceRecord]:
    """The records of a staged chunk; a file that is not byte-identical to what was staged is refused."""
    path = Path(staged.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OperationalError(
            f"staged chunk {staged.index} is unreadable at {path}: {exc}; re-run the read step "
            "(resume the run) to stage it again", code=FILE_IO_FAILED,
            details={"path": str(path)}) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != staged.sha256:
        raise AuditIntegrityError(
            f"staged chunk {staged.index} at {path} changed since it was staged "
            f"(sha256 {digest[:12]}…, staged {staged.sha256[:12]}…)",
            details={"path": str(path), "expected": staged.sha256, "actual": digest})
    items = pickle.loads(data)  # noqa: S301 - our own file, verified byte for byte above
    records = [SourceRecord(index, row, raw, error) for index, row, raw, error in items]
    if len(records) != staged.rows:
        raise AuditIntegrityError(f"staged chunk {staged.index} holds {len(records)} records, "
                                  f"{staged.rows} were staged", details={"path": str(path)})
    return records


def discard_staging(directory: Path) -> None:
    """Remove a finished run's staged chunks (and the run directory when nothing else is in it)."""
    if directory.exists():
        shutil.rmtree(directory)
    parent = directory.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def group_chunks(staged: Sequence[StagedChunk], chunks_per_step: int) -> list[ChunkGroup]:
    size = max(1, chunks_per_step)
    return [ChunkGroup(tuple(staged[i:i + size])) for i in range(0, len(staged), size)]

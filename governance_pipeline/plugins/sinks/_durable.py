"""Crash-safe file operations: write to a temporary sibling, fsync, rename, fsync the directory.

A reader (or a process resuming after SIGKILL) sees either the previous complete file or the new
complete file, never a prefix: the rename is atomic within a directory and the directory fsync
makes the rename itself survive a power cut. Temporaries are hidden (``.name.tmp-…``) so nothing
that lists visible files ever mistakes one for a part or an output.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_COPY_BLOCK = 1 << 20


def temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def temp_glob(target: Path) -> str:
    """Glob pattern (relative to the target's directory) of the target's temporaries."""
    return f".{target.name}.tmp-*"


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) durably: each new directory entry is fsynced in its parent."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory",
                                     str(path)) from None
        return
    fsync_path(path.parent)


@contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temporary path to fill; on success it is fsynced and renamed onto ``target``.

    On any failure (including KeyboardInterrupt) the temporary is removed and the exception
    propagates; the previous ``target``, if any, is untouched.
    """
    tmp = temp_name(target)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)


def create_once(target: Path, data: bytes) -> bool:
    """Durably create ``target`` with ``data`` unless it exists; True if this call created it.

    ``os.link`` fails when the name is taken, so of two processes racing, exactly one wins and
    the other reads the winner's content: both then agree.
    """
    tmp = temp_name(target)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        fsync_path(target.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def replace_bytes(target: Path, data: bytes) -> None:
    with atomic_target(target) as tmp, open(tmp, "xb") as fh:
        fh.write(data)


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in bounded blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_COPY_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def copy_into(src: Path, dst_handle: BinaryIO) -> None:
    with open(src, "rb") as fh:
        shutil.copyfileobj(fh, dst_handle, _COPY_BLOCK)


def remove_tree_atomically(path: Path) -> None:
    """Make ``path`` disappear in one step (rename to a hidden trash name), then delete it.

    A crash during deletion leaves only the trash directory, never a half-emptied ``path``;
    :func:`purge_trash` removes such leftovers.
    """
    if not path.exists():
        return
    trash = path.parent / f".{path.name}.trash-{secrets.token_hex(4)}"
    os.replace(path, trash)
    fsync_path(path.parent)
    shutil.rmtree(trash)


def purge_trash(path: Path) -> None:
    """Remove leftovers of :func:`remove_tree_atomically` and stale temporaries of ``path``."""
    if not path.parent.is_dir():
        return
    for leftover in path.parent.glob(f".{path.name}.trash-*"):
        shutil.rmtree(leftover)
    for leftover in path.parent.glob(temp_glob(path)):
        leftover.unlink(missing_ok=True)

"""The Landscape's transparency log as checkers use it: the witness and the bundle proofs.

``landscape.tlog`` hands out the stored checkpoints and proofs; this module adds what a *checker*
needs around them: the leaf hash of an entry recomputed from its columns (nothing taken from a
stored tree), origins and their scope, the verifiers of a log key, and "none" instead of an
error where a scope has no checkpoint yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Connection, column, select

from governance_pipeline.contracts.signed_note import Verifier
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape import tlog
from governance_pipeline.landscape.checkpoints import (
    entry_leaf,
    log_verifier,
    origin_of,
    public_key_raw,
    read_origin_prefix,
)
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import ledger_entries
from governance_pipeline.landscape.verify_chain import STREAM

__all__ = ["HEADER_COLUMNS", "consistency_proof", "entry_leaf_hash", "leaf_hashes",
           "log_verifiers", "origin", "origin_prefix", "public_key_raw", "split_origin",
           "stored_checkpoint"]

#: The entry columns a proof's ``extra`` carries as the entry header.
HEADER_COLUMNS = ("seq", "prev_hash", "records_digest", "record_count", "created_at",
                  "entry_hash")
#: Stands in for the leaf of an entry whose hash is malformed (verify reports the entry): it
#: matches no real leaf, so no witnessed root can be reproduced through it.
_UNUSABLE_LEAF = hashlib.sha256(b"governance-pipeline: unusable ledger entry").digest()


def origin_prefix(conn: Connection) -> str | None:
    return read_origin_prefix(conn)


def origin(prefix: str, scope: str) -> str:
    """The origin line (= the log key's name) of ``scope``'s checkpoints."""
    return origin_of(prefix, scope)


def split_origin(origin_line: str) -> tuple[str, str] | None:
    """(prefix, scope) of one of our origins (``<prefix>/<percent-encoded scope>``), or None."""
    prefix, sep, quoted = origin_line.rpartition("/")
    if not sep or not prefix or not quoted:
        return None
    scope = unquote(quoted)
    return (prefix, scope) if origin_of(prefix, scope) == origin_line else None


def entry_leaf_hash(header: Mapping[str, Any]) -> bytes:
    """RFC 6962 leaf hash of one ledger entry: SHA-256(0x00 || the 32 bytes of its hash)."""
    return entry_leaf(str(header["entry_hash"]))


def leaf_hashes(conn: Connection, scope: str) -> list[bytes]:
    """The leaf hash of every entry of ``scope`` in seq order, from the entries themselves."""
    # Only the hash: a whole row carries its chunk's manifest, and a large run has thousands.
    result = conn.execution_options(yield_per=STREAM).execute(
        select(column("entry_hash")).select_from(ledger_entries)
        .where(ledger_entries.c.scope == scope).order_by(ledger_entries.c.seq))
    leaves = []
    try:
        for row in result.mappings():
            try:
                leaves.append(entry_leaf(row["entry_hash"]))
            except (ValueError, TypeError):
                leaves.append(_UNUSABLE_LEAF)
    finally:
        result.close()
    return leaves


def stored_checkpoint(conn: Connection, scope: str, size: int | None = None) -> str | None:
    """The note of ``scope``'s checkpoint at ``size`` (default: its latest); None if none."""
    try:
        found = (tlog.latest_checkpoint(conn, scope) if size is None
                 else tlog.checkpoint_at(conn, scope, size))
    except TlogError:
        return None
    return found.note


def consistency_proof(conn: Connection, scope: str, old_size: int, new_size: int) -> list[bytes]:
    """The Landscape's RFC 6962 consistency proof between two sizes (raises ``TlogError`` or
    ``AuditIntegrityError`` when the chain cannot give one)."""
    return tlog.consistency_proof(conn, scope, old_size, new_size)


def log_verifiers(keys: PublicKey | Iterable[PublicKey], origins: Iterable[str]) -> list[Verifier]:
    """The note verifiers of the checkpoints ``keys`` (one key, or each of several: a log across
    a rotation) sign under ``origins``."""
    keys = [keys] if isinstance(keys, PublicKey) else list(keys)
    return [log_verifier(o, key) for key in keys for o in sorted(set(origins))]

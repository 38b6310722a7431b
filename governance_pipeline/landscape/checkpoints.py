"""Writing the ledger's C2SP checkpoints: each seal signs its scope's Merkle tree head.

Each scope's chain is an RFC 6962 Merkle tree whose leaf i is ledger entry seq i+1, with leaf
data the 32 raw bytes of that entry's ``entry_hash`` (so leaf hash = SHA-256(0x00 || entry
hash)). The entry hash already commits to the whole canonical entry header (scope, seq,
prev_hash, records_digest, record_count, created_at), so whoever can recompute an entry hash
from a bundle can recompute its leaf, and nothing else is needed.

A seal signs, as a c2sp.org/tlog-checkpoint, ``<origin>\\n<size>\\n<base64 root>\\n`` with the
Landscape's Ed25519 key under a key name equal to the origin. The origin is
``<prefix>/<percent-encoded scope>``; the prefix is the Landscape's, fixed in ``ledger_origin`` at
its first checkpoint (``governance-pipeline.invalid/<16 random hex digits>`` unless an operator
set another before). The tree's frontier is stored with the checkpoint, so the next seal appends
the new entries to it in O(log n) per entry instead of re-reading the chain; the global chain is
sealed at every commit.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, Engine, Row, func, select
from sqlalchemy.dialects import postgresql, sqlite

from governance_pipeline.contracts.merkle import Frontier, leaf_hash
from governance_pipeline.contracts.signed_note import Verifier, sign_note, valid_key_name
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint
from governance_pipeline.contracts.tlog_errors import (
    KEY_NAME_INVALID,
    ORIGIN_FIXED,
    TlogError,
)
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.schema import ledger_checkpoints, ledger_entries, ledger_origin

ORIGIN_HOST = "governance-pipeline.invalid"  # RFC 2606: a name that can never be someone's
MAX_PREFIX = 200
_SCOPE_SAFE = "-._~"  # RFC 3986 unreserved characters stay as they are; the rest is %XX


def origin_of(prefix: str, scope: str) -> str:
    """The origin line (and key name) of ``scope``'s checkpoints."""
    return f"{prefix}/{quote(scope, safe=_SCOPE_SAFE)}"


def check_prefix(prefix: str) -> str:
    if (not valid_key_name(prefix) or len(prefix) > MAX_PREFIX or prefix.endswith("/")
            or not prefix.isascii()):
        raise TlogError(f"invalid checkpoint origin prefix {prefix!r}: ASCII, at most "
                        f"{MAX_PREFIX} characters, no spaces, no '+', no trailing '/'",
                        code=KEY_NAME_INVALID)
    return prefix


def read_origin_prefix(conn: Connection) -> str | None:
    found = conn.execute(select(ledger_origin.c.origin_prefix)
                         .where(ledger_origin.c.origin_id == 1)).scalar()
    return None if found is None else str(found)


# Per engine, the prefix once read as already committed: it never changes after the first
# checkpoint, and the global chain is sealed at every commit, so the lookup is skipped there.
# (verify never uses this: it reads the row in its snapshot.)
_PREFIX_SEEN: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()


def _insert_prefix(conn: Connection, prefix: str, now: str) -> None:
    values = {"origin_id": 1, "origin_prefix": prefix, "created_at": now}
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(conn.dialect.name)
    if dialect is None:
        conn.execute(ledger_origin.insert(), values)
        return
    # Sealers of different scopes may race to fix the prefix: the first one wins.
    conn.execute(dialect.insert(ledger_origin).values(**values)
                 .on_conflict_do_nothing(index_elements=["origin_id"]))


def ensure_origin_prefix(conn: Connection, now: str) -> str:
    """The Landscape's origin prefix, fixed now (at random) if it has none yet."""
    cached = _PREFIX_SEEN.get(conn.engine)
    if cached is not None:
        return cached
    found = read_origin_prefix(conn)
    if found is not None:
        _PREFIX_SEEN[conn.engine] = found  # read, not written by this (uncommitted) transaction
        return found
    _insert_prefix(conn, f"{ORIGIN_HOST}/{secrets.token_hex(8)}", now)
    found = read_origin_prefix(conn)
    assert found is not None
    return found


def set_origin_prefix(conn: Connection, prefix: str, now: str) -> str:
    """Name the Landscape's log (e.g. ``audit.example.com/landscape``) before its first
    checkpoint; afterwards the origin is fixed, since a log's checkpoints all name one origin."""
    check_prefix(prefix)
    count = conn.execute(select(func.count()).select_from(ledger_checkpoints)).scalar() or 0
    current = read_origin_prefix(conn)
    if current == prefix:
        return prefix
    if count:
        raise TlogError(f"the checkpoint origin prefix is {current!r} and {count} checkpoints "
                        "name it; it cannot change", code=ORIGIN_FIXED)
    conn.execute(ledger_origin.delete())
    _insert_prefix(conn, prefix, now)
    _PREFIX_SEEN.pop(conn.engine, None)
    return prefix


def entry_leaf(entry_hash_hex: str) -> bytes:
    """The leaf hash of a ledger entry: SHA-256(0x00 || the 32 bytes of its entry hash)."""
    if len(entry_hash_hex) != 64 or entry_hash_hex.lower() != entry_hash_hex:
        raise ValueError(f"an entry hash is 64 lowercase hex digits, got {entry_hash_hex!r:.80}")
    return leaf_hash(bytes.fromhex(entry_hash_hex))


def public_key_raw(public: PublicKey) -> bytes:
    return public.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def log_verifier(origin: str, public: PublicKey | bytes) -> Verifier:
    """The signed-note verifier of a scope's checkpoints: key name = origin, type 0x01."""
    raw = public if isinstance(public, bytes) else public_key_raw(public)
    return Verifier.ed25519(origin, raw)


def _leaves(conn: Connection, scope: str, after: int, through: int) -> list[bytes] | None:
    """Leaf hashes of entries after..through, or None when one is missing or malformed."""
    found = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.entry_hash).where(
        ledger_entries.c.scope == scope, ledger_entries.c.seq > after,
        ledger_entries.c.seq <= through).order_by(ledger_entries.c.seq)).all()
    if [r.seq for r in found] != list(range(after + 1, through + 1)):
        return None
    try:
        return [entry_leaf(r.entry_hash) for r in found]
    except ValueError:
        return None


def _frontier_at(conn: Connection, scope: str, seq: int, head_hash: str,
                 latest: Row[Any] | None) -> Frontier | None:
    """The tree of the chain's first ``seq`` entries: the latest stored frontier below it
    (``latest``) extended by the entries since (usually just the head), else rebuilt from the
    whole chain."""
    frontier = None
    if latest is not None:
        try:
            frontier = Frontier.from_bytes(bytes(latest.frontier))
        except ValueError:
            frontier = None  # unusable (altered): rebuild; verify reports the checkpoint
        if frontier is not None and frontier.size != latest.tree_size:
            frontier = None
    if frontier is None:
        frontier = Frontier()
    if frontier.size == seq - 1:
        try:
            frontier.append(entry_leaf(head_hash))  # the common case: one new entry
        except ValueError:
            return None
        return frontier
    leaves = _leaves(conn, scope, frontier.size, seq)
    if leaves is None:
        return None
    frontier.extend(leaves)
    return frontier


def write_checkpoint(conn: Connection, scope: str, seq: int, head_hash: str, signer: Signer,
                     seal_id: str, now: str) -> str | None:
    """Sign and store the checkpoint of ``scope`` at size ``seq`` (head ``head_hash``); the
    caller holds the scope's lock. Returns the note, or None when that size is checkpointed
    already (a log never signs two heads for one size) or the chain cannot be read whole."""
    latest = conn.execute(select(ledger_checkpoints.c.tree_size, ledger_checkpoints.c.frontier)
                          .where(ledger_checkpoints.c.scope == scope,
                                 ledger_checkpoints.c.tree_size <= seq)
                          .order_by(ledger_checkpoints.c.tree_size.desc()).limit(1)).first()
    if latest is not None and latest.tree_size == seq:
        return None
    frontier = Frontier() if seq == 0 else _frontier_at(conn, scope, seq, head_hash, latest)
    if frontier is None:
        return None  # a gap or a malformed entry: verify reports the chain, nothing is signed
    origin = origin_of(ensure_origin_prefix(conn, now), scope)
    body = Checkpoint(origin, seq, frontier.root()).body()
    note = sign_note(body, origin, lambda m: bytes.fromhex(signer.sign(m)),
                     public_key_raw(signer.public))
    conn.execute(ledger_checkpoints.insert(), {
        "scope": scope, "tree_size": seq, "seal_id": seal_id, "note": note,
        "frontier": frontier.to_bytes(), "created_at": now})
    return note

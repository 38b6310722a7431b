"""The tamper-evident ledger: a hash chain of audit transactions per scope, sealed by signatures.

Every audit transaction appends one entry to the chain of its scope (a run id, or ``global``).
The entry holds a manifest of ``[table, key, record_hash]`` for every record the transaction
inserted or updated, commits to the manifest (``records_digest``) and to the previous entry
(``prev_hash``). A seal signs the head of a chain with Ed25519, and signs it once more as a C2SP
checkpoint of the chain's RFC 6962 Merkle tree (``checkpoints.py``). Verification (``verify.py``)
replays the chain and compares the latest manifest hash of every record with the table.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape import checkpoints
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.schema import LEDGERED, LedgerSpec, ledger_entries, ledger_seals

GENESIS_HASH = "0" * 64
LEDGER_VERSION = 1


def record_key(spec: LedgerSpec, row: Mapping[str, Any]) -> str:
    if len(spec.key_columns) == 1:
        return str(row[spec.key_columns[0]])
    return orjson.dumps([row[c] for c in spec.key_columns]).decode()


def record_hash(spec: LedgerSpec, row: Mapping[str, Any]) -> str:
    """SHA-256 of a record's hashed columns, in column order, prefixed by its table.

    Float columns are normalised to float so a value written as int hashes the same as the
    REAL/double the database hands back.
    """
    floats = spec.float_columns
    values: list[Any] = [spec.name]
    for col in spec.hashed_columns:
        v = row[col]
        if v is not None and col in floats:
            v = float(v)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v).hex()
        values.append(v)
    return hashlib.sha256(orjson.dumps(values)).hexdigest()


ManifestItem = tuple[str, str, str]  # (table, key, record_hash)


def manifest_for(table: str, rows: Iterable[Mapping[str, Any]]) -> list[ManifestItem]:
    spec = LEDGERED[table]
    return [(table, record_key(spec, r), record_hash(spec, r)) for r in rows]


Row = tuple[Any, ...]
_FLOAT_OR_NONE = frozenset({float, type(None)})


RowsManifest = Callable[[Sequence[Row]], list[ManifestItem]]


def rows_manifest(spec: LedgerSpec, columns: Sequence[str]) -> RowsManifest:
    """Manifest items of rows given as tuples of ``columns`` values (the recorder's form).

    Byte-identical to ``(table, record_key(spec, row), record_hash(spec, row))`` over the same rows
    as mappings. A batch whose values all serialise as they are is hashed straight from the
    tuples; one that needs ``record_hash``'s normalising (an int in a float column, bytes) is
    hashed row by row through exactly that code.
    """
    return _rows_manifest(spec, tuple(columns))


@lru_cache(maxsize=None)
def _rows_manifest(spec: LedgerSpec, columns: tuple[str, ...]) -> RowsManifest:
    name = spec.name
    whole = [columns.index(c) for c in spec.hashed_columns] == list(range(len(columns)))
    float_cells = [itemgetter(columns.index(c)) for c in spec.hashed_columns
                   if c in spec.float_columns]
    keys = [columns.index(c) for c in spec.key_columns]
    sha256, dumps, json_error = hashlib.sha256, orjson.dumps, orjson.JSONEncodeError

    def exact(rows: Sequence[Row]) -> list[ManifestItem]:
        mappings = [dict(zip(columns, row)) for row in rows]
        return [(name, record_key(spec, m), record_hash(spec, m)) for m in mappings]

    def manifest(rows: Sequence[Row]) -> list[ManifestItem]:
        if not whole or any(not set(map(type, map(cell, rows))) <= _FLOAT_OR_NONE
                            for cell in float_cells):
            return exact(rows)
        try:
            digests = [sha256(dumps((name, *row))).hexdigest() for row in rows]
        except json_error:  # bytes, which record_hash writes as hex
            return exact(rows)
        if len(keys) == 1:
            k = keys[0]
            return [(name, str(row[k]), digest) for row, digest in zip(rows, digests)]
        return [(name, dumps([row[i] for i in keys]).decode(), digest)
                for row, digest in zip(rows, digests)]

    return manifest


def encode_manifest(items: list[ManifestItem]) -> tuple[bytes, str]:
    """(stored bytes, records_digest): the digest is over the uncompressed canonical list."""
    raw = orjson.dumps(items)
    return zlib.compress(raw, 1), hashlib.sha256(raw).hexdigest()


def decode_manifest(blob: bytes) -> tuple[list[ManifestItem], str]:
    raw = zlib.decompress(blob)
    items = [tuple(i) for i in orjson.loads(raw)]
    return items, hashlib.sha256(raw).hexdigest()  # type: ignore[return-value]


def entry_hash(*, scope: str, seq: int, prev_hash: str, records_digest: str,
               record_count: int, created_at: str) -> str:
    return hashlib.sha256(canonical_json({
        "v": LEDGER_VERSION, "scope": scope, "seq": seq, "prev_hash": prev_hash,
        "records_digest": records_digest, "record_count": record_count,
        "created_at": created_at,
    })).hexdigest()


def seal_message(*, scope: str, seq: int, head_hash: str, key_id: str, sealed_at: str) -> bytes:
    return canonical_json({"v": LEDGER_VERSION, "scope": scope, "seq": seq,
                           "head_hash": head_hash, "key_id": key_id, "sealed_at": sealed_at})


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    entry_hash: str


def lock_scope(conn: Connection, scope: str) -> None:
    """Serialise appenders of one chain. SQLite already holds the write lock (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:s, 0))"), {"s": scope})


def read_head(conn: Connection, scope: str) -> ChainHead:
    row = conn.execute(
        select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
        .where(ledger_entries.c.scope == scope)
        .order_by(ledger_entries.c.seq.desc()).limit(1)
    ).first()
    return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(row.seq, row.entry_hash)


def append_entry(conn: Connection, scope: str, items: list[ManifestItem], created_at: str, *,
                 encoded: tuple[bytes, str] | None = None) -> ChainHead:
    """Append one chain entry for ``items``; the caller holds the transaction and the scope lock.

    ``encoded`` is ``encode_manifest(items)`` when the caller has it already.
    """
    head = read_head(conn, scope)
    blob, digest = encoded or encode_manifest(items)
    seq = head.seq + 1
    h = entry_hash(scope=scope, seq=seq, prev_hash=head.entry_hash, records_digest=digest,
                   record_count=len(items), created_at=created_at)
    conn.execute(ledger_entries.insert(), {
        "scope": scope, "seq": seq, "prev_hash": head.entry_hash, "records_digest": digest,
        "record_count": len(items), "manifest": blob, "created_at": created_at, "entry_hash": h,
    })
    return ChainHead(seq, h)


def seal(conn: Connection, scope: str, signer: Signer, sealed_at: str, *,
         head: ChainHead | None = None) -> str:
    """Sign the current head of ``scope`` (``head`` when the caller just appended it); returns
    the seal id."""
    head = head or read_head(conn, scope)
    key_id = signer.key_id
    message = seal_message(scope=scope, seq=head.seq, head_hash=head.entry_hash, key_id=key_id,
                           sealed_at=sealed_at)
    seal_id = new_id("seal_")
    conn.execute(ledger_seals.insert(), {
        "seal_id": seal_id, "scope": scope, "seq": head.seq, "head_hash": head.entry_hash,
        "key_id": key_id, "signature": signer.sign(message), "sealed_at": sealed_at,
    })
    # The same head as a C2SP checkpoint of the scope's Merkle tree (checkpoints.py): what a
    # third party checks with standard tools. The legacy signature above stays for the readers
    # of ledger_seals (bundles, older verifiers).
    checkpoints.write_checkpoint(conn, scope, head.seq, head.entry_hash, signer, seal_id,
                                 sealed_at)
    return seal_id

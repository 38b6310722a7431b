"""The tamper-evident ledger: a hash chain of audit transactions per scope, sealed by signatures.

Every audit transaction appends one entry to the chain of its scope (a run id, or ``global``).
The entry holds a manifest of ``[table, key, record_hash]`` for every record the transaction
inserted or updated, commits to the manifest (``records_digest``) and to the previous entry
(``prev_hash``). A seal signs the head of a chain with Ed25519, and signs it once more as a C2SP
checkpoint of the chain's RFC 6962 Merkle tree (``checkpoints.py``). Verification (``verify.py``)
replays the chain and compares the latest manifest hash of every record with the table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
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


def record_digest(spec: LedgerSpec, row: Mapping[str, Any]) -> bytes:
    """SHA-256 (32 raw bytes) of a record's hashed columns, in column order, prefixed by its
    table.

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
    return hashlib.sha256(orjson.dumps(values)).digest()


def record_hash(spec: LedgerSpec, row: Mapping[str, Any]) -> str:
    """``record_digest`` as hex: the form manifests are read back in and proofs carry."""
    return record_digest(spec, row).hex()


ManifestItem = tuple[str, str, str]  # (table, key, record_hash hex)
#: The records of one table in a manifest, in write order: (table, keys, their digests as
#: len(keys) consecutive 32-byte SHA-256 values). The recorder's form: no per-record hex text.
Section = tuple[str, list[str], bytes]


def manifest_for(table: str, rows: Iterable[Mapping[str, Any]]) -> list[ManifestItem]:
    spec = LEDGERED[table]
    return [(table, record_key(spec, r), record_hash(spec, r)) for r in rows]


Row = tuple[Any, ...]
_FLOAT_OR_NONE = frozenset({float, type(None)})


RowsManifest = Callable[[Sequence[Row]], Section]


def rows_manifest(spec: LedgerSpec, columns: Sequence[str]) -> RowsManifest:
    """The manifest section of rows given as tuples of ``columns`` values (the recorder's form).

    Byte-identical to ``record_key(spec, row)`` and ``record_digest(spec, row)`` over the same
    rows as mappings. A batch whose values all serialise as they are is hashed straight from the
    tuples; one that needs ``record_digest``'s normalising (an int in a float column, bytes) is
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

    def exact(rows: Sequence[Row]) -> Section:
        mappings = [dict(zip(columns, row)) for row in rows]
        return (name, [record_key(spec, m) for m in mappings],
                b"".join(record_digest(spec, m) for m in mappings))

    def manifest(rows: Sequence[Row]) -> Section:
        if not whole or any(not set(map(type, map(cell, rows))) <= _FLOAT_OR_NONE
                            for cell in float_cells):
            return exact(rows)
        try:
            digests = b"".join([sha256(dumps((name, *row))).digest() for row in rows])
        except json_error:  # bytes, which record_digest writes as hex
            return exact(rows)
        if len(keys) == 1:
            return name, list(map(str, map(itemgetter(keys[0]), rows))), digests
        return name, [dumps([row[i] for i in keys]).decode() for row in rows], digests

    return manifest


# --- the manifest's stored form -------------------------------------------------------------------
# Format 2, byte by byte (docs/landscape.md, "The manifest"):
#   magic        4 bytes   b"GPM\x02"
#   sections     u16 BE    S, then S times: u8 name length, the table name (ASCII),
#                          u32 BE record count
#   key block    u32 BE    K, then K bytes: zlib (RFC 1950) of the UTF-8 JSON array of every
#                          record key, in item order
#   digests      32 × N    the raw SHA-256 record hashes, in item order (N = sum of the counts)
# records_digest = SHA-256 of exactly these bytes. Format 1 (older entries, still read) is the
# zlib-compressed compact JSON list of [table, key, record_hash hex] items, and its
# records_digest the SHA-256 of that JSON before compression. "G" (0x47) cannot start a zlib
# stream (RFC 1950: the low nibble of the first byte is 8), so the first bytes tell them apart.
MANIFEST_FORMAT = 2
MANIFEST_MAGIC = b"GPM\x02"
DIGEST_SIZE = 32
_U16, _U32 = struct.Struct(">H"), struct.Struct(">I")


class ManifestError(ValueError):
    """A stored manifest that does not parse as either format (truncated, altered, foreign)."""


def encode_sections(sections: Sequence[Section]) -> tuple[bytes, str]:
    """(stored bytes, records_digest) of a format-2 manifest of ``sections``, in order."""
    parts = [MANIFEST_MAGIC, _U16.pack(len(sections))]
    keys: list[str] = []
    for table, section_keys, digests in sections:
        name = table.encode("ascii")
        if (not section_keys or len(digests) != DIGEST_SIZE * len(section_keys)
                or not 0 < len(name) < 256):
            raise ValueError(f"malformed manifest section for {table}")
        parts += [bytes((len(name),)), name, _U32.pack(len(section_keys))]
        keys += section_keys
    block = zlib.compress(orjson.dumps(keys), 1)
    parts += [_U32.pack(len(block)), block, *(digests for _, _, digests in sections)]
    blob = b"".join(parts)
    return blob, hashlib.sha256(blob).hexdigest()


def sections_of(items: Iterable[ManifestItem]) -> list[Section]:
    """Manifest items grouped into sections: each run of consecutive items of one table."""
    sections: list[tuple[str, list[str], list[bytes]]] = []
    for table, key, hex_hash in items:
        digest = bytes.fromhex(hex_hash)
        if len(digest) != DIGEST_SIZE:
            raise ValueError(f"record hash of {table} {key} is not a SHA-256")
        if not sections or sections[-1][0] != table:
            sections.append((table, [], []))
        sections[-1][1].append(key)
        sections[-1][2].append(digest)
    return [(table, keys, b"".join(digests)) for table, keys, digests in sections]


def encode_manifest(items: list[ManifestItem]) -> tuple[bytes, str]:
    """(stored bytes, records_digest) of the current format over ``items``, in order."""
    return encode_sections(sections_of(items))


def decode_sections(blob: bytes) -> list[Section]:
    """The sections of a format-2 manifest; ``ManifestError`` unless it is exactly one."""
    view = memoryview(blob)
    if bytes(view[:4]) != MANIFEST_MAGIC:
        raise ManifestError("not a format-2 manifest (magic)")
    try:
        (count,), at = _U16.unpack_from(view, 4), 6
        tables: list[tuple[str, int]] = []
        for _ in range(count):
            size = view[at]
            name = bytes(view[at + 1:at + 1 + size]).decode("ascii")
            (n,) = _U32.unpack_from(view, at + 1 + size)
            if size == 0 or len(name) != size or n == 0:
                raise ManifestError("manifest section malformed")
            tables.append((name, n))
            at += 5 + size
        (size,) = _U32.unpack_from(view, at)
        at += 4
        inflate = zlib.decompressobj()
        keys = orjson.loads(inflate.decompress(view[at:at + size]))
        if not inflate.eof or inflate.unused_data or len(view[at:at + size]) != size:
            raise ManifestError("manifest key block truncated")
    except (struct.error, IndexError, UnicodeDecodeError, zlib.error,
            orjson.JSONDecodeError) as exc:
        raise ManifestError(f"manifest truncated or altered: {exc}") from exc
    at += size
    total = sum(n for _, n in tables)
    if not (isinstance(keys, list) and len(keys) == total
            and all(type(k) is str for k in keys)):
        raise ManifestError(f"manifest key block does not hold {total} keys")
    if len(view) - at != DIGEST_SIZE * total:
        raise ManifestError(f"manifest holds {len(view) - at} digest bytes, not "
                            f"{DIGEST_SIZE} for each of its {total} records")
    sections: list[Section] = []
    first = 0
    for name, n in tables:
        sections.append((name, keys[first:first + n],
                         bytes(view[at + DIGEST_SIZE * first:at + DIGEST_SIZE * (first + n)])))
        first += n
    return sections


def items_of(sections: Iterable[Section]) -> list[ManifestItem]:
    items: list[ManifestItem] = []
    for table, keys, digests in sections:
        hexes = digests.hex()
        items += [(table, key, hexes[64 * i:64 * i + 64]) for i, key in enumerate(keys)]
    return items


def decode_manifest(blob: bytes) -> tuple[list[ManifestItem], str]:
    """(items, records_digest) of a stored manifest of either format.

    ``ManifestError`` when it does not parse. Format-1 items are returned as stored, not checked:
    each should be a ``(table, key, record_hash)`` of strings, and verify reports any that is not.
    """
    blob = bytes(blob)
    if blob[:4] == MANIFEST_MAGIC:
        return items_of(decode_sections(blob)), hashlib.sha256(blob).hexdigest()
    try:
        raw = zlib.decompress(blob)
        items = orjson.loads(raw)
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise ManifestError(f"manifest unreadable: {exc}") from exc
    if not isinstance(items, list):
        raise ManifestError("manifest is not a list")
    return ([tuple(i) if isinstance(i, list) else i for i in items],  # type: ignore[misc]
            hashlib.sha256(raw).hexdigest())


# --- the manifest in a bundle ------------------------------------------------------------------
def portable_manifest(blob: bytes) -> tuple[int, str]:
    """(format, text) of a stored manifest as proofs carry it: the bytes ``records_digest``
    is the SHA-256 of, as text. Format 1: the JSON itself; format 2: its base64 (RFC 4648)."""
    blob = bytes(blob)
    if blob[:4] == MANIFEST_MAGIC:
        return MANIFEST_FORMAT, base64.b64encode(blob).decode("ascii")
    try:
        return 1, zlib.decompress(blob).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest unreadable: {exc}") from exc


def read_portable(manifest_format: int, text: str) -> tuple[list[ManifestItem], str]:
    """(items, the SHA-256 of the digested bytes) of a manifest as a proof carries it.

    ``ManifestError`` when it does not parse. Format-1 items are as the JSON holds them."""
    if manifest_format == MANIFEST_FORMAT:
        try:
            blob = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error) as exc:
            raise ManifestError(f"manifest is not base64: {exc}") from exc
        return items_of(decode_sections(blob)), hashlib.sha256(blob).hexdigest()
    if manifest_format != 1:
        raise ManifestError(f"unknown manifest format {manifest_format}")
    raw = text.encode("utf-8")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"manifest unreadable: {exc}") from exc
    if not isinstance(items, list):
        raise ManifestError("manifest is not a list")
    return ([tuple(i) if isinstance(i, list) else i for i in items],  # type: ignore[misc]
            hashlib.sha256(raw).hexdigest())


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


def append_entry(conn: Connection, scope: str, items: list[ManifestItem],
                 created_at: str) -> ChainHead:
    """Append one chain entry for ``items``; the caller holds the transaction and the scope lock."""
    return append_sections(conn, scope, sections_of(items), created_at)


def append_sections(conn: Connection, scope: str, sections: Sequence[Section], created_at: str,
                    *, encoded: tuple[bytes, str] | None = None) -> ChainHead:
    """Append one chain entry for ``sections`` (the caller holds the transaction and the scope
    lock); ``encoded`` is ``encode_sections(sections)`` when the caller has it already."""
    head = read_head(conn, scope)
    blob, digest = encoded or encode_sections(sections)
    count = sum(len(keys) for _, keys, _ in sections)
    seq = head.seq + 1
    h = entry_hash(scope=scope, seq=seq, prev_hash=head.entry_hash, records_digest=digest,
                   record_count=count, created_at=created_at)
    conn.execute(ledger_entries.insert(), {
        "scope": scope, "seq": seq, "prev_hash": head.entry_hash, "records_digest": digest,
        "record_count": count, "manifest": blob, "created_at": created_at, "entry_hash": h,
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

"""Tampering with an audit database the way an attacker with a SQL client would.

``raw_connection`` opens a plain DB-API connection (``sqlite3`` / ``psycopg``), bypassing the
recorder, the ledger and, where the attacker can, the constraints: SQLite foreign keys and CHECKs
are switched off per connection; PostgreSQL foreign-key triggers are disabled for the session
(``session_replication_role = replica``) and CHECK / NOT NULL constraints can be dropped, as the
owner of the tables could. The ledger helpers rewrite chains and seals with the project's own
hashing code, as an attacker who has read it would.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import make_url

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.signed_note import sign_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint
from governance_pipeline.landscape import checkpoints, ledger
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.schema import LEDGERED


class RawDB:
    """A DB-API connection in autocommit mode; SQL is written with ``?`` placeholders."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._path = parsed.database
        if self.dialect == "sqlite":
            self._conn: Any = self._open_sqlite()
        else:
            dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self._conn = psycopg.connect(dsn, autocommit=True)
            self._conn.execute("SET session_replication_role = replica")

    def _open_sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA ignore_check_constraints=ON")
        return conn

    def _cursor(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Any:
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, params)

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._cursor(sql, params)
        return list(cur.fetchall()) if cur.description else []

    def scalar(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        result = self.execute(sql, params)
        return result[0][0] if result else None

    def row(self, table: str, where: str, params: tuple[Any, ...]) -> dict[str, Any]:
        cur = self._cursor(f"SELECT * FROM {table} WHERE {where}", params)
        names = [d[0] for d in cur.description]
        found = cur.fetchone()
        assert found is not None, f"no {table} row where {where} {params}"
        return dict(zip(names, found, strict=True))

    def rows(self, table: str) -> list[dict[str, Any]]:
        cur = self._cursor(f"SELECT * FROM {table}", ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, found, strict=True)) for found in cur.fetchall()]

    def drop_constraints(self, table: str, nullable: tuple[str, ...] = ()) -> None:
        """Remove the CHECKs of ``table`` and the NOT NULL of ``nullable`` columns."""
        if self.dialect == "sqlite":
            if nullable:
                self._drop_not_null_sqlite(table, nullable)
            return  # CHECKs are already ignored by this connection
        checks = self.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = ?::regclass AND contype = 'c'",
            (table,))
        for (name,) in checks:
            self.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for column in nullable:
            self.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")

    def retype(self, table: str, column: str, pg_type: str, using: str) -> None:
        """Give ``column`` another type (PostgreSQL; SQLite columns hold any type already)."""
        if self.dialect != "sqlite":
            self.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {pg_type} USING {using}")

    def _drop_not_null_sqlite(self, table: str, columns: tuple[str, ...]) -> None:
        # SQLite cannot ALTER a NOT NULL away; editing the stored schema text can (NOT NULL does
        # not change the record format). The new schema is read by connections opened after.
        sql = self.scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (table,))
        for column in columns:
            assert f"\n\t{column} " in sql, f"{table} has no column {column}"
            sql = re.sub(rf"(\n\t{column} [A-Z]+(?:\(\d+\))?)((?: DEFAULT '[^']*')?) NOT NULL",
                         r"\1\2", sql)
        version = self.scalar("PRAGMA schema_version")
        self.execute("PRAGMA writable_schema=ON")
        self.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                     (sql, table))
        self.execute(f"PRAGMA schema_version={version + 1}")
        self.execute("PRAGMA writable_schema=OFF")
        self._conn.close()
        self._conn = self._open_sqlite()

    def close(self) -> None:
        self._conn.close()


@contextmanager
def raw_connection(url: str) -> Iterator[RawDB]:
    db = RawDB(url)
    try:
        yield db
    finally:
        db.close()


def entries(db: RawDB, scope: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT scope, seq, prev_hash, records_digest, record_count, manifest, "
                      "created_at, entry_hash FROM ledger_entries WHERE scope = ? ORDER BY seq",
                      (scope,))
    names = ("scope", "seq", "prev_hash", "records_digest", "record_count", "manifest",
             "created_at", "entry_hash")
    return [dict(zip(names, r, strict=True)) for r in rows]


def recommit_record(db: RawDB, scope: str, table: str, key: str) -> None:
    """Make the chain of ``scope`` commit the current content of one (edited) record.

    Rewrites the manifest of the latest entry naming the record, then recomputes the digest and
    entry hash of that entry and every later one, so the chain is consistent again.
    """
    spec = LEDGERED[table]
    where = " AND ".join(f"{c} = ?" for c in spec.key_columns)
    values = (key,) if len(spec.key_columns) == 1 else tuple(orjson.loads(key))
    new_hash = ledger.record_hash(spec, db.row(table, where, values))
    chain = entries(db, scope)
    target = max(e["seq"] for e in chain
                 if any(i[0] == table and i[1] == key
                        for i in ledger.decode_manifest(bytes(e["manifest"]))[0]))
    prev = ledger.GENESIS_HASH
    for entry in chain:
        if entry["seq"] == target:
            items, _ = ledger.decode_manifest(bytes(entry["manifest"]))
            items = [(t, k, new_hash if (t, k) == (table, key) else h) for t, k, h in items]
            blob, digest = ledger.encode_manifest(items)
            entry.update(manifest=blob, records_digest=digest)
        if entry["seq"] >= target:
            entry["prev_hash"] = prev
            entry["entry_hash"] = ledger.entry_hash(
                scope=scope, seq=entry["seq"], prev_hash=prev,
                records_digest=entry["records_digest"], record_count=entry["record_count"],
                created_at=entry["created_at"])
            db.execute("UPDATE ledger_entries SET prev_hash = ?, records_digest = ?, "
                       "manifest = ?, entry_hash = ? WHERE scope = ? AND seq = ?",
                       (entry["prev_hash"], entry["records_digest"], bytes(entry["manifest"]),
                        entry["entry_hash"], scope, entry["seq"]))
        prev = entry["entry_hash"]


def append_entry(db: RawDB, scope: str, items: list[ledger.ManifestItem], created_at: str) -> int:
    """Append a well-formed entry to the chain of ``scope`` (no seal); returns its seq."""
    last = entries(db, scope)[-1]
    blob, digest = ledger.encode_manifest(items)
    seq = last["seq"] + 1
    h = ledger.entry_hash(scope=scope, seq=seq, prev_hash=last["entry_hash"],
                          records_digest=digest, record_count=len(items), created_at=created_at)
    db.execute("INSERT INTO ledger_entries (scope, seq, prev_hash, records_digest, record_count, "
               "manifest, created_at, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (scope, seq, last["entry_hash"], digest, len(items), blob, created_at, h))
    return seq


def reseal(db: RawDB, scope: str, signer: Signer, *, claim_key_id: str | None = None) -> str:
    """Re-sign the latest seal of ``scope`` over the current head with ``signer``.

    ``claim_key_id`` is the key id written into the seal (and the signed message); by default
    the signer's own id. Returns the seal id.
    """
    seal_id, sealed_at = db.execute(
        "SELECT seal_id, sealed_at FROM ledger_seals WHERE scope = ? ORDER BY seq DESC LIMIT 1",
        (scope,))[0]
    head = entries(db, scope)[-1]
    key_id = claim_key_id or signer.key_id
    message = ledger.seal_message(scope=scope, seq=head["seq"], head_hash=head["entry_hash"],
                                  key_id=key_id, sealed_at=sealed_at)
    db.execute("UPDATE ledger_seals SET seq = ?, head_hash = ?, key_id = ?, signature = ? "
               "WHERE seal_id = ?",
               (head["seq"], head["entry_hash"], key_id, signer.sign(message), seal_id))
    return seal_id


def manifest_keys(entry: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t, k) for t, k, _ in ledger.decode_manifest(bytes(entry["manifest"]))[0]}


def delete_record(db: RawDB, table: str, key: str) -> None:
    spec = LEDGERED[table]
    where = " AND ".join(f"{c} = ?" for c in spec.key_columns)
    values = (key,) if len(spec.key_columns) == 1 else tuple(orjson.loads(key))
    db.execute(f"DELETE FROM {table} WHERE {where}", values)


def drop_and_rechain(db: RawDB, scope: str, table: str, key: str) -> int:
    """Delete one record and make the chain of ``scope`` never have committed it.

    The record's item is removed from every manifest naming it, and the digest and hash of that
    entry and every later one recomputed (the head is "re-set"), as an attacker without the
    signing key can. Seals are left alone. Returns the first rewritten seq.
    """
    delete_record(db, table, key)
    chain = entries(db, scope)
    first = min(e["seq"] for e in chain if (table, key) in manifest_keys(e))
    prev = ledger.GENESIS_HASH
    for entry in chain:
        if entry["seq"] >= first:
            items, _ = ledger.decode_manifest(bytes(entry["manifest"]))
            kept = [i for i in items if (i[0], i[1]) != (table, key)]
            blob, digest = ledger.encode_manifest(kept)
            entry.update(manifest=blob, records_digest=digest, record_count=len(kept),
                         prev_hash=prev)
            entry["entry_hash"] = ledger.entry_hash(
                scope=scope, seq=entry["seq"], prev_hash=prev, records_digest=digest,
                record_count=len(kept), created_at=entry["created_at"])
            db.execute("UPDATE ledger_entries SET prev_hash = ?, records_digest = ?, "
                       "record_count = ?, manifest = ?, entry_hash = ? WHERE scope = ? "
                       "AND seq = ?", (prev, digest, len(kept), blob, entry["entry_hash"],
                                       scope, entry["seq"]))
        prev = entry["entry_hash"]
    return first


def truncate_chain_to(db: RawDB, scope: str, seq: int, *, keep_seals: bool = False) -> None:
    """Cut the chain of ``scope`` back to ``seq``: later entries, the records only they
    committed and (unless ``keep_seals``) the seals over them are deleted."""
    chain = entries(db, scope)
    kept = set().union(*(manifest_keys(e) for e in chain if e["seq"] <= seq))
    for entry in chain:
        if entry["seq"] > seq:
            for table, key in manifest_keys(entry) - kept:
                delete_record(db, table, key)
    db.execute("DELETE FROM ledger_entries WHERE scope = ? AND seq > ?", (scope, seq))
    if not keep_seals:  # the seals over them, and their checkpoints
        db.execute("DELETE FROM ledger_seals WHERE scope = ? AND seq > ?", (scope, seq))
        db.execute("DELETE FROM ledger_checkpoints WHERE scope = ? AND tree_size > ?",
                   (scope, seq))


def delete_run(db: RawDB, run_id: str) -> None:
    """Every trace of a run: its rows in every run-scoped table, its chain, seals and
    checkpoints."""
    for spec in LEDGERED.values():
        if spec.scope_column is not None:
            db.execute(f"DELETE FROM {spec.name} WHERE {spec.scope_column} = ?", (run_id,))
    db.execute("DELETE FROM ledger_entries WHERE scope = ?", (run_id,))
    db.execute("DELETE FROM ledger_seals WHERE scope = ?", (run_id,))
    db.execute("DELETE FROM ledger_checkpoints WHERE scope = ?", (run_id,))


def restore_row(db: RawDB, table: str, row: dict[str, Any]) -> None:
    """Put every column of one record back to ``row`` (as read earlier with ``RawDB.rows``)."""
    spec = LEDGERED[table]
    keys = spec.key_columns
    columns = [c for c in row if c not in keys]
    db.execute(f"UPDATE {table} SET " + ", ".join(f"{c} = ?" for c in columns) + " WHERE "
               + " AND ".join(f"{k} = ?" for k in keys),
               [row[c] for c in columns] + [row[k] for k in keys])


def reseal_all(db: RawDB, scope: str, signer: Signer) -> int:
    """Re-sign every seal and every C2SP checkpoint of ``scope`` over the chain as it is now,
    with ``signer``: what the holder of the real key does after rewriting a chain (the
    checkpoints' roots and frontiers recomputed with the project's own Merkle code). Returns how
    many seals it re-signed."""
    chain = entries(db, scope)
    heads = {e["seq"]: e["entry_hash"] for e in chain}
    seals = db.execute("SELECT seal_id, seq, sealed_at FROM ledger_seals WHERE scope = ?",
                       (scope,))
    for seal_id, seq, sealed_at in seals:
        head = ledger.GENESIS_HASH if seq == 0 else heads[seq]
        message = ledger.seal_message(scope=scope, seq=seq, head_hash=head,
                                      key_id=signer.key_id, sealed_at=sealed_at)
        db.execute("UPDATE ledger_seals SET head_hash = ?, key_id = ?, signature = ? "
                   "WHERE seal_id = ?", (head, signer.key_id, signer.sign(message), seal_id))
    raw = signer.public.key.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    for size, note in db.execute("SELECT tree_size, note FROM ledger_checkpoints "
                                 "WHERE scope = ?", (scope,)):
        origin = note.split("\n", 1)[0]
        frontier = merkle.Frontier()
        frontier.extend(checkpoints.entry_leaf(e["entry_hash"]) for e in chain[:size])
        body = Checkpoint(origin, size, frontier.root()).body()
        signed = sign_note(body, origin, lambda m: bytes.fromhex(signer.sign(m)), raw)
        db.execute("UPDATE ledger_checkpoints SET note = ?, frontier = ? WHERE scope = ? AND "
                   "tree_size = ?", (signed, frontier.to_bytes(), scope, size))
    return len(seals)

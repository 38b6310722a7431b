"""The record check of ``verify``: every row of a scope against the hash its chain committed.

The chain replay (``verify_chain.check_chain``) hands each entry's manifest items to a
``RecordCheck`` table by table; the check reads that table's rows of the scope alongside, as
plain driver tuples ``STREAM`` at a time, hashes them with ``ledger.rows_manifest`` (the
writer's own tuple hashing, byte-identical to ``record_hash``) and matches committed and actual
hashes by key as both streams go. Rows are written in the order their entries commit them, so
almost every key meets its partner within one read-ahead window and is dropped at once: memory
holds the keys in flight, not the scope. Any order is still judged correctly, only with more
keys in flight.

Latest version wins: a record re-emitted by a later entry (an update) replaces what an earlier
one committed. A re-emission that arrives after its row was matched is judged again at the end
against the row itself, read by key; so is every committed key no row answered (deleted, or
moved to another scope).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED, LedgerSpec
from governance_pipeline.landscape.verify_chain import RECORD, STREAM, Tally

#: Rows of one table read ahead of the manifests that commit them before the reader waits.
WINDOW = 4 * STREAM

Row = tuple[Any, ...]
Hasher = Callable[[Sequence[Row]], list[ledger.ManifestItem]]
_UNHASHABLE = (TypeError, ValueError, OverflowError, orjson.JSONEncodeError)


def key_and_hash(spec: LedgerSpec, row: Any) -> tuple[str, str]:
    """The record's ledger key and hash (``row`` a mapping); a value the ledger could never have
    hashed (text in a float column, an integer beyond 64 bits) gets a hash that matches no
    committed one."""
    try:
        key = ledger.record_key(spec, row)
    except orjson.JSONEncodeError:  # e.g. a blob in a key column
        key = repr([row[c] for c in spec.key_columns])
    try:
        return key, ledger.record_hash(spec, row)
    except _UNHASHABLE as exc:
        return key, f"unhashable: {exc}"


def record_hasher(spec: LedgerSpec) -> Hasher:
    """(table, key, hash) of rows given as tuples of ``spec.hashed_columns``, exactly
    ``key_and_hash`` of the same rows as mappings: a batch is hashed by ``ledger.rows_manifest``;
    one holding a value that cannot be hashed goes row by row through ``key_and_hash``."""
    columns = spec.hashed_columns
    manifest = ledger.rows_manifest(spec, columns)

    def hashes(rows: Sequence[Row]) -> list[ledger.ManifestItem]:
        try:
            return manifest(rows)
        except _UNHASHABLE:
            return [(spec.name, *key_and_hash(spec, dict(zip(columns, row, strict=True))))
                    for row in rows]

    return hashes


def owns(spec: LedgerSpec, scope: str) -> bool:
    """Whether rows of ``spec``'s table can belong to ``scope``."""
    return spec.scope_column is not None or scope == GLOBAL_SCOPE


def scan_sql(conn: Connection, spec: LedgerSpec, where: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return (f"SELECT {', '.join(quote(c) for c in spec.hashed_columns)} "
            f"FROM {quote(spec.name)} {where}")


def param(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


class _Cursor:
    """A driver cursor over the rows of one table and scope, in the caller's transaction
    (PostgreSQL: a server-side cursor, so rows are fetched ``STREAM`` at a time)."""

    _names = 0

    def __init__(self, conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
        driver: Any = conn.connection.driver_connection
        if conn.dialect.name == "postgresql":
            _Cursor._names += 1
            self._cursor = driver.cursor(name=f"gp_verify_{_Cursor._names}")
        else:
            self._cursor = driver.cursor()
        self._cursor.execute(sql, params)

    def fetch(self) -> list[Row]:
        return self._cursor.fetchmany(STREAM)

    def close(self) -> None:
        self._cursor.close()


def scope_rows(conn: Connection, spec: LedgerSpec, scope: str | None) -> _Cursor:
    """The rows of ``spec``'s table in ``scope`` (None: rows naming no scope)."""
    quote = conn.dialect.identifier_preparer.quote
    if spec.scope_column is None:
        return _Cursor(conn, scan_sql(conn, spec, ""), ())
    column = quote(spec.scope_column)
    if scope is None:
        return _Cursor(conn, scan_sql(conn, spec, f"WHERE {column} IS NULL"), ())
    if conn.dialect.name == "sqlite" and _most_of_table(conn, spec, scope):
        column = f"+{column}"  # "+" keeps SQLite off the scope index: a scan in rowid order
    return _Cursor(conn, scan_sql(conn, spec, f"WHERE {column} = {param(conn)}"), (scope,))


def _most_of_table(conn: Connection, spec: LedgerSpec, scope: str) -> bool:
    """Whether ``scope`` holds at least half of the table's rows (SQLite). Its rows are then
    read by a plain scan, in the order they were written: a scope index such as (run_id,
    outcome) hands them over grouped by its second column, far from the order the manifests
    commit them in, and every key waits for its partner meanwhile."""
    quote = conn.dialect.identifier_preparer.quote
    table, column = quote(spec.name), quote(spec.scope_column or "")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        last = cursor.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        mine = cursor.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?",
                              (scope,)).fetchone()[0]
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: leave the plan to SQLite
        return False
    finally:
        cursor.close()
    return mine * 2 >= last


class _TableMatch:
    """Committed and actual hashes of one table and scope, matched by key as they arrive."""

    def __init__(self, conn: Connection, spec: LedgerSpec, scope: str) -> None:
        self.spec, self.scope = spec, scope
        self.hashes = record_hasher(spec)
        self.cursor: _Cursor | None = scope_rows(conn, spec, scope)
        self.rows = 0
        self.committed: dict[str, str] = {}  # committed, no row with the key read yet
        self.unclaimed: dict[str, str] = {}  # rows read, no entry committed the key yet
        self.modified: dict[str, tuple[str, str]] = {}  # key -> (committed, actual)
        self.duplicates: list[tuple[str, str]] = []  # a second row with a key already read

    def commit(self, items: Iterable[tuple[str, str, str]]) -> None:
        committed, unclaimed = self.committed, self.unclaimed
        for _, key, digest in items:
            actual = unclaimed.pop(key, None)
            if actual is None:
                committed[key] = digest  # latest version wins
            elif actual != digest:
                self.modified[key] = (digest, actual)
        self.read(until=WINDOW)

    def read(self, until: int | None = None) -> None:
        """Read rows while committed keys wait for them (``until``: at most that many rows
        unclaimed; None: read every row)."""
        committed, unclaimed = self.committed, self.unclaimed
        while self.cursor is not None and (until is None or (committed
                                                             and len(unclaimed) < until)):
            batch = self.cursor.fetch()
            if not batch:
                self.cursor.close()
                self.cursor = None
                break
            self.rows += len(batch)
            for _, key, actual in self.hashes(batch):
                digest = committed.pop(key, None)
                if digest is None:
                    if key in unclaimed:
                        self.duplicates.append((key, actual))
                    else:
                        unclaimed[key] = actual
                elif digest != actual:
                    self.modified[key] = (digest, actual)

    def finish(self, conn: Connection, state: Tally) -> None:
        self.read()
        name, scope = self.spec.name, self.scope
        missing: list[tuple[str, str, Any]] = []
        for key, digest in self.committed.items():
            found = _read_by_key(conn, self.spec, key)
            owner = None if found is None else found[1]
            if found is not None and (owner == scope or self.spec.scope_column is None):
                # Re-emitted after its row was matched: judged against the latest version.
                self.modified.pop(key, None)
                if found[0] != digest:
                    self.modified[key] = (digest, found[0])
            else:
                missing.append((key, digest, owner))
        state.records += self.rows
        for key, (digest, actual) in self.modified.items():
            state.add(RECORD, name, key, "modified: content differs from what the ledger "
                      "committed", scope, expected=digest, actual=actual)
        for key, actual in [*self.unclaimed.items(), *self.duplicates]:
            state.add(RECORD, name, key, "inserted: no ledger entry covers this record", scope,
                      actual=actual)
        for key, digest, owner in missing:
            if owner is not None and owner != scope:
                state.add(RECORD, name, key, f"moved: the record committed in this scope now "
                          f"names scope {owner}", scope, expected=digest, now_in=owner)
            else:
                state.add(RECORD, name, key, "deleted: the ledger committed this record but it "
                          "is gone", scope, expected=digest)


def _read_by_key(conn: Connection, spec: LedgerSpec, key: str) -> tuple[str, Any] | None:
    """(hash, scope) of the row with ``key`` (taken from a manifest, so untrusted), if any."""
    try:
        values = [key] if len(spec.key_columns) == 1 else orjson.loads(key)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(values, list) and len(values) == len(spec.key_columns)
            and all(type(v) in (str, int) for v in values)):
        return None
    quote, mark = conn.dialect.identifier_preparer.quote, param(conn)
    where = " AND ".join(f"{quote(c)} = {mark}" for c in spec.key_columns)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(scan_sql(conn, spec, f"WHERE {where}"), tuple(values))
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    scope = None if spec.scope_column is None else row[spec.hashed_columns.index(
        spec.scope_column)]
    return record_hasher(spec)([row])[0][2], scope


class RecordCheck:
    """The record check of one scope: fed the chain's manifests, finished after the chain."""

    def __init__(self, conn: Connection, scope: str) -> None:
        self.conn, self.scope = conn, scope
        self.tables: dict[str, _TableMatch] = {}

    def _table(self, name: str) -> _TableMatch:
        match = self.tables.get(name)
        if match is None:
            match = self.tables[name] = _TableMatch(self.conn, LEDGERED[name], self.scope)
        return match

    def commit(self, table: str, items: Iterable[tuple[str, str, str]]) -> None:
        """Items of one entry for ``table`` (which the chain check found may be in the scope)."""
        self._table(table).commit(items)

    def finish(self, state: Tally) -> None:
        for name, spec in LEDGERED.items():
            if owns(spec, self.scope):
                self._table(name).finish(self.conn, state)


def check_unowned_records(conn: Connection, state: Tally) -> None:
    """Rows whose scope column is NULL belong to no chain: none could have been committed."""
    for name, spec in LEDGERED.items():
        if spec.scope_column is None:
            continue
        cursor, hashes = scope_rows(conn, spec, None), record_hasher(spec)
        while batch := cursor.fetch():
            state.records += len(batch)
            for _, key, actual in hashes(batch):
                state.add(RECORD, name, key, "inserted: the record names no scope, so no "
                          "ledger entry can cover it", None, actual=actual)
        cursor.close()

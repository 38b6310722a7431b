"""Bulk inserts for the recorder: one statement per table and unit, the driver's fastest way in.

Rows arrive as tuples in table column order and go to the driver as they are: no per-row dicts,
no per-value type processing (audit columns are text, integers and doubles, which the drivers
take natively). On SQLite that is ``executemany``; on PostgreSQL binary ``COPY``, about twice the
rate of a pipelined ``executemany`` there (``benchmarks/landscape_write.py``), with the same
constraint, index and foreign-key checks. Payloads are content-addressed, so a payload already
stored is skipped (``ON CONFLICT DO NOTHING``). Other dialects get SQLAlchemy Core inserts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.exc import DBAPIError

from governance_pipeline.landscape.schema import payloads

Row = tuple[Any, ...]


def insert_rows(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Insert ``rows`` (tuples in ``table`` column order) in one bulk statement."""
    _ROW_WRITERS.get(conn.dialect.name, insert_rows_core)(conn, table, rows)


def insert_payloads(conn: Connection, rows: list[Row]) -> None:
    """Insert payload rows, skipping content hashes already stored."""
    _PAYLOAD_WRITERS.get(conn.dialect.name, insert_payloads_core)(conn, rows)


_SQL: dict[tuple[str, str], str] = {}


def _columns_sql(conn: Connection, table: Table) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(table.name)} ({', '.join(quote(c.name) for c in table.columns)})"


def _insert_sqlite(conn: Connection, table: Table, rows: list[Row]) -> None:
    sql = _SQL.get(("sqlite", table.name))
    if sql is None:
        marks = ", ".join("?" * len(table.columns))
        sql = _SQL[("sqlite", table.name)] = \
            f"INSERT INTO {_columns_sql(conn, table)} VALUES ({marks})"
    conn.exec_driver_sql(sql, rows)


def _payloads_sqlite(conn: Connection, rows: list[Row]) -> None:
    conn.exec_driver_sql(
        f"INSERT INTO {_columns_sql(conn, payloads)} VALUES ({', '.join('?' * len(payloads.columns))}) "
        "ON CONFLICT (content_hash) DO NOTHING", rows)


# Binary COPY sends values in the column's exact wire format, so every column type must be known.
_PG_TYPES: tuple[tuple[type, str], ...] = (
    (BigInteger, "int8"), (SmallInteger, "int2"), (Integer, "int4"), (Float, "float8"),
    (LargeBinary, "bytea"), (Text, "text"), (String, "varchar"))


def pg_type(column: Any) -> str:
    """The PostgreSQL type a column's values are sent as in binary format."""
    for kind, name in _PG_TYPES:
        if isinstance(column.type, kind):
            return name
    raise TypeError(f"no binary COPY type for column {column} ({column.type!r})")


def _insert_postgresql(conn: Connection, table: Table, rows: list[Row]) -> None:
    sql = _SQL.get(("postgresql", table.name))
    if sql is None:
        sql = _SQL[("postgresql", table.name)] = \
            f"COPY {_columns_sql(conn, table)} FROM STDIN (FORMAT BINARY)"
    types = [pg_type(c) for c in table.columns]
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(sql) as copy:
            copy.set_types(types)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
    except psycopg.Error as exc:  # a driver error: give it SQLAlchemy's type, as execute() does
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
    finally:
        cursor.close()


def _payloads_postgresql(conn: Connection, rows: list[Row]) -> None:
    # COPY cannot skip payloads already stored; one INSERT over unnested column arrays can.
    arrays = ", ".join(f"%b::{pg_type(c)}[]" for c in payloads.columns)
    conn.exec_driver_sql(
        f"INSERT INTO {_columns_sql(conn, payloads)} SELECT * FROM unnest({arrays}) "
        "ON CONFLICT (content_hash) DO NOTHING", tuple(list(col) for col in zip(*rows)))


def insert_rows_core(conn: Connection, table: Table, rows: list[Row]) -> None:
    if not rows:
        return
    names = [c.name for c in table.columns]
    conn.execute(table.insert(), [dict(zip(names, row)) for row in rows])


def insert_payloads_core(conn: Connection, rows: list[Row]) -> None:
    stored = set(conn.execute(select(payloads.c.content_hash).where(
        payloads.c.content_hash.in_([r[0] for r in rows]))).scalars())
    insert_rows_core(conn, payloads, [r for r in rows if r[0] not in stored])


_ROW_WRITERS: dict[str, Callable[[Connection, Table, list[Row]], None]] = {
    "sqlite": _insert_sqlite, "postgresql": _insert_postgresql}
_PAYLOAD_WRITERS: dict[str, Callable[[Connection, list[Row]], None]] = {
    "sqlite": _payloads_sqlite, "postgresql": _payloads_postgresql}

"""Plain-SQL reads of the Landscape: one small protocol, three connections behind it.

A ``Reader`` runs a statement written with named parameters (``:name``) and returns its rows as
dicts of the driver's own values. A list or tuple parameter expands in place for ``IN (:name)``
(an empty one to ``NULL``, which matches nothing: use it with ``IN`` only, never ``NOT IN``).

* ``SqliteReader``: the standard library's ``sqlite3`` on a read-only URI, with the pragmas of the
  product's readers (``read_snapshot``): no write lock, ``query_only``, one deferred transaction
  (in WAL mode one snapshot for every statement);
* ``PostgresReader``: psycopg 3 in a REPEATABLE READ, READ ONLY transaction;
* ``ConnectionReader``: an SQLAlchemy ``Connection`` of an in-process caller (bundles, incident
  reports, orchestration, tests), so the same queries serve both.

The first two are what ``explain`` on the command line reads through: they import neither
SQLAlchemy nor Alembic (~0.3-0.5 s of start-up), so explaining a row costs its queries.
``open_reader`` opens one only when it can answer exactly as the Landscape would: a URL in one of
the plain forms, an existing Landscape at the schema head. Anything else (a URL it does not
parse, a missing file, an older revision to upgrade, any driver error) returns None or raises
``ReadFailed``, and the caller takes the SQLAlchemy path, which says what is wrong as it always
did.
"""

from __future__ import annotations

import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from governance_pipeline.contracts.errors import ENV_INVALID, ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection

Params = Mapping[str, Any]
Row = dict[str, Any]

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long a SQLite writer waits for another one's lock before failing (GP-DB-006).
BUSY_TIMEOUT_ENV = "GOVERNANCE_SQLITE_BUSY_TIMEOUT_MS"

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def sqlite_busy_timeout_ms() -> int:
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return SQLITE_BUSY_TIMEOUT_MS
    if not raw.isdigit():
        raise ConfigError(f"{BUSY_TIMEOUT_ENV} must be a whole number of milliseconds, not "
                          f"{raw!r}", code=ENV_INVALID)
    return int(raw)


class ReadFailed(Exception):
    """The driver failed under a direct reader: the caller reads through SQLAlchemy instead."""


def expand(sql: str, params: Params | None) -> tuple[str, dict[str, Any]]:
    """``sql`` with every list parameter spelled out as ``:name_0, :name_1, ...``."""
    flat: dict[str, Any] = {}
    lists: dict[str, str] = {}
    for name, value in (params or {}).items():
        if isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value) if isinstance(value, (set, frozenset)) else value
            keys = [f"{name}_{i}" for i in range(len(items))]
            flat.update(zip(keys, items, strict=True))
            lists[name] = ", ".join(f":{k}" for k in keys) or "NULL"
        else:
            flat[name] = value
    if lists:
        sql = _PARAM.sub(lambda m: lists.get(m.group(1), m.group(0)), sql)
    return sql, flat


def _pyformat(sql: str) -> str:
    """``:name`` as psycopg's ``%(name)s`` (and a literal ``%`` doubled)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class Reader(ABC):
    """Rows of plain SQL; ``dialect`` is ``sqlite`` or ``postgresql``."""

    dialect: str

    @abstractmethod
    def rows(self, sql: str, params: Params | None = None) -> list[Row]: ...

    def first(self, sql: str, params: Params | None = None) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Params | None = None) -> Any:
        found = self.first(sql, params)
        return None if found is None else next(iter(found.values()))


def _dicts(cursor: Any) -> list[Row]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


class SqliteReader(Reader):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Params | None = None) -> list[Row]:
        sql, flat = expand(sql, params)
        try:
            return _dicts(self.conn.execute(sql, flat))
        except sqlite3.Error as exc:
            raise ReadFailed(str(exc)) from exc


class PostgresReader(Reader):
    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Params | None = None) -> list[Row]:
        import psycopg

        sql, flat = expand(sql, params)
        try:
            with self.conn.cursor() as cur:
                cur.execute(_pyformat(sql), flat)
                return _dicts(cur)
        except psycopg.Error as exc:
            raise ReadFailed(str(exc)) from exc


class ConnectionReader(Reader):
    """An SQLAlchemy connection read through the driver: the same raw values as the others."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def rows(self, sql: str, params: Params | None = None) -> list[Row]:
        sql, flat = expand(sql, params)
        if self.dialect == "postgresql":
            sql = _pyformat(sql)
        result = self.conn.exec_driver_sql(sql, flat)
        return [dict(r) for r in result.mappings()]


def as_reader(conn: Reader | Connection) -> Reader:
    """A reader over ``conn``: itself, or a ``ConnectionReader`` of an SQLAlchemy connection."""
    return conn if isinstance(conn, Reader) else ConnectionReader(conn)


# --- opening a direct reader from a URL ----------------------------------------------------------
_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def _sqlite_path(url: str) -> Path | None:
    """The file of ``sqlite:///PATH`` in its plain form (no host, query or URI filename)."""
    parts = urlsplit(url)
    if parts.scheme not in _SQLITE_SCHEMES or parts.netloc or parts.query or parts.fragment:
        return None
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _pg_connect_args(url: str) -> dict[str, Any] | None:
    """psycopg's keyword arguments for a plain ``postgresql://`` URL, as SQLAlchemy passes them."""
    parts = urlsplit(url)
    if parts.scheme not in _PG_SCHEMES or parts.fragment or "," in parts.netloc \
            or "[" in parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    args: dict[str, Any] = {}
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password:
        args["password"] = unquote(parts.password)
    if parts.hostname:
        args["host"] = parts.hostname
    if port is not None:
        args["port"] = port
    if parts.path[1:]:
        args["dbname"] = unquote(parts.path[1:])
    args.update(parse_qsl(parts.query))
    return args


def _at_head(reader: Reader, has_version_table: str) -> bool:
    from governance_pipeline.landscape.migrate import VERSION_TABLE, head_revision

    if reader.scalar(has_version_table, {"name": VERSION_TABLE}) is None:
        return False
    versions = reader.rows(f"SELECT version_num FROM {VERSION_TABLE}")
    return len(versions) == 1 and versions[0]["version_num"] == head_revision()


@contextmanager
def open_reader(url: str) -> Iterator[Reader | None]:
    """A direct read-only reader of the Landscape at ``url`` in one snapshot, or None when only
    the SQLAlchemy path can say what to do with ``url`` (see the module docstring)."""
    path = _sqlite_path(url)
    if path is not None:
        with _sqlite_reader(path) as reader:
            yield reader
        return
    args = _pg_connect_args(url)
    if args is not None:
        with _postgres_reader(args) as reader:
            yield reader
        return
    yield None


@contextmanager
def _sqlite_reader(path: Path) -> Iterator[Reader | None]:
    if not path.is_file():
        yield None
        return
    busy_timeout = sqlite_busy_timeout_ms()
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               isolation_level=None)
    except sqlite3.Error:
        yield None
        return

    def opened(conn: sqlite3.Connection) -> Reader:
        conn.execute(f"PRAGMA busy_timeout={busy_timeout}")
        conn.execute("PRAGMA query_only=ON")
        conn.execute("BEGIN")
        return SqliteReader(conn)

    with _at_head_or_none(conn, opened, sqlite3.Error,
                          "SELECT name FROM sqlite_master WHERE type = 'table' "
                          "AND name = :name") as reader:
        yield reader


@contextmanager
def _postgres_reader(args: dict[str, Any]) -> Iterator[Reader | None]:
    try:
        import psycopg
    except ImportError:
        yield None
        return
    try:
        conn = psycopg.connect(**args)
    except psycopg.Error:
        yield None
        return

    def opened(conn: Any) -> Reader:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        return PostgresReader(conn)

    with _at_head_or_none(conn, opened, psycopg.Error,
                          "SELECT to_regclass(current_schema() || '.' || :name)") as reader:
        yield reader


@contextmanager
def _at_head_or_none(conn: Any, opened: Callable[[Any], Reader], driver_error: type[Exception],
                     table_sql: str) -> Iterator[Reader | None]:
    """A reader over the open ``conn`` if its Landscape is at the schema head, else None (the
    caller falls back to the Landscape path); ``conn`` is closed either way."""
    try:
        reader = opened(conn)
        at_head = _at_head(reader, table_sql)
    except (driver_error, ReadFailed):
        conn.close()
        yield None
        return
    try:
        yield reader if at_head else None
    finally:
        conn.close()

"""Connecting to the Landscape: URL normalisation, engine settings per dialect, schema revision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import (
    DATABASE_UNAVAILABLE,
    ENV_INVALID,
    ConfigError,
    ErrorCode,
    ExitCode,
    OperationalError,
    register,
)
from governance_pipeline.landscape.reader import (  # noqa: F401 - the writers' setting too
    BUSY_TIMEOUT_ENV,
    SQLITE_BUSY_TIMEOUT_MS,
    sqlite_busy_timeout_ms,
)

SQLITE_URL_MISPLACED = register(
    "GP-CONFIG-003", "The SQLite URL names no database file",
    "A SQLite URL has three slashes before a relative path and four before an absolute one: "
    "sqlite:///landscape.db, sqlite:////var/lib/gp/landscape.db. `sqlite://name` and "
    "`sqlite://` open an empty in-memory database that is lost at exit.",
    ExitCode.INVALID_INPUT)

DATABASE_LOCKED = register(
    "GP-DB-006", "The audit database is locked by another process",
    "Another process holds a write transaction on the SQLite file (a run, a `sqlite3` shell in a "
    "transaction, a backup tool): wait for it to finish or stop it, then retry (a run: resume "
    "it). GOVERNANCE_SQLITE_BUSY_TIMEOUT_MS sets how long a writer waits (default 30000).",
    ExitCode.OPERATIONAL)
DATABASE_READ_ONLY = register(
    "GP-DB-007", "The audit database cannot be written",
    "The database file, its directory (SQLite needs to create the -wal and -shm files next to "
    "it), the disk or the database role is read-only or full: make it writable or free space, "
    "then retry; reading commands (verify, runs, explain) still work.",
    ExitCode.OPERATIONAL)

_LOCKED = ("database is locked", "database table is locked", "lock timeout",
           "could not obtain lock")
_READ_ONLY = ("readonly database", "read-only", "disk is full", "disk i/o error",
              "unable to open database file", "no space left", "read only",
              "permission denied")


def write_failure_code(exc: DBAPIError, default: ErrorCode) -> ErrorCode:
    """The code of a failed audit write: a lock or a read-only store says so, with its fix."""
    text = str(exc.orig).lower()
    if any(marker in text for marker in _LOCKED):
        return DATABASE_LOCKED
    if any(marker in text for marker in _READ_ONLY):
        return DATABASE_READ_ONLY
    return default


#: Spellings of the dialects people mistype, with the one they meant.
_DIALECT_TYPOS = {"postgre": "postgresql", "postgress": "postgresql", "postgressql": "postgresql",
                  "psql": "postgresql", "pg": "postgresql", "pgsql": "postgresql",
                  "sqlite3": "sqlite", "sqllite": "sqlite", "slqite": "sqlite"}

WRITE_OPTION = "landscape_write"


def normalize_url(url: str | URL) -> URL:
    """Accept ``postgresql://`` and ``postgres://`` and pin them to psycopg 3.

    SQLAlchemy 2.0 maps a bare ``postgresql://`` to psycopg2 and 2.1 to psycopg 3; we ship and
    test psycopg 3 only, so the driver is made explicit whichever SQLAlchemy is installed.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:
        hint = ""
        if isinstance(url, str) and re.match(r"^[a-z+]+:/[^/]", url):
            hint = f" (did you mean {url.replace(':/', ':///', 1)!r}?)"
        raise ConfigError(f"invalid database URL: {exc}{hint}", code=ENV_INVALID) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def landscape_url(url: str | URL) -> URL:
    """The Landscape's URL, normalised; a typo that would open some other, empty database (an
    unknown dialect, a SQLite URL without a file) is refused instead."""
    parsed = normalize_url(url)
    try:
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        meant = _DIALECT_TYPOS.get(parsed.get_backend_name())
        hint = f"; did you mean {meant}://?" if meant else ""
        raise ConfigError(f"unknown database dialect {parsed.drivername!r}{hint} (supported: "
                          "sqlite:///PATH, postgresql://USER@HOST/DB)", code=ENV_INVALID) from exc
    if parsed.get_backend_name() == "sqlite" and (parsed.host or not parsed.database
                                                  or parsed.database == ":memory:"):
        raise ConfigError(f"SQLite URL {parsed.render_as_string(hide_password=True)!r} opens an "
                          "in-memory database" + (f" (the host part {parsed.host!r} is ignored)"
                                                  if parsed.host else "")
                          + ", not a Landscape file", code=SQLITE_URL_MISPLACED)
    return parsed


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite Landscape URL (None for any other backend)."""
    parsed = landscape_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = str(parsed.database)
    if database.startswith("file:"):  # a URI filename (``?uri=true``), e.g. ``mode=ro``
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def _configure_sqlite(engine: Engine) -> None:
    busy_timeout = sqlite_busy_timeout_ms()

    # pysqlite's own transaction handling is switched off so that we issue BEGIN ourselves: a
    # write transaction takes the write lock up front (BEGIN IMMEDIATE), so two writers
    # serialise on busy_timeout instead of failing on a lock upgrade; reads stay deferred and,
    # in WAL mode, never block or wait for writers.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_landscape_engine(url: str | URL) -> Engine:
    parsed = landscape_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Connections are kept (QueuePool, SQLAlchemy's default for files): opening one runs the
        # pragmas, and closing the last one makes SQLite checkpoint and truncate the WAL.
        engine = create_engine(parsed)
        _configure_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that intends to write (on SQLite: holds the write lock from its start)."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def translate_db_errors(action: str) -> Iterator[None]:
    """Turn a driver-level failure into our operational error with a code and a fix."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc.orig, ConnectionError) or \
                "connect" in str(exc.orig).lower():
            raise OperationalError(f"{action}: cannot reach the audit database: {exc.orig}",
                                   code=DATABASE_UNAVAILABLE) from exc
        raise


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection in one snapshot that never takes SQLite's write lock (so it
    may be opened while this process holds it, and never blocks a writer)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
            with conn.begin():
                yield conn
        return
    # The Landscape engine begins with BEGIN IMMEDIATE (the write lock); verify must not hold
    # it for minutes, and in WAL mode a deferred read transaction already sees one snapshot.
    reader = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(reader, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA query_only=ON")

    @event.listens_for(reader, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    try:
        with reader.connect() as conn, conn.begin():
            yield conn
    finally:
        reader.dispose()

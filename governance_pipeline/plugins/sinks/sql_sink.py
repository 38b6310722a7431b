"""SQL table sink: each part written in one committed transaction, keyed by token id.

The table has the key column (token id) as primary key and a ``_gp_part`` column. ``write_part``
deletes the part's previous rows (and any row of the same tokens left by an earlier, differently
chunked attempt), inserts the new rows in batches and commits: once it returns the part is durable,
and writing it again replaces it. ``finalize`` removes rows of parts the run did not list and
hashes the remaining rows in key order. Rows whose ``_gp_part`` is NULL were not written by the
sink and are never touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Column, Engine, MetaData, Table, Text, create_engine, event, inspect, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import SINK_TABLE_UNUSABLE, ConfigError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.engine.plugin_api import ArtifactResult, PartResult, Row, Sink
from governance_pipeline.engine.confinement import pinned_path
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.plugins._sql import SqlUrl
from governance_pipeline.plugins.sinks import _durable as durable
from governance_pipeline.plugins.sinks._common import (
    SinkError,
    batched,
    check_part_key,
    key_mismatch,
    parse_options,
    unfit_row,
)
from governance_pipeline.plugins.sinks._sql_types import (
    column_type,
    fit_problem,
    json_value,
    merge_kinds,
    value_kind,
)

PART_COLUMN = "_gp_part"
INSERT_BATCH = 1_000
_KEY_BATCH = 500  # bound on bound parameters per statement, well under every driver's limit
_SQLITE_TIMEOUT_S = 30


class SqlSinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SqlUrl
    table: str = Field(min_length=1)
    create: bool = True
    key_column: str = Field(default="_gp_token_id", min_length=1)

    @model_validator(mode="after")
    def _distinct_columns(self) -> SqlSinkOptions:
        if self.key_column == PART_COLUMN:
            raise ValueError(f"key_column cannot be {PART_COLUMN!r}, the sink's part column")
        return self


def _sink_url(raw: str, base_dir: Path) -> URL:
    url = normalize_url(raw)
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:") and not Path(database).is_absolute():
        url = url.set(database=str(Path(base_dir) / database))
    return url


def _without_password(url: URL) -> str:
    return URL.create(url.drivername, username=url.username, host=url.host, port=url.port,
                      database=url.database, query=url.query).render_as_string(hide_password=False)


class SqlSink(Sink):
    name: ClassVar[str] = "sql"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path, sink_name: str) -> None:
        super().__init__(options, base_dir=base_dir, sink_name=sink_name)
        self.config = parse_options(SqlSinkOptions, options, sink_name=sink_name, plugin=self.name)
        self.url = _sink_url(self.config.url, base_dir)
        self.key = self.config.key_column
        self.uri = f"{_without_password(self.url)}#{self.config.table}"
        self._sqlite = self.url.get_backend_name() == "sqlite"
        # A SQLite file target is re-checked before connecting (engine.confinement).
        self.path_guard: Callable[[Path], None] | None = (
            pinned_path(f"sinks.{sink_name}.options.url", Path(self.url.database))
            if self._sqlite and self.url.database and self.url.database != ":memory:"
            and not self.url.database.startswith("file:") else None)
        self._engine: Engine | None = None
        self._table: Table | None = None
        self._columns: dict[str, Column[Any]] = {}
        self._required: list[str] = []
        # Create mode before the table exists: the columns and kinds the accepted rows call for.
        self._pending: dict[str, str | None] | None = None

    def describe(self) -> dict[str, Any]:
        options = dict(self.options)
        options["url"] = make_url(self.config.url).render_as_string(hide_password=True)
        return {"plugin": self.name, "version": self.version, "options": options}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def discard_parts(self) -> None:
        """Nothing to forget: the table's columns are its own, and a fresh run's parts replace
        stale rows by key and part, while finalize removes rows of parts it was not given."""

    # --- connection and table --------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._db("connect"):
                self._engine = self._make_engine()
        return self._engine

    def _make_engine(self) -> Engine:
        if not self._sqlite:
            return create_engine(self.url, pool_size=1, max_overflow=1, pool_pre_ping=True)
        if self.url.database and self.url.database != ":memory:":
            if self.path_guard is not None:
                self.path_guard(Path(self.url.database))
            durable.ensure_dir(Path(self.url.database).parent)
        engine = create_engine(self.url, poolclass=NullPool,
                               connect_args={"timeout": _SQLITE_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _durable_commits(dbapi_conn: Any, _record: Any) -> None:
            # FULL makes a commit durable in WAL mode too (the database may be shared, e.g. with
            # the Landscape, and already be in WAL mode).
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine

    def _load_table(self) -> Table | None:
        if self._table is not None:
            return self._table
        if self._pending is not None:  # known absent; write_part creates it
            return None
        with self._db(f"reflect table {self.config.table}"):
            if not inspect(self.engine).has_table(self.config.table):
                if not self.config.create:
                    raise ConfigError(f"sink {self.sink_name!r}: table {self.config.table!r} does "
                                      f"not exist at {self.uri} and create is false",
                                      code=SINK_TABLE_UNUSABLE)
                return None
            table = Table(self.config.table, MetaData(), autoload_with=self.engine)
        self._use(table)
        return table

    def _use(self, table: Table) -> None:
        names = set(table.c.keys())
        if self.key not in names or PART_COLUMN not in names:
            raise ConfigError(f"sink {self.sink_name!r}: table {self.config.table!r} lacks the "
                              f"{self.key!r} and/or {PART_COLUMN!r} columns",
                              code=SINK_TABLE_UNUSABLE)
        if [c.name for c in table.primary_key.columns] != [self.key]:
            raise ConfigError(f"sink {self.sink_name!r}: the primary key of table "
                              f"{self.config.table!r} must be exactly {self.key!r}",
                              code=SINK_TABLE_UNUSABLE)
        self._table = table
        self._columns = {c.name: c for c in table.c if c.name not in (self.key, PART_COLUMN)}
        self._required = [c.name for c in self._columns.values()
                          if not c.nullable and c.server_default is None and c.default is None]
        self._pending = None

    def _create_table(self) -> Table:
        assert self._pending is not None
        table = Table(self.config.table, MetaData(),
                      Column(self.key, Text(), primary_key=True),
                      Column(PART_COLUMN, Text(), nullable=True, index=True),
                      *(Column(name, column_type(kind)) for name, kind in self._pending.items()))
        with self._db(f"create table {self.config.table}"), self.engine.begin() as conn:
            table.create(conn, checkfirst=True)
        self._table, self._pending = None, None  # reflect what the database now holds
        created = self._load_table()
        assert created is not None
        return created

    # --- rows -------------------------------------------------------------------------------------
    def reject_reason(self, row: Row) -> str | None:
        reserved = [k for k in (self.key, PART_COLUMN) if k in row]
        if reserved:
            return f"field(s) {', '.join(reserved)} are reserved for the sink's own columns"
        if self._load_table() is None:
            return self._pending_problem(row)
        unknown = [str(k) for k in row if k not in self._columns]
        if unknown:
            return f"fields not in table {self.config.table}: {', '.join(unknown)}"
        missing = [c for c in self._required if row.get(c) is None]
        if missing:
            return f"NOT NULL columns missing or null: {', '.join(missing)}"
        for name, value in row.items():
            column = self._columns[name]
            if value is None:
                if not column.nullable:
                    return f"field {name}: NULL not allowed"
                continue
            problem = fit_problem(column.type, value, sqlite=self._sqlite)
            if problem:
                return f"field {name}: {problem}"
        return None

    def _pending_problem(self, row: Row) -> str | None:
        kinds: dict[str, str | None] = {}
        for name, value in row.items():
            try:
                kinds[name] = None if value is None else value_kind(value)
            except ValueError as exc:
                return f"field {name}: {exc}"
        if self._pending is None:
            self._pending = kinds
            return None
        mismatch = key_mismatch(list(self._pending), row)
        if mismatch:
            return mismatch
        merged = {}
        for name, kind in kinds.items():
            column = self._pending[name]
            merged[name] = column if kind is None else merge_kinds(column, kind)
            if merged[name] is None and column is not None:
                return f"field {name}: a {kind} value does not match the column's {column} values"
        self._pending = merged
        return None

    # --- the protocol -----------------------------------------------------------------------------
    def write_part(self, part_key: str, rows: Sequence[tuple[str, Row]]) -> PartResult:
        check_part_key(part_key)
        table = self._table_for(part_key, rows)
        if table is None:  # no table yet and nothing to put in it
            return PartResult(part_key=part_key, rows=0, size_bytes=0)
        key_col, part_col = table.c[self.key], table.c[PART_COLUMN]
        count = size = 0
        with self._db(f"write part {part_key}"), self.engine.begin() as conn:
            conn.execute(table.delete().where(part_col == part_key))
            for batch in batched(rows, INSERT_BATCH):
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for token_id, row in batch:
                    problem = self.reject_reason(row)
                    if problem:
                        raise unfit_row(self.sink_name, part_key, token_id, problem)
                    record = {**row, self.key: token_id, PART_COLUMN: part_key}
                    groups.setdefault(tuple(record), []).append(record)
                    size += _approx_size(row)
                # A token may sit in a part of an earlier attempt that was chunked differently.
                tokens = [token_id for token_id, _ in batch]
                for keys in batched(tokens, _KEY_BATCH):
                    conn.execute(table.delete().where(key_col.in_(keys)))
                for records in groups.values():
                    conn.execute(table.insert(), records)
                count += len(batch)
        return PartResult(part_key=part_key, rows=count, size_bytes=size)

    def _table_for(self, part_key: str, rows: Sequence[tuple[str, Row]]) -> Table | None:
        table = self._load_table()
        if table is not None:
            return table
        if self._pending is None:  # rows not vetted through reject_reason: vet them now
            for token_id, row in rows:
                problem = self.reject_reason(row)
                if problem:
                    raise unfit_row(self.sink_name, part_key, token_id, problem)
        return None if self._pending is None else self._create_table()

    def finalize(self, part_keys: Sequence[str]) -> ArtifactResult:
        keep = {check_part_key(key) for key in part_keys}
        table = self._load_table()
        digest, count, size = hashlib.sha256(), 0, 0
        if table is not None:
            part_col = table.c[PART_COLUMN]
            data = [c for c in table.c if c.name not in (self.key, PART_COLUMN)]
            names = [str.__str__(c.name) for c in data]  # plain str: reflected names subclass it
            with self._db(f"finalize table {self.config.table}"), self.engine.begin() as conn:
                present = conn.execute(select(part_col).distinct()
                                       .where(part_col.is_not(None))).scalars().all()
                for stale in batched(sorted(set(present) - keep), _KEY_BATCH):
                    conn.execute(table.delete().where(part_col.in_(stale)))
                query = (select(*data).where(part_col.is_not(None))
                         .order_by(table.c[self.key]).execution_options(yield_per=2_000))
                for record in conn.execute(query):
                    line = canonical_json({n: json_value(v) for n, v in zip(names, record,
                                                                            strict=True)}) + b"\n"
                    digest.update(line)
                    count += 1
                    size += len(line)
        self.close()
        return ArtifactResult(artifact_type=self.name, path_or_uri=self.uri,
                              content_hash=digest.hexdigest(), size_bytes=size, row_count=count)

    @contextmanager
    def _db(self, action: str) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, OSError) as exc:
            cause = getattr(exc, "orig", None) or exc
            raise SinkError(f"sink {self.sink_name!r} (sql): cannot {action} at {self.uri}: "
                            f"{cause}", details={"sink": self.sink_name, "uri": self.uri}) from exc


def _approx_size(row: Row) -> int:
    try:
        return len(orjson.dumps(row, default=str))
    except orjson.JSONEncodeError:
        return len(repr(row))

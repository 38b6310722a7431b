"""SQL query source: any SQLAlchemy URL; rows are streamed, never fetched all at once.

Results come through a server-side cursor where the driver has one (``stream_results``;
PostgreSQL via psycopg 3) in partitions of ``batch_size``. Row indices follow the order the
database returns rows in, so resume is exact only if that order is stable: end the query with an
``ORDER BY`` on a unique key. Resume re-runs the query and skips the rows before the checkpoint
as they stream (nothing is held). Values become JSON values as documented in docs/sources.md
(decimals → exact text, timestamps → ISO text, bytes → base64). An invalid row is quarantined
with the JSON text of the row as read, its faithful reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import (
    SOURCE_DB_UNAVAILABLE,
    SOURCE_QUERY_FAILED,
    GovernanceError,
)
from governance_pipeline.engine.plugin_api import SourceRecord
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.plugins._sql import SqlUrl
from governance_pipeline.plugins.sources._common import (
    SchemaSource,
    SourceOptions,
    check_unique_columns,
    json_row,
)


def source_url(url: str, base_dir: Path) -> URL:
    """Pin ``postgresql://`` to psycopg 3 (what we ship) and resolve a relative SQLite path."""
    parsed = normalize_url(url)
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
            and not database.startswith("file:") and not Path(database).is_absolute()):
        parsed = parsed.set(database=str(Path(base_dir) / database))
    return parsed


class SqlOptions(SourceOptions):
    url: SqlUrl
    query: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=1_000, gt=0, le=100_000)


class SqlSource(SchemaSource):
    name: ClassVar[str] = "sql"
    options_model = SqlOptions

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        # The audit trail records the options: never the password.
        doc["options"]["url"] = make_url(self.config.url).render_as_string(  # type: ignore[attr-defined]
            hide_password=True)
        return doc

    def read(self, start_index: int = 0) -> Iterator[SourceRecord]:
        cfg: SqlOptions = self.config  # type: ignore[assignment]
        url = source_url(cfg.url, self.base_dir)
        shown = url.render_as_string(hide_password=True)
        try:
            engine = create_engine(url, poolclass=NullPool)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise GovernanceError(f"sql source {shown}: cannot use this URL: {exc}",
                                  code=SOURCE_DB_UNAVAILABLE) from exc
        try:
            try:
                conn = engine.connect()
            except SQLAlchemyError as exc:
                raise GovernanceError(f"sql source {shown}: cannot connect: {_reason(exc)}",
                                      code=SOURCE_DB_UNAVAILABLE) from exc
            with conn:
                yield from self._stream(conn, cfg, shown, start_index)
        finally:
            engine.dispose()

    def _stream(self, conn: Any, cfg: SqlOptions, shown: str,
                start_index: int) -> Iterator[SourceRecord]:
        index = 0
        try:
            result = conn.execution_options(stream_results=True, yield_per=cfg.batch_size).execute(
                text(cfg.query), cfg.params)
            names = list(result.keys())
            check_unique_columns(names, f"sql source {shown}", SOURCE_QUERY_FAILED)
            for partition in result.partitions():
                if index + len(partition) <= start_index:
                    index += len(partition)
                    continue
                for values in partition:
                    if index >= start_index:
                        yield self.record(index, json_row(names, values))
                    index += 1
        except DBAPIError as exc:
            code = SOURCE_DB_UNAVAILABLE if exc.connection_invalidated else SOURCE_QUERY_FAILED
            raise GovernanceError(f"sql source {shown}: query failed after {index} rows: "
                                  f"{_reason(exc)}", code=code,
                                  details={"row_index": index}) from exc
        except SQLAlchemyError as exc:  # e.g. a bind parameter the query names but params lacks
            raise GovernanceError(f"sql source {shown}: query failed: {_reason(exc)}",
                                  code=SOURCE_QUERY_FAILED) from exc


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip().splitlines()[0]

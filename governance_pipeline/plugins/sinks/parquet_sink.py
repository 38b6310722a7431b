"""Parquet sink: each part a Parquet file; finalize streams their row groups into one file.

The schema comes from the first row the sink accepts (first writer wins, stored in the parts
directory). A column whose first values were all None has type ``null`` until a later row gives
it a type; that refinement is stored before the next part is written, and finalize casts the
earlier parts' all-null columns to it. Every column is nullable. Memory stays bounded: parts are
written and promoted in row groups of at most ``ROW_GROUP_ROWS`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from governance_pipeline.engine.plugin_api import Row
from governance_pipeline.plugins.sinks._common import SinkError, batched, key_mismatch, unfit_row
from governance_pipeline.plugins.sinks._file_sink import FileSink

ROW_GROUP_ROWS = 65_536
PART_BATCH_ROWS = 10_000
_EXACT_IN_DOUBLE = 2**53
_FAST_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string(),
               bytes: pa.binary()}
_NULL = pa.null()


class ParquetSinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)


def arrow_type(value: Any) -> pa.DataType:
    """The Arrow type a Python value is stored as; raises ValueError if it has none."""
    fast = _FAST_TYPES.get(type(value))
    if fast is not None:
        if fast is _FAST_TYPES[int] and not -(2**63) <= value < 2**63:
            raise ValueError(f"integer {value} is outside the 64-bit range")
        return fast
    try:
        return pa.scalar(value).type
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"values of type {type(value).__name__} cannot be stored: {exc}") from exc


class ParquetSink(FileSink):
    name: ClassVar[str] = "parquet"
    extension: ClassVar[str] = "parquet"
    schema_suffix: ClassVar[str] = "arrow"
    Options: ClassVar[type[BaseModel]] = ParquetSinkOptions

    def __init__(self, options: Any, *, base_dir: Path, sink_name: str) -> None:
        super().__init__(options, base_dir=base_dir, sink_name=sink_name)
        self._fields: list[str] | None = None
        self._field_set: frozenset[str] = frozenset()
        self._types: dict[str, pa.DataType] = {}
        self._stored: pa.Schema | None = None  # the schema as last persisted

    # --- schema ---------------------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema | None:
        if self._fields is None:
            data = self._read_schema_bytes()
            if data is not None:
                self._use(pa.ipc.read_schema(pa.py_buffer(data)))
        if self._fields is None:
            return None
        return pa.schema([(name, self._types[name]) for name in self._fields])

    def _forget_schema(self) -> None:
        self._fields, self._field_set, self._types, self._stored = None, frozenset(), {}, None

    def _use(self, schema: pa.Schema) -> None:
        self._fields = list(schema.names)
        self._field_set = frozenset(schema.names)
        self._types = {f.name: f.type for f in schema}
        self._stored = schema

    def _adopt(self, row: Row) -> str | None:
        types = []
        for name, value in row.items():
            try:
                types.append((name, _NULL if value is None else arrow_type(value)))
            except ValueError as exc:
                return f"field {name}: {exc}"
        data = pa.schema(types).serialize().to_pybytes()
        self._use(pa.ipc.read_schema(pa.py_buffer(self._adopt_schema_bytes(data))))
        return None

    def _problem(self, row: Row, *, refine: bool) -> str | None:
        if self._fields is None and self.schema is None:
            problem = self._adopt(row)
            if problem:
                return problem
        assert self._fields is not None
        mismatch = key_mismatch(self._fields, row, self._field_set)
        if mismatch:
            return mismatch
        for name, value in row.items():
            if value is None:
                continue
            try:
                found = arrow_type(value)
            except ValueError as exc:
                return f"field {name}: {exc}"
            column = self._types[name]
            if found == column:
                continue
            if column == _NULL and refine:
                self._types[name] = found
                continue
            if column == pa.float64() and found == pa.int64() and \
                    -_EXACT_IN_DOUBLE <= value <= _EXACT_IN_DOUBLE:
                continue
            if column == _NULL:
                return (f"field {name}: the column has no type yet and this row was not accepted "
                        "by reject_reason first")
            return f"field {name}: a {found} value does not match the column type {column}"
        return None

    def reject_reason(self, row: Row) -> str | None:
        return self._problem(row, refine=True)

    # --- parts and promotion ------------------------------------------------------------------
    def _write_part_file(self, tmp: Path, part_key: str,
                         rows: Sequence[tuple[str, Row]]) -> int:
        count = 0
        writer: pq.ParquetWriter | None = None
        try:
            for batch in batched(rows, PART_BATCH_ROWS):
                for token_id, row in batch:
                    # The first batch may still give all-null columns their type; after the
                    # writer is open the schema is fixed for this part.
                    problem = self._problem(row, refine=writer is None)
                    if problem:
                        raise unfit_row(self.sink_name, part_key, token_id, problem)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, self._schema_for_part())
                table = pa.Table.from_pylist([row for _, row in batch], schema=writer.schema)
                writer.write_table(table)
                count += table.num_rows
            if writer is None:
                writer = pq.ParquetWriter(tmp, self._schema_for_part())
        finally:
            if writer is not None:
                writer.close()
        return count

    def _schema_for_part(self) -> pa.Schema:
        """The schema in force, stored durably before any part uses it."""
        schema = self.schema
        if schema is None:
            return pa.schema([])
        if schema != self._stored:
            self._replace_schema_bytes(schema.serialize().to_pybytes())
            self._stored = schema
        return schema

    def _final_schema(self, parts: Sequence[Path]) -> pa.Schema:
        schemas = [pq.read_schema(p) for p in parts if pq.read_metadata(p).num_rows > 0]
        if not schemas:
            return self.schema or pa.schema([])
        try:
            return pa.unify_schemas(schemas)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SinkError(f"sink {self.sink_name!r}: the parts of {self.path} have "
                            f"conflicting schemas: {exc}") from exc

    def _assemble(self, tmp: Path, parts: Sequence[Path]) -> int:
        schema = self._final_schema(parts)
        rows = 0
        pending: list[pa.Table] = []
        pending_rows = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                with pq.ParquetFile(part) as source:
                    if source.metadata.num_rows == 0:
                        continue
                    for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
                        pending.append(pa.Table.from_batches([batch]).cast(schema))
                        pending_rows += batch.num_rows
                        if pending_rows >= ROW_GROUP_ROWS:
                            writer.write_table(pa.concat_tables(pending),
                                               row_group_size=ROW_GROUP_ROWS)
                            rows += pending_rows
                            pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                rows += pending_rows
        return rows

    def _count_rows(self, final: Path) -> int:
        return int(pq.read_metadata(final).num_rows)

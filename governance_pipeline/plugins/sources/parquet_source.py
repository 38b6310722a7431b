"""Parquet source: record batches from pyarrow, each row converted to JSON values.

Memory is bounded by one row group's column chunks plus one batch of Python rows, never by the
file. Resume skips whole row groups using the file's metadata, then slices the first batch.
Conversions (documented in docs/sources.md): timestamps, dates and times → ISO text; decimals →
exact decimal text; binary → base64 text; durations → ISO 8601 ``PT…S``; lists and structs →
arrays and objects. A Parquet row has no bytes of its own, so an invalid row's quarantined raw
payload is the JSON text of the row as read (NaN written as ``NaN``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from governance_pipeline.engine.plugin_api import SourceRecord
from governance_pipeline.plugins.sources._common import (
    SchemaSource,
    SourceOptions,
    SourceReadError,
    check_unique_columns,
    file_io_error,
    resolve_path,
    to_json_value,
)


class ParquetOptions(SourceOptions):
    path: str = Field(min_length=1)
    batch_size: int = Field(default=10_000, gt=0, le=1_000_000)


def _is_plain(kind: pa.DataType) -> bool:
    """Arrow types whose Python values already are JSON values."""
    if pa.types.is_dictionary(kind):
        return _is_plain(kind.value_type)
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_null(kind))


def _column_values(column: pa.Array) -> list[Any]:
    values = column.to_pylist()
    if _is_plain(column.type):
        return values
    return [to_json_value(v) for v in values]


class ParquetSource(SchemaSource):
    name: ClassVar[str] = "parquet"
    options_model = ParquetOptions

    def read(self, start_index: int = 0) -> Iterator[SourceRecord]:
        cfg: ParquetOptions = self.config  # type: ignore[assignment]
        path = resolve_path(self.base_dir, cfg.path)
        where = f"parquet source {path}"
        try:
            # buffer_size > 0 streams each column chunk instead of reading it whole.
            handle = pq.ParquetFile(str(path), buffer_size=1 << 20)
        except pa.ArrowInvalid as exc:
            raise SourceReadError(f"{where}: not a readable Parquet file: {exc}") from None
        except OSError as exc:
            raise file_io_error(path, exc) from exc
        with handle:
            names = handle.schema_arrow.names
            check_unique_columns(names, where)
            groups, index = self._groups_from(handle, start_index)
            if not groups:
                return
            skip = start_index - index
            try:
                batches = handle.iter_batches(batch_size=cfg.batch_size, row_groups=groups)
                for batch in batches:
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        index += batch.num_rows
                        continue
                    if skip:
                        batch = batch.slice(skip)
                        index += skip
                        skip = 0
                    columns = [_column_values(batch.column(i)) for i in range(batch.num_columns)]
                    for values in zip(*columns):
                        yield self.record(index, dict(zip(names, values)))
                        index += 1
            except pa.ArrowException as exc:
                raise SourceReadError(f"{where}: cannot decode rows after row {index}: {exc}",
                                      details={"row_index": index}) from None

    @staticmethod
    def _groups_from(handle: pq.ParquetFile, start_index: int) -> tuple[list[int], int]:
        """Row groups from the one holding ``start_index`` on, and the index of its first row."""
        first_row = 0
        meta = handle.metadata
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            if first_row + rows > start_index:
                return list(range(group, meta.num_row_groups)), first_row
            first_row += rows
        return [], first_row

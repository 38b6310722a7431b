"""CSV sink: durable per-chunk parts, one header, deterministic rendering of values.

Columns are the ``fields`` option or, without it, the keys of the first row the sink accepts;
that list is stored once in the parts directory (first writer wins) so a resumed run, or another
process, uses the very same columns. A row whose keys differ is refused by ``reject_reason``.

Formula escaping (on unless ``formula_escape: false``), after OWASP's CSV-injection guidance: a
cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab (0x09) or a carriage return (0x0D)
is written with a single quote ``'`` in front, so a spreadsheet shows it as text instead of
evaluating it. It applies to every *string* value and to the header; numbers written from
numeric types (``-1.5`` as a float, int or Decimal) are numbers, not formulas, and are written
as they are — the string ``"-1.5"`` is escaped. The node state of the sink write records the
hash of the row as written (``as_written``), so ``explain`` shows the written and the original.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from governance_pipeline.contracts.errors import CanonicalizationError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.engine.plugin_api import Row
from governance_pipeline.plugins.sinks import _durable as durable
from governance_pipeline.plugins.sinks._common import key_mismatch, unfit_row
from governance_pipeline.plugins.sinks._file_sink import FileSink

_LINE_END = "\n"
#: What a spreadsheet evaluates when a cell starts with it (OWASP "CSV injection").
FORMULA_LEADERS = frozenset({"=", "+", "-", "@", "\t", "\r"})
FORMULA_ESCAPE_RULE = ("string cells (and header cells) starting with = + - @ TAB or CR are "
                       "prefixed with a single quote; numeric values are written unchanged")


def escape_formula(text: str) -> str:
    """``text`` as a spreadsheet shows it literally: prefixed with ``'`` when it starts with a
    formula character."""
    return "'" + text if text[:1] in FORMULA_LEADERS else text


class CsvSinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    fields: list[str] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    formula_escape: bool = True

    @field_validator("fields")
    @classmethod
    def _distinct_fields(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must list at least one field (or be omitted)")
            dupes = sorted({f for f in value if value.count(f) > 1})
            if dupes:
                raise ValueError(f"duplicate field(s): {', '.join(dupes)}")
        return value

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, value: str) -> str:
        if value in ('"', "\r", "\n"):
            raise ValueError("cannot be a quote or a line break")
        return value


def render(value: Any) -> str:
    """The CSV text of a value: None → empty, booleans → true/false, floats via ``repr``."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list, tuple)):
        return canonical_json(value).decode()
    raise TypeError(f"values of type {type(value).__name__} cannot be written to CSV")


def _render_problem(field: str, value: Any) -> str | None:
    try:
        render(value)
    except (TypeError, CanonicalizationError) as exc:
        return f"field {field}: {exc}"
    return None


_PLAIN = (str, int, float, bool, type(None))


class _RowWriter:
    """``csv.writer`` quotes only fields holding the delimiter, the quote or a character of the
    line terminator, so a lone carriage return would be written bare and split the record for
    every reader; a row with one is written with every field quoted (same values read back)."""

    def __init__(self, handle: Any, delimiter: str) -> None:
        self._minimal = csv.writer(handle, delimiter=delimiter, lineterminator=_LINE_END)
        self._quoted = csv.writer(handle, delimiter=delimiter, lineterminator=_LINE_END,
                                  quoting=csv.QUOTE_ALL)

    def writerow(self, values: Sequence[str]) -> None:
        writer = self._quoted if any("\r" in v for v in values) else self._minimal
        writer.writerow(values)


class CsvSink(FileSink):
    name: ClassVar[str] = "csv"
    extension: ClassVar[str] = "csv"
    Options: ClassVar[type[BaseModel]] = CsvSinkOptions

    def __init__(self, options: Any, *, base_dir: Path, sink_name: str) -> None:
        super().__init__(options, base_dir=base_dir, sink_name=sink_name)
        self._columns: list[str] | None = None
        self._column_set: frozenset[str] = frozenset()
        if self.config.fields is not None:
            self._set_columns(self.config.fields)

    @property
    def columns(self) -> list[str] | None:
        """The columns in force (loaded from the parts directory if another process chose them)."""
        if self._columns is None:
            data = self._read_schema_bytes()
            if data is not None:
                self._set_columns(orjson.loads(data)["columns"])
        return self._columns

    def _forget_schema(self) -> None:
        self._columns, self._column_set = None, frozenset()
        if self.config.fields is not None:
            self._set_columns(self.config.fields)

    def _set_columns(self, columns: Sequence[str]) -> None:
        self._columns = list(columns)
        self._column_set = frozenset(columns)

    def _columns_for(self, row: Row) -> list[str]:
        columns = self.columns
        if columns is None:
            chosen = self._adopt_schema_bytes(orjson.dumps({"columns": list(row)}))
            self._set_columns(orjson.loads(chosen)["columns"])
            columns = self._columns
            assert columns is not None
        return columns

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "formula_escape": {
            "enabled": self.config.formula_escape,
            "rule": FORMULA_ESCAPE_RULE if self.config.formula_escape else "off: cells written "
                    "as given (formula_escape: false)"}}

    def as_written(self, row: Row) -> tuple[Row, list[str]] | None:
        if not self.config.formula_escape:
            return None
        leaders = FORMULA_LEADERS
        escaped = [k for k, v in row.items() if isinstance(v, str) and v[:1] in leaders]
        if not escaped:
            return None
        return {k: escape_formula(v) if k in escaped else v for k, v in row.items()}, escaped

    def _cells(self, values: Sequence[Any]) -> list[str]:
        if not self.config.formula_escape:
            return [v if type(v) is str else render(v) for v in values]
        leaders = FORMULA_LEADERS
        # Plain strings, the common case, are checked inline: this runs for every cell.
        return [("'" + v if v and v[0] in leaders else v) if type(v) is str
                else escape_formula(render(v)) if isinstance(v, str) else render(v)
                for v in values]

    def reject_reason(self, row: Row) -> str | None:
        columns = self._columns_for(row)
        mismatch = key_mismatch(columns, row, self._column_set)
        if mismatch:
            return mismatch
        for field, value in row.items():
            if type(value) not in _PLAIN:
                problem = _render_problem(field, value)
                if problem:
                    return problem
        return None

    def _writer(self, handle: Any) -> Any:
        return _RowWriter(handle, self.config.delimiter)

    def _write_part_file(self, tmp: Path, part_key: str,
                         rows: Sequence[tuple[str, Row]]) -> int:
        count = 0
        with open(tmp, "x", encoding="utf-8", newline="") as handle:
            writer = self._writer(handle)
            for token_id, row in rows:
                columns = self._columns_for(row)
                if row.keys() != self._column_set:
                    raise unfit_row(self.sink_name, part_key, token_id,
                                    key_mismatch(columns, row, self._column_set) or "")
                try:
                    writer.writerow(self._cells(list(map(row.__getitem__, columns))))
                except (TypeError, CanonicalizationError) as exc:
                    raise unfit_row(self.sink_name, part_key, token_id, str(exc)) from exc
                count += 1
        return count

    def _header(self) -> bytes:
        columns = self.columns
        if columns is None:
            return b""
        buffer = io.StringIO(newline="")
        self._writer(buffer).writerow(self._cells(columns))
        return buffer.getvalue().encode("utf-8")

    def _assemble(self, tmp: Path, parts: Sequence[Path]) -> int:
        rows = 0
        with open(tmp, "xb") as out:
            out.write(self._header())
            for part in parts:
                durable.copy_into(part, out)
                rows += self._count_part_rows(part)
        return rows

    def _count_part_rows(self, part: Path) -> int:
        data_has_quotes = False
        newlines = 0
        with open(part, "rb") as fh:
            while block := fh.read(1 << 20):
                newlines += block.count(b"\n")
                data_has_quotes = data_has_quotes or b'"' in block
        if not data_has_quotes:
            return newlines  # unquoted CSV: one line per record
        with open(part, encoding="utf-8", newline="") as fh:
            return sum(1 for _ in csv.reader(fh, delimiter=self.config.delimiter))

    def _count_rows(self, final: Path) -> int:
        with open(final, encoding="utf-8", newline="") as fh:
            records = sum(1 for _ in csv.reader(fh, delimiter=self.config.delimiter))
        return max(records - 1, 0)  # minus the header

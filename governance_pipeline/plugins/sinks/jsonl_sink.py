"""JSON Lines sink: one JSON object per line, keys sorted, written through durable parts.

orjson would silently write NaN and infinities as ``null``; such rows are refused instead, so
what the file says is what the row held.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from governance_pipeline.engine.plugin_api import Row
from governance_pipeline.plugins.sinks import _durable as durable
from governance_pipeline.plugins.sinks._common import unfit_row
from governance_pipeline.plugins.sinks._file_sink import FileSink

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson can write
_LEAF_TYPES = (str, bool, type(None), datetime, date, time, Decimal, uuid.UUID)


class JsonlSinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"values of type {type(value).__name__} cannot be written as JSON")


def json_problem(row: Row) -> str | None:
    """Why ``row`` cannot be written faithfully as JSON, or None."""
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in row.items()]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return f"field {where}: {value!r} is not representable in JSON"
        elif isinstance(value, int) and not isinstance(value, bool):
            if not _INT_MIN <= value <= _INT_MAX:
                return f"field {where}: integer {value} is outside the 64-bit range"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"field {where}: object key {key!r} is not a string"
                stack.append((f"{where}.{key}", item))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif not isinstance(value, _LEAF_TYPES):
            return f"field {where}: values of type {type(value).__name__} cannot be written as JSON"
    return None


class JsonlSink(FileSink):
    name: ClassVar[str] = "jsonl"
    extension: ClassVar[str] = "jsonl"
    Options: ClassVar[type[BaseModel]] = JsonlSinkOptions

    def reject_reason(self, row: Row) -> str | None:
        return json_problem(row)

    def _write_part_file(self, tmp: Path, part_key: str,
                         rows: Sequence[tuple[str, Row]]) -> int:
        count = 0
        with open(tmp, "xb") as handle:
            for token_id, row in rows:
                problem = json_problem(row)
                if problem:
                    raise unfit_row(self.sink_name, part_key, token_id, problem)
                handle.write(orjson.dumps(row, default=_default, option=_OPTIONS))
                count += 1
        return count

    def _assemble(self, tmp: Path, parts: Sequence[Path]) -> int:
        with open(tmp, "xb") as out:
            for part in parts:
                durable.copy_into(part, out)
        return self._count_rows(tmp)

    def _count_rows(self, final: Path) -> int:
        lines = 0
        with open(final, "rb") as fh:
            while block := fh.read(1 << 20):
                lines += block.count(b"\n")
        return lines

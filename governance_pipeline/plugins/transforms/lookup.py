"""``lookup``: enriches rows from a CSV or JSON Lines table loaded once, keyed by one column.

Keys are compared as text, so a row's integer 42 finds the CSV key "42" (CSV holds only text):
integers by their decimal digits, booleans as ``true``/``false``, strings as they are. The file
is read in one pass that also hashes it; ``describe()`` records that SHA-256 and the row count so
the audit trail names the exact table a run enriched from.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from governance_pipeline.contracts.enums import Determinism
from governance_pipeline.contracts.errors import LOOKUP_TABLE_INVALID, ConfigError
from governance_pipeline.engine.plugin_api import Row, Transform, TransformContext, TransformResult
from governance_pipeline.plugins.transforms._options import (
    StrictOptions, fail_option, parse_options)


class LookupTableError(ConfigError):
    default_code = LOOKUP_TABLE_INVALID


class LookupOptions(StrictOptions):
    path: str = Field(min_length=1)
    key: str = Field(min_length=1)
    lookup_key: str | None = Field(default=None, min_length=1)
    fields: list[str] | dict[str, str] = Field(min_length=1)
    on_missing: Literal["fail", "null", "drop"] = "fail"
    max_rows: int = Field(default=1_000_000, gt=0)

    @field_validator("fields")
    @classmethod
    def _names(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        names = list(value.values()) if isinstance(value, dict) else value
        if any(not n.strip() for n in [*value, *names]):
            raise ValueError("field names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("two columns copied to the same field")
        return value


def table_key(value: Any) -> str | None:
    """The text form a key is compared in; None for a value that cannot be a key."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    return None


class Lookup(Transform):
    name: ClassVar[str] = "lookup"
    version: ClassVar[str] = "1"
    determinism: ClassVar[Determinism] = Determinism.IO_READ

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = cfg = parse_options(LookupOptions, options, self.name)
        self.path = (base_dir / cfg.path).resolve()
        suffix = self.path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson"):
            raise fail_option(self.name, ("path",), f"{cfg.path!r} is neither .csv nor .jsonl")
        if not self.path.is_file():
            raise fail_option(self.name, ("path",), f"no such file: {self.path}")
        self.format = "csv" if suffix == ".csv" else "jsonl"
        self.lookup_key = cfg.lookup_key or cfg.key
        copied = cfg.fields if isinstance(cfg.fields, dict) else {c: c for c in cfg.fields}
        self.columns = tuple(copied)
        self.out_names = tuple(copied.values())
        self._table: dict[str, tuple[Any, ...]] | None = None
        self.table_sha256: str | None = None

    # --- loading --------------------------------------------------------------------------------
    def _fail(self, line: int | None, message: str) -> LookupTableError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return LookupTableError(f"lookup: {where}: {message}",
                                details={"path": str(self.path), "line": line})

    def _lines(self, digest: Any) -> Iterator[tuple[int, str]]:
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise self._fail(number, f"not UTF-8 ({exc.reason})") from None
                yield number, text.removeprefix("\ufeff") if number == 1 else text

    def _records(self, digest: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
        lines = self._lines(digest)
        if self.format == "jsonl":
            for number, text in lines:
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise self._fail(number, f"invalid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise self._fail(number, "a line must hold a JSON object")
                yield number, record
            return
        position = {"line": 0}

        def text_only() -> Iterator[str]:
            for number, text in lines:
                position["line"] = number
                yield text
        reader = csv.reader(text_only(), strict=True)
        try:
            header = next(reader)
            absent = [c for c in (self.lookup_key, *self.columns) if c not in header]
            if absent:
                raise self._fail(1, f"no column {', '.join(map(repr, absent))} in the header")
            for values in reader:
                if not values:
                    continue
                if len(values) != len(header):
                    raise self._fail(position["line"], f"{len(values)} values for "
                                     f"{len(header)} columns")
                yield position["line"], dict(zip(header, values))
        except StopIteration:
            raise self._fail(None, "the file is empty (a CSV lookup needs a header)") from None
        except csv.Error as exc:
            raise self._fail(position["line"], f"malformed CSV ({exc})") from None

    def load(self) -> dict[str, tuple[Any, ...]]:
        """Read the table once (later calls return it); bounded by ``max_rows``."""
        if self._table is not None:
            return self._table
        digest = hashlib.sha256()
        table: dict[str, tuple[Any, ...]] = {}
        first_line: dict[str, int] = {}
        for number, record in self._records(digest):
            if len(table) >= self.config.max_rows:
                raise self._fail(number, f"more than max_rows={self.config.max_rows:,} rows; "
                                 "raise options.max_rows or shrink the table")
            if self.lookup_key not in record:
                raise self._fail(number, f"no key column {self.lookup_key!r}")
            key = table_key(record[self.lookup_key])
            if key is None:
                raise self._fail(number, f"key {self.lookup_key!r} must be text or a number, got "
                                 f"{type(record[self.lookup_key]).__name__}")
            if key in table:
                raise self._fail(number, f"duplicate key {key!r} (first on line "
                                 f"{first_line[key]}): a lookup needs unique keys")
            first_line[key] = number
            table[key] = tuple(record.get(column) for column in self.columns)
        self._table, self.table_sha256 = table, digest.hexdigest()
        return table

    def describe(self) -> dict[str, Any]:
        table = self.load()
        return {**super().describe(), "table": {"path": str(self.path), "format": self.format,
                                                "sha256": self.table_sha256, "rows": len(table)}}

    # --- per row --------------------------------------------------------------------------------
    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        table = self.load()
        key_field = self.config.key
        if key_field not in row:
            return TransformResult.fail("missing_field", f"lookup: key field {key_field!r} "
                                        "not in the row")
        value = row[key_field]
        key = table_key(value)
        entry = table.get(key) if key is not None else None
        out = dict(row)
        if entry is None:
            on_missing = self.config.on_missing
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            reason = f"lookup: no entry for {key_field}={shown} in {self.path.name}"
            if on_missing == "fail":
                return TransformResult.fail("lookup_missing", reason)
            if on_missing == "drop":
                return TransformResult.drop(reason)
            out.update(dict.fromkeys(self.out_names))
            return TransformResult.ok(out)
        out.update(zip(self.out_names, entry))
        return TransformResult.ok(out)

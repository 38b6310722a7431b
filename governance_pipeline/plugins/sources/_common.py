"""What the built-in sources share: option parsing, the schema hook, file opening, and turning
database or Arrow values into JSON values."""

from __future__ import annotations

import base64
import codecs
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    SOURCE_OPTIONS_INVALID,
    SOURCE_UNREADABLE,
    ConfigError,
    ErrorCode,
    GovernanceError,
    OperationalError,
)
from governance_pipeline.engine.plugin_api import Row, RowError, Source, SourceRecord
from governance_pipeline.engine.row_schema import RowSchema, RowValidator, compile_validator

M = TypeVar("M", bound=BaseModel)

DEFAULT_MAX_RECORD_BYTES = 1 << 20
READ_BUFFER_BYTES = 1 << 16
_UTF8_BOM = codecs.BOM_UTF8


class SourceOptionsError(ConfigError):
    default_code = SOURCE_OPTIONS_INVALID


class SourceReadError(GovernanceError):
    """The input cannot be read as a whole (not a single bad record: those are quarantined)."""

    default_code = SOURCE_UNREADABLE


class SourceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextFileOptions(SourceOptions):
    path: str = Field(min_length=1)
    encoding: str = "utf-8"
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, gt=0)

    @field_validator("encoding")
    @classmethod
    def _line_based_encoding(cls, value: str) -> str:
        try:
            name = codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        # Records are split on the byte b"\n" and on ASCII quotes and delimiters, so the encoding
        # must write ASCII as ASCII (UTF-8, Latin-1, cp1252 ... yes; UTF-16/32 no).
        probe = ' ,;|\t"\'\n\r{}[]:azAZ09'
        try:
            if probe.encode(name) != probe.encode("ascii"):
                raise ValueError(f"encoding {value!r} is not ASCII-compatible; re-encode the "
                                 "file as UTF-8")
        except UnicodeEncodeError:
            raise ValueError(f"encoding {value!r} cannot encode ASCII") from None
        return "utf-8" if name == "utf-8-sig" else name  # a leading BOM is skipped for UTF-8 anyway


def _option_path(loc: Iterable[Any]) -> str:
    path = "options"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _problem(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        message = "field required"
    elif error["type"] == "extra_forbidden":
        message = "unknown option"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{_option_path(error['loc'])}: {message}"


def parse_options(model: type[M], options: Any, plugin: str) -> M:
    """Validate ``options``; the error names every offending path (``options.path: field required``)."""
    if not isinstance(options, Mapping):
        raise SourceOptionsError(f"source {plugin}: options must be a mapping, got "
                                 f"{type(options).__name__}")
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
        raise SourceOptionsError(f"source {plugin}: " + "; ".join(problems),
                                 details={"plugin": plugin, "problems": problems}) from None


def coerce_schema(schema: RowSchema | Mapping[str, Any] | None) -> RowSchema | None:
    if schema is None or isinstance(schema, RowSchema):
        return schema
    try:
        return RowSchema.model_validate(schema)
    except ValidationError as exc:
        problems = [f"source.schema.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors()]
        raise SourceOptionsError("; ".join(problems), details={"problems": problems}) from None


def resolve_path(base_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base_dir) / candidate


def file_io_error(path: Path, exc: OSError) -> OperationalError:
    return OperationalError(f"cannot open source file {path}: {exc.strerror or exc}",
                            code=FILE_IO_FAILED, details={"path": str(path)})


def open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=READ_BUFFER_BYTES)
    except OSError as exc:
        raise file_io_error(path, exc) from exc


def skip_utf8_bom(handle: BinaryIO, encoding: str) -> None:
    if encoding == "utf-8" and handle.peek(3)[:3] == _UTF8_BOM:  # type: ignore[attr-defined]
        handle.read(3)


class SchemaSource(Source):
    """A source whose records are checked against the pipeline's declared row schema."""

    options_model: ClassVar[type[SourceOptions]]

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path,
                 schema: RowSchema | Mapping[str, Any] | None = None) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(self.options_model, options, self.name)
        self.schema = coerce_schema(schema)
        self.validate: RowValidator = compile_validator(self.schema)

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        if self.schema is not None:
            doc["schema"] = self.schema.model_dump(mode="json")
        return doc

    def record(self, index: int, values: Mapping[str, Any],
               raw: Callable[[], bytes] | None = None) -> SourceRecord:
        """Validate ``values``; an invalid record keeps ``raw()`` (or a faithful reconstruction).

        ``raw`` is a callable so that valid records, the common case, never pay for their bytes.
        """
        checked = self.validate(values)
        if type(checked) is dict:
            return SourceRecord(index, checked)
        assert isinstance(checked, RowError)
        return SourceRecord(index, None, raw() if raw is not None else reconstruct_raw(values),
                            checked)


def invalid(index: int, raw: bytes, error: RowError) -> SourceRecord:
    return SourceRecord(index, None, raw, error)


def reconstruct_raw(values: Any) -> bytes:
    """JSON text of a record that has no bytes of its own (Parquet, SQL) — NaN kept as ``NaN``."""
    text = json.dumps(values, ensure_ascii=False, allow_nan=True, default=repr)
    return text.encode("utf-8", errors="backslashreplace")


# --- database / Arrow values → JSON values ---------------------------------------------------------
def iso_duration(value: timedelta) -> str:
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    seconds, micro = divmod(abs(micros), 1_000_000)
    return f"{sign}PT{seconds}.{micro:06d}S" if micro else f"{sign}PT{seconds}S"


def _decimal(value: Decimal) -> str | float:
    # Text keeps every digit (a float would round); declare the field "float" to get a number.
    # NaN and infinities become floats so validation refuses them as not_finite.
    if value.is_finite():
        return format(value, "f")
    return math.nan if value.is_nan() else (math.inf if value > 0 else -math.inf)


def _text_of_bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


_PLAIN = frozenset({str, int, float, bool, type(None)})
_CONVERT: dict[type, Any] = {
    Decimal: _decimal,
    # Called as methods, not as datetime.isoformat(v): subclasses such as pandas.Timestamp
    # override isoformat to keep their nanoseconds.
    datetime: lambda v: v.isoformat(),
    date: lambda v: v.isoformat(),
    time: lambda v: v.isoformat(),
    timedelta: iso_duration,
    bytes: _text_of_bytes,
    bytearray: _text_of_bytes,
    memoryview: _text_of_bytes,
    uuid.UUID: str,
}


def to_json_value(value: Any) -> Any:
    """A database or Arrow value as a JSON value; see docs/sources.md for the mapping."""
    t = type(value)
    if t in _PLAIN:
        return value
    convert = _CONVERT.get(t)
    if convert is not None:
        return convert(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    for base, convert in _CONVERT.items():  # subclasses (e.g. pandas.Timestamp is a datetime)
        if isinstance(value, base):
            return convert(value)
    return str(value)  # e.g. IP addresses, ranges, enums: their text form


def json_row(names: list[str], values: Iterable[Any]) -> Row:
    return {name: to_json_value(v) for name, v in zip(names, values, strict=True)}


def check_unique_columns(names: list[str], where: str,
                         code: ErrorCode = SOURCE_UNREADABLE) -> None:
    seen: set[str] = set()
    duplicates = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if duplicates:
        raise SourceReadError(f"{where}: duplicate column names {sorted(set(duplicates))}; "
                              "every column needs its own name", code=code,
                              details={"duplicates": sorted(set(duplicates))})

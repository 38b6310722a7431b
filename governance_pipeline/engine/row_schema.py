"""The declared row schema: validation and meaning-preserving coercion of source records.

A source hands every record it reads to a validator compiled once from the pipeline's
``source.schema``. The validator either returns the row (values coerced only where the meaning
cannot change: ``"42"`` → ``42`` for an int field, never ``None`` → ``0``) or a ``RowError``
whose stable code says why the record is quarantined. Rows stay JSON values (dates as canonical
ISO text) so the engine can hash them canonically; anything that cannot be hashed (NaN,
infinities, integers beyond ±2^53, invalid Unicode) is refused here rather than crashing later.
The rules are documented, with examples, in ``docs/sources.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from governance_pipeline.engine.plugin_api import Row, RowError

SAFE_INT = 2**53
#: Deepest nesting of lists and objects inside one field value (the field itself is level 1).
MAX_NESTING_DEPTH = 64
"""Integers must stay strictly within ±2^53: RFC 8785 hashes numbers as IEEE doubles."""
DEFAULT_MAX_FIELD_BYTES = 65_536
PREVIEW_CHARS = 80

FieldType = Literal["str", "int", "float", "bool", "date", "datetime", "any"]
RowValidator = Callable[[Mapping[str, Any]], "Row | RowError"]


class RowErrorCode(StrEnum):
    """Why a record is quarantined. Stable: quarantine sinks and audits group by these values."""

    BAD_ENCODING = "bad_encoding"
    MALFORMED = "malformed"
    MISSING_FIELD = "missing_field"
    EXTRA_FIELD = "extra_field"
    MISSING_VALUE = "missing_value"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    OVERSIZED_FIELD = "oversized_field"
    TOO_MANY_FIELDS = "too_many_fields"
    TOO_DEEP = "too_deep"


def row_error(code: RowErrorCode, reason: str) -> RowError:
    # The plain string value, not the enum member: database drivers may adapt enums by name.
    return RowError(code.value, reason)


def preview(value: Any) -> str:
    """``repr`` of a value cut to 80 characters, for reasons that must name the value."""
    text = repr(value)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FieldType = "str"
    required: bool = True
    nullable: bool = False
    max_length: int | None = Field(default=None, ge=0)  # characters, str fields only

    @model_validator(mode="after")
    def _max_length_is_for_text(self) -> FieldSpec:
        if self.max_length is not None and self.type != "str":
            raise ValueError(f"max_length applies to str fields only, not {self.type}")
        return self


class RowSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, FieldSpec] = Field(min_length=1)
    extra_fields: Literal["reject", "drop"] = "reject"
    max_field_bytes: int = Field(default=DEFAULT_MAX_FIELD_BYTES, gt=0)

    @model_validator(mode="after")
    def _names_are_usable(self) -> RowSchema:
        for name in self.fields:
            if not name:
                raise ValueError("field names must not be empty")
        return self

    def validator(self) -> RowValidator:
        """The compiled validator, built on first use and kept on the instance.

        It is kept outside pydantic's fields and private attributes so that it takes no part in
        equality or serialisation, and it is checked against the settings it was compiled from
        because ``model_copy(update=...)`` copies it along with the instance dictionary.
        """
        made_from = (self.extra_fields, self.max_field_bytes, tuple(self.fields.items()))
        cached = self.__dict__.get(_CACHE_KEY)
        if cached is not None and _same_settings(cached[0], made_from):
            return cached[1]
        validator = _SchemaValidator(self)
        self.__dict__[_CACHE_KEY] = (made_from, validator)
        return validator


_CACHE_KEY = "_gp_compiled_validator"


def _same_settings(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return (a[0] == b[0] and a[1] == b[1] and len(a[2]) == len(b[2])
            and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a[2], b[2])))


def compile_validator(schema: RowSchema | None) -> RowValidator:
    """The validator for ``schema``; with no schema, rows pass as read once they are hashable."""
    return _validate_schemaless if schema is None else schema.validator()


def validate_row(schema: RowSchema | None, values: Mapping[str, Any]) -> Row | RowError:
    return compile_validator(schema)(values)


# --- refusals -------------------------------------------------------------------------------------
class _Refused(Exception):
    """Raised by a converter; turned into a ``RowError`` naming the field by the validator."""

    def __init__(self, code: RowErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _text_problem(text: str, max_bytes: int) -> _Refused | None:
    """Is this string storable: valid Unicode (no lone surrogates) and at most ``max_bytes``?"""
    if len(text) > max_bytes:  # every character is at least one UTF-8 byte
        return _Refused(RowErrorCode.OVERSIZED_FIELD, f"more than {max_bytes} bytes")
    if text.isascii():
        return None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return _Refused(RowErrorCode.BAD_ENCODING, "not valid Unicode text")
    if size > max_bytes:
        return _Refused(RowErrorCode.OVERSIZED_FIELD, f"{size} bytes, more than {max_bytes}")
    return None


def _int_problem(value: int) -> _Refused | None:
    if -SAFE_INT < value < SAFE_INT:
        return None
    return _Refused(RowErrorCode.OUT_OF_RANGE, "integer outside ±2^53 cannot be hashed exactly")


def _json_problem(value: Any, max_bytes: int) -> _Refused | None:
    """First reason ``value`` is not a hashable JSON value, or None (iterative: no recursion limit).

    Nesting is capped at ``MAX_NESTING_DEPTH``: deeper values hash, but the sinks' serialisers
    (orjson stops at 254 levels) and every recursive reader downstream would fail the whole run.
    """
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if depth > MAX_NESTING_DEPTH and t in (dict, list):
            return _Refused(RowErrorCode.TOO_DEEP, f"nested deeper than {MAX_NESTING_DEPTH} levels")
        if t is str:
            if len(v) > max_bytes or not v.isascii():
                problem = _text_problem(v, max_bytes)
                if problem is not None:
                    return problem
        elif t is int:
            if not -SAFE_INT < v < SAFE_INT:
                return _int_problem(v)
        elif t is float:
            if not math.isfinite(v):
                return _Refused(RowErrorCode.NOT_FINITE, "NaN and infinities cannot be hashed")
        elif v is None or t is bool:
            continue
        elif t is dict:
            for key in v:
                if type(key) is not str:
                    return _Refused(RowErrorCode.WRONG_TYPE, f"object key {key!r} is not text")
                stack.append((key, depth))
            stack.extend((item, depth + 1) for item in v.values())
        elif t is list:
            stack.extend((item, depth + 1) for item in v)
        else:
            return _Refused(RowErrorCode.WRONG_TYPE, f"{t.__name__} is not a JSON value")
    return None


# --- converters: one per declared type; input is never None or "" (handled by the validator) ----
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.([0-9]{1,9}))?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?")
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}
_WHITESPACE = " \t\r\n\f\v"


def _non_finite_text(text: str) -> bool:
    return text.lstrip("+-").lower() in _NON_FINITE_WORDS


def _wrong(expected: str, value: Any) -> _Refused:
    return _Refused(RowErrorCode.WRONG_TYPE, f"expected {expected}, got {type(value).__name__}")


def _text_converter(max_length: int | None) -> Callable[[Any], str]:
    limit = math.inf if max_length is None else max_length

    def convert(value: Any) -> str:
        if type(value) is not str:
            raise _wrong("text", value)
        if len(value) > limit:
            raise _Refused(RowErrorCode.TOO_LONG,
                           f"{len(value)} characters, more than max_length {max_length}")
        return value
    return convert


def _to_int(value: Any) -> int:
    t = type(value)
    if t is str:
        if len(value) < 16 and value.isdigit() and value.isascii():  # common case, surely in range
            return int(value)
        if _INT_RE.fullmatch(value):
            try:
                number = int(value)
            except ValueError:  # beyond the interpreter's digit limit: far outside ±2^53 anyway
                raise _int_problem(SAFE_INT) from None
            problem = _int_problem(number)
            if problem is not None:
                raise problem
            return number
        if _non_finite_text(value):
            raise _Refused(RowErrorCode.NOT_FINITE, "NaN and infinities cannot be hashed")
        if _FLOAT_RE.fullmatch(value):
            raise _Refused(RowErrorCode.WRONG_TYPE, "not an integer")
        raise _Refused(RowErrorCode.WRONG_TYPE, "not a number")
    if t is int:
        problem = _int_problem(value)
        if problem is not None:
            raise problem
        return value
    if t is float:
        if not math.isfinite(value):
            raise _Refused(RowErrorCode.NOT_FINITE, "NaN and infinities cannot be hashed")
        if not value.is_integer():
            raise _Refused(RowErrorCode.WRONG_TYPE, "not an integer")
        return _to_int(int(value))
    raise _wrong("an integer", value)


def _to_float(value: Any) -> float:
    t = type(value)
    if t is str:
        if _FLOAT_RE.fullmatch(value):
            number = float(value)
            if not math.isfinite(number):
                raise _Refused(RowErrorCode.NOT_FINITE, "overflows to infinity")
            return number
        if _non_finite_text(value):
            raise _Refused(RowErrorCode.NOT_FINITE, "NaN and infinities cannot be hashed")
        raise _Refused(RowErrorCode.WRONG_TYPE, "not a number")
    if t is float:
        if not math.isfinite(value):
            raise _Refused(RowErrorCode.NOT_FINITE, "NaN and infinities cannot be hashed")
        return value
    if t is int:
        problem = _int_problem(value)
        if problem is not None:
            raise problem
        return float(value)
    raise _wrong("a number", value)


def _to_bool(value: Any) -> bool:
    t = type(value)
    if t is bool:
        return value
    if t is str:
        word = _BOOL_WORDS.get(value.lower())
        if word is None:
            raise _Refused(RowErrorCode.WRONG_TYPE, "not one of true/false/1/0")
        return word
    if t is int and value in (0, 1):
        return bool(value)
    raise _wrong("a boolean", value)


def _to_date(value: Any) -> str:
    if type(value) is date:
        return value.isoformat()
    if type(value) is not str:
        raise _wrong("an ISO date", value)
    if not _DATE_RE.fullmatch(value):
        raise _Refused(RowErrorCode.WRONG_TYPE, "not an ISO date (YYYY-MM-DD)")
    try:
        date.fromisoformat(value)  # the pattern already is the canonical form; check it is a real day
        return value
    except ValueError as exc:
        raise _Refused(RowErrorCode.WRONG_TYPE, f"not a valid date ({exc})") from None


def _to_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if type(value) is not str:
        raise _wrong("an ISO datetime", value)
    match = _DATETIME_RE.fullmatch(value)
    if match is None:
        raise _Refused(RowErrorCode.WRONG_TYPE, "not an ISO datetime (YYYY-MM-DDTHH:MM[:SS[.f]][offset])")
    fraction = match.group(1)
    if fraction is not None and fraction[6:].strip("0"):
        # datetime keeps microseconds; silently truncating nanoseconds would change the value.
        raise _Refused(RowErrorCode.WRONG_TYPE, "sub-microsecond precision would be lost")
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise _Refused(RowErrorCode.WRONG_TYPE, f"not a valid datetime ({exc})") from None


def _any_converter(max_bytes: int) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        problem = _json_problem(value, max_bytes)
        if problem is not None:
            raise problem
        return value
    return convert


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int, "float": _to_float, "bool": _to_bool,
    "date": _to_date, "datetime": _to_datetime,
}


# --- validators -------------------------------------------------------------------------------------
_ABSENT = object()


def _field_error(name: str, refused: _Refused, value: Any) -> RowError:
    return row_error(refused.code, f"field {name!r}: {refused.detail}: {preview(value)}")


class _SchemaValidator:
    """A schema compiled to a tuple of per-field steps; called once per record (hot path)."""

    __slots__ = ("_steps", "_names", "_drop_extra", "_max_bytes")

    def __init__(self, schema: RowSchema) -> None:
        max_bytes = schema.max_field_bytes
        steps = []
        for name, spec in schema.fields.items():
            if spec.type == "any":
                convert = _any_converter(max_bytes)
            elif spec.type == "str":
                convert = _text_converter(spec.max_length)
            else:
                convert = _CONVERTERS[spec.type]
            # Text and "any" keep whitespace as data; for the other types surrounding whitespace
            # is padding (" 42 " is the number 42), so it is stripped before parsing.
            strip = spec.type not in ("str", "any")
            steps.append((name, convert, spec.required, spec.nullable, strip))
        self._steps = tuple(steps)
        self._names = frozenset(schema.fields)
        self._drop_extra = schema.extra_fields == "drop"
        self._max_bytes = max_bytes

    def __call__(self, values: Mapping[str, Any]) -> Row | RowError:
        out: Row = {}
        present = 0
        max_bytes = self._max_bytes
        for name, convert, required, nullable, strip in self._steps:
            value = values.get(name, _ABSENT)
            if value is _ABSENT:
                if required:
                    return row_error(RowErrorCode.MISSING_FIELD, f"field {name!r} is missing")
                continue
            present += 1
            raw_value = value
            if type(value) is str:
                if len(value) > max_bytes or not value.isascii():
                    problem = _text_problem(value, max_bytes)
                    if problem is not None:
                        return _field_error(name, problem, value)
                if strip:
                    value = value.strip(_WHITESPACE)
                empty = not value
            else:
                empty = value is None
            if empty:
                if not nullable:
                    return row_error(RowErrorCode.MISSING_VALUE,
                                     f"field {name!r} is empty and not nullable: {preview(raw_value)}")
                out[name] = None
                continue
            try:
                out[name] = convert(value)
            except _Refused as refused:
                return _field_error(name, refused, raw_value)
        if present != len(values):
            extra = [key for key in values if key not in self._names]
            if not self._drop_extra:
                shown = ", ".join(repr(key) for key in extra[:5])
                more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
                first = extra[0]
                return row_error(RowErrorCode.EXTRA_FIELD,
                                 f"unexpected field {shown}{more} (value of {first!r}: "
                                 f"{preview(values[first])})")
        return out


def _validate_schemaless(values: Mapping[str, Any]) -> Row | RowError:
    """No declared schema: values pass unchanged but must still be hashable JSON of bounded size."""
    max_bytes = DEFAULT_MAX_FIELD_BYTES
    for name, value in values.items():
        if type(name) is not str:
            return row_error(RowErrorCode.MALFORMED, f"field name {preview(name)} is not text")
        if not name.isascii():
            problem = _text_problem(name, max_bytes)
            if problem is not None:
                return row_error(problem.code, f"field name {preview(name)}: {problem.detail}")
        if type(value) is str and len(value) <= max_bytes and value.isascii():
            continue
        problem = _json_problem(value, max_bytes)
        if problem is not None:
            return _field_error(name, problem, value)
    return values if type(values) is dict else dict(values)

"""Which Python values a SQL column can take, and which column type a value calls for.

The SQL sink refuses, through ``reject_reason``, every row the database would refuse for its data
(unknown column, NULL in a NOT NULL column, a value of the wrong type or out of range), so a write
that fails is an operational failure, never a surprise about a row.
"""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import types as sat

_INT_RANGES = ((sat.SmallInteger, 2**15), (sat.BigInteger, 2**63), (sat.Integer, 2**31))
_JSON_LEAVES = (str, int, float, bool, type(None))


def _int_bound(column_type: sat.Integer, sqlite: bool) -> int:
    if sqlite:
        return 2**63  # SQLite stores every INTEGER as a 64-bit value
    for kind, bound in _INT_RANGES:
        if isinstance(column_type, kind):
            return bound
    return 2**63


def _json_ok(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not isinstance(item, _JSON_LEAVES):
            return False
    return True


def fit_problem(column_type: Any, value: Any, *, sqlite: bool) -> str | None:
    """Why a non-None ``value`` cannot be stored in a column of ``column_type``, or None."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(column_type, sat.Boolean):
        ok = isinstance(value, bool)
    elif isinstance(column_type, sat.Integer):
        if is_int:
            bound = _int_bound(column_type, sqlite)
            return None if -bound <= value < bound else f"integer {value} is out of range"
        ok = False
    elif isinstance(column_type, (sat.Float, sat.Numeric)):
        ok = is_int or isinstance(value, (float, Decimal))
    elif isinstance(column_type, sat.Enum) and column_type.enums:
        return None if value in column_type.enums else \
            f"{value!r} is not one of {', '.join(column_type.enums)}"
    elif isinstance(column_type, sat.String):
        if not isinstance(value, str):
            ok = False
        elif column_type.length and not sqlite and len(value) > column_type.length:
            return f"text of {len(value)} characters exceeds the column length {column_type.length}"
        else:
            ok = True
    elif isinstance(column_type, sat.DateTime):
        ok = isinstance(value, datetime)
    elif isinstance(column_type, sat.Date):
        ok = isinstance(value, date) and not isinstance(value, datetime)
    elif isinstance(column_type, sat.Time):
        ok = isinstance(value, time)
    elif isinstance(column_type, sat.JSON):
        ok = _json_ok(value)
    elif isinstance(column_type, sat.LargeBinary):
        ok = isinstance(value, (bytes, bytearray))
    elif isinstance(column_type, sat.Uuid):
        ok = isinstance(value, (uuid.UUID, str))
    else:
        return None  # a type we do not model: the database decides
    return None if ok else f"a {type(value).__name__} value cannot be stored in a {column_type} column"


def value_kind(value: Any) -> str:
    """The kind of column a value calls for when the sink creates the table."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"integer {value} is outside the 64-bit range")
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, datetime):
        return "datetime_tz" if value.tzinfo is not None else "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    if isinstance(value, (dict, list, tuple)):
        if not _json_ok(value):
            raise ValueError("nested value is not valid JSON (non-string key, NaN, or other type)")
        return "json"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    raise ValueError(f"values of type {type(value).__name__} cannot be stored")


def merge_kinds(column: str | None, found: str) -> str | None:
    """The column kind after seeing ``found``; None when the two cannot share a column."""
    if column is None or column == found:
        return found
    if {column, found} == {"int", "float"}:
        return "float"
    if {column, found} == {"int", "decimal"}:
        return "decimal"
    return None


def column_type(kind: str | None) -> sat.TypeEngine[Any]:
    """The SQLAlchemy type created for a kind; a column only ever None is created as text."""
    return {
        "bool": sat.Boolean(), "int": sat.BigInteger(), "float": sat.Double(),
        "str": sat.Text(), "decimal": sat.Numeric(), "datetime": sat.DateTime(),
        "datetime_tz": sat.DateTime(timezone=True), "date": sat.Date(), "time": sat.Time(),
        "json": sat.JSON(), "bytes": sat.LargeBinary(),
    }.get(kind or "str", sat.Text())


def json_value(value: Any) -> Any:
    """A value read back from the table, as a JSON value for the content hash."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value

"""Values between user code and the audit trail: rows ↔ DataFrames, numpy/pandas → JSON values.

Everything a user function returns becomes plain JSON values before the engine hashes it:
numpy scalars become ``int``/``float``/``bool``/``str``, timestamps and dates ISO strings,
``pd.NA``/``NaT``/``None`` null; NaN and infinities are refused *for the row that holds them*
(``Unrepresentable``), never coerced. Into a DataFrame, each column gets the dtype that gives its
values back exactly: ``int64``/``float64``/``bool`` without nulls, the nullable ``Int64``/
``Float64``/``boolean`` with nulls (so a null stays null, never a NaN), ``object`` for mixed
columns (1 and 1.0 stay distinct) and for text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import itemgetter
from datetime import date, datetime, time
from typing import Any

import numpy as np
import pandas as pd

from governance_pipeline.engine.plugin_api import Row


class Unrepresentable(ValueError):
    """A value a row cannot carry into the audit trail; ``where`` names its field."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


_NATIVE = frozenset({str, bool, type(None)})  # ints are range-checked, floats NaN-checked


_SAFE_INT = 2**53  # RFC 8785 / I-JSON: integers must be exact as doubles


def _int(value: int, where: str) -> int:
    if -_SAFE_INT < value < _SAFE_INT:
        return value
    raise Unrepresentable(where, f"{value} is outside ±2**53, where JSON integers are exact: "
                                 "return it as a str")


def plain(value: Any, where: str) -> Any:
    """``value`` as a JSON value, or ``Unrepresentable``."""
    t = type(value)
    if t is int:
        return _int(value, where)
    if t in _NATIVE:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise Unrepresentable(where, f"{value} is not a JSON number (NaN and infinity are refused)")
    if t is dict or isinstance(value, Mapping):
        return plain_row(value, where)
    if t is list or t is tuple:
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return _int(int(value), where)
        if isinstance(value, np.floating):
            return plain(float(value), where)
        if isinstance(value, np.str_):
            return str(value)
        if isinstance(value, np.datetime64):
            return plain(pd.Timestamp(value), where)
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), where)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # IntEnum and other int subclasses: their value
        return _int(int(value), where)
    if isinstance(value, float):
        return plain(float(value), where)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (datetime, date, time)):  # pd.Timestamp is a datetime
        return value.isoformat()
    raise Unrepresentable(where, f"a {type(value).__name__} is not a JSON value: convert it "
                                 "to str, int, float, bool, None, a list or a dict")


def plain_row(row: Mapping[Any, Any], where: str = "") -> Row:
    out: Row = {}
    for key, value in row.items():
        if type(key) is not str:
            raise Unrepresentable(f"{where}{key!r}", "field names must be strings")
        field = f"{where}.{key}" if where else key
        out[key] = plain(value, field)
    return out


# --- rows → DataFrame ----------------------------------------------------------------------------
def _column(values: list[Any]) -> Any:
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if kinds == {int}:
        if nulls:
            return pd.array(values, dtype="Int64")
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return pd.Series(values, dtype=object).to_numpy()
    if kinds == {float}:
        return pd.array(values, dtype="Float64") if nulls else np.array(values, dtype=np.float64)
    if kinds == {bool}:
        return pd.array(values, dtype="boolean") if nulls else np.array(values, dtype=bool)
    # Text (and anything else) as Python objects: exact, and no conversion either way.
    column = np.empty(len(values), dtype=object)
    if kinds & {list, tuple, dict}:
        for i, v in enumerate(values):  # element-wise: a list value must stay one cell
            column[i] = v
    else:
        column[:] = values
    return column


def _same_fields(rows: Sequence[Row], names: tuple[str, ...]) -> list[tuple[Any, ...]] | None:
    """Each row's values in ``names`` order, or None unless every row has exactly those fields."""
    if not names or set(map(len, rows)) != {len(names)}:
        return None
    getter = itemgetter(*names)
    try:
        cells = list(map(getter, rows))
    except KeyError:
        return None
    return cells if len(names) > 1 else [(c,) for c in cells]


def frame_from_rows(rows: Sequence[Row], index: Sequence[Any] | None = None) -> pd.DataFrame:
    # Token ids as an object index: hashed lookups (isin, get_indexer) stay cheap.
    idx = pd.Index(np.array(index, dtype=object), dtype=object, name="token_id") \
        if index is not None else pd.RangeIndex(len(rows))
    names = tuple(rows[0]) if rows else ()
    cells = _same_fields(rows, names)
    if cells is not None:  # a source's rows share their fields: gathered at C speed
        values = dict(zip(names, map(list, zip(*cells))))
    else:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        values = {name: [row.get(name) for row in rows] for name in seen}
    data = {}
    for name, column in values.items():
        array = _column(column)
        # An object ndarray would be re-inferred as pandas' text dtype: a Series keeps it.
        data[name] = pd.Series(array, index=idx, dtype=object, copy=False) \
            if isinstance(array, np.ndarray) and array.dtype == object else array
    return pd.DataFrame(data, index=idx)


# --- DataFrame → rows ----------------------------------------------------------------------------
def _values(series: pd.Series, name: str, bad: dict[int, str]) -> list[Any]:
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
        if kind == "b":
            return series.tolist()
        if kind in "iu":
            array = series.to_numpy()
            for i in np.flatnonzero((array <= -_SAFE_INT) | (array >= _SAFE_INT)).tolist():
                bad.setdefault(i, f"{name}: {array[i]} is outside ±2**53, where JSON integers "
                                  "are exact: return it as a str")
            return array.tolist()  # Python ints, no per-value work
        if kind == "f":
            array = series.to_numpy()
            for i in np.flatnonzero(~np.isfinite(array)).tolist():
                bad.setdefault(i, f"{name}: {array[i]} is not a JSON number (NaN and infinity "
                                  "are refused)")
            return array.tolist()
        values = series.tolist()
    else:  # extension dtypes (nullable, text, categorical…): their missing marker is null
        values = series.to_numpy(dtype=object, na_value=None).tolist()
    if set(map(type, values)) <= _NATIVE:  # the common case, checked at C speed
        return values
    out = []
    for i, v in enumerate(values):
        try:
            out.append(plain(v, name))
        except Unrepresentable as exc:
            bad.setdefault(i, str(exc))
            out.append(None)
    return out


def rows_from_frame(frame: pd.DataFrame) -> tuple[list[Row], dict[int, str]]:
    """The frame's rows as plain dicts (in frame order) and, by position, why a row is refused."""
    columns = list(frame.columns)
    if any(type(c) is not str for c in columns):
        odd = next(c for c in columns if type(c) is not str)
        raise Unrepresentable(repr(odd), "column names must be strings")
    if len(set(columns)) != len(columns):
        raise Unrepresentable("columns", "duplicate column names")
    bad: dict[int, str] = {}
    data = [_values(frame[c], c, bad) for c in columns]
    rows = [dict(zip(columns, cells)) for cells in zip(*data)] if columns \
        else [{} for _ in range(len(frame))]
    return rows, bad

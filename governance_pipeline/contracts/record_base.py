"""The base of every audit record: table binding, row conversion and Tier-1 reads.

``from_row`` is the Tier-1 read: every value read back from our own database is checked against
the field's declared type — an unknown enum value, a NULL where none may be, or a 2 in a 0/1
column raises ``AuditIntegrityError`` instead of becoming a confident wrong answer.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Any, ClassVar, get_type_hints

from governance_pipeline.contracts.errors import AuditIntegrityError

_Conv = typing.Callable[[str, str, Any], Any]


def _fail(cls_name: str, field: str, value: Any, why: str) -> typing.NoReturn:
    raise AuditIntegrityError(f"{cls_name}.{field}: {why} (got {value!r})",
                              details={"record": cls_name, "field": field})


def _converter(tp: Any) -> tuple[bool, _Conv]:
    """(nullable, convert) for one declared field type."""
    nullable = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        (tp,) = args
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        enum_cls = tp

        def conv_enum(cls_name: str, name: str, v: Any) -> Any:
            try:
                return enum_cls(v)
            except ValueError:
                _fail(cls_name, name, v, f"not a valid {enum_cls.__name__}")
        return nullable, conv_enum
    if tp is bool:
        def conv_flag(cls_name: str, name: str, v: Any) -> bool:
            if type(v) is bool:
                return v
            if type(v) is not int or v not in (0, 1):
                _fail(cls_name, name, v, "a 0/1 flag holds another value")
            return v == 1
        return nullable, conv_flag
    if tp is int:
        def conv_int(cls_name: str, name: str, v: Any) -> int:
            if type(v) is not int:
                _fail(cls_name, name, v, "not an integer")
            return v
        return nullable, conv_int
    if tp is float:
        def conv_float(cls_name: str, name: str, v: Any) -> float:
            if type(v) not in (int, float):
                _fail(cls_name, name, v, "not a number")
            return float(v)
        return nullable, conv_float
    if tp is str:
        def conv_str(cls_name: str, name: str, v: Any) -> str:
            if type(v) is not str:
                _fail(cls_name, name, v, "not text")
            return v
        return nullable, conv_str
    raise TypeError(f"unsupported record field type {tp!r}")


class AuditRecord:
    """Mixin for record dataclasses: table binding, row conversion, Tier-1 reads."""

    TABLE: ClassVar[str]
    __slots__ = ()
    _readers: ClassVar[tuple[tuple[str, bool, _Conv], ...]]
    _names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._readers = ()  # resolved lazily: the dataclass decorator has not run yet

    @classmethod
    def _resolve(cls) -> tuple[tuple[str, bool, _Conv], ...]:
        if not cls._readers:
            hints = get_type_hints(cls)
            cls._readers = tuple((f.name, *_converter(hints[f.name])) for f in fields(cls))  # type: ignore[arg-type]
            cls._names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        return cls._readers

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> typing.Self:
        """Tier-1 read of a database row; raises AuditIntegrityError on anything unexpected."""
        values: dict[str, Any] = {}
        for name, nullable, conv in cls._resolve():
            v = row[name]
            if v is None:
                if not nullable:
                    _fail(cls.__name__, name, v, "NULL where a value is required")
                values[name] = None
            else:
                values[name] = conv(cls.__name__, name, v)
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        type(self)._resolve()
        row = {}
        for name in self._names:
            v = getattr(self, name)
            row[name] = int(v) if type(v) is bool else v
        return row


def _require(cond: bool, record: str, message: str) -> None:
    if not cond:
        raise AuditIntegrityError(f"{record}: {message}", details={"record": record})

"""The function library of the expression language, its resource caps and the regex guard.

Kept apart from the compiler (``expressions.py``): this module says *what* an expression may
compute and how much it may cost; the compiler says *how* the text becomes closures. Functions
raise ``FunctionError`` with a precise reason; the compiler turns it into an
``ExpressionEvalError`` carrying the call's position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from governance_pipeline.engine.user_patterns import UnsafePatternError, compile_user_regex

#: Longest string or list that ``*`` or ``+`` may build: ``"a" * 10**9`` must never allocate.
MAX_SEQUENCE_LENGTH = 1_000_000
#: Largest integer ``*`` may build, in bits (a 4,000-character expression stays far below it).
MAX_INT_BITS = 8192
#: Integers must stay strictly within ±MAX_SAFE_INT: what RFC 8785 / I-JSON represents exactly.
MAX_SAFE_INT = 2**53
#: ``matches`` looks at this many leading characters only, bounding the cost of every search.
MATCH_WINDOW = 10_000

_SEQUENCES = (str, list, tuple)


class FunctionError(Exception):
    """A function or operator refused its arguments; the message is shown to the user as is."""


class SizeLimitError(FunctionError):
    """A result would exceed a size cap (GP-EXPR-004): too long, or an integer beyond ±(2**53 - 1)."""


class PatternError(ValueError):
    """A regular expression is too long or refused by RE2 (GP-EXPR-003)."""


def type_name(value: Any) -> str:
    """The user-facing type of a value: ``null`` rather than ``NoneType``."""
    if value is None:
        return "null"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        raise FunctionError("result is not a finite number")
    return value


# --- regular expressions ------------------------------------------------------------------------
def compile_pattern(pattern: str) -> Any:
    """The RE2-compiled pattern (``engine.user_patterns``); raises ``PatternError``."""
    try:
        return compile_user_regex(pattern)
    except UnsafePatternError as exc:
        raise PatternError(str(exc)) from None


def _matches(text: Any, pattern: Any) -> bool:
    if type(pattern) is not str:
        raise FunctionError(f"matches() expects a string pattern, got {type_name(pattern)}")
    try:
        compiled = compile_pattern(pattern)
    except PatternError as exc:
        raise FunctionError(f"matches(): {exc}") from None
    return match_compiled(text, compiled)


def match_compiled(text: Any, compiled: Any) -> bool:
    if type(text) is not str:
        raise FunctionError(f"matches() expects a string, got {type_name(text)}")
    return compiled.search(text[:MATCH_WINDOW]) is not None


def check_int(value: Any) -> Any:
    """``value``, unless it is an integer RFC 8785 (I-JSON) cannot hash exactly."""
    if type(value) is int and not -MAX_SAFE_INT < value < MAX_SAFE_INT:
        raise SizeLimitError(f"integer {_short(value, 24)} is beyond ±(2**53 - 1), which "
                             "canonical (RFC 8785) hashing cannot represent exactly")
    return value


# --- capped operators ---------------------------------------------------------------------------
def multiply(a: Any, b: Any) -> Any:
    """``a * b`` with the result size checked *before* anything is allocated."""
    ta, tb = type(a), type(b)
    if ta in _SEQUENCES or tb in _SEQUENCES:
        seq, count = (a, b) if ta in _SEQUENCES else (b, a)
        if type(count) not in (int, bool) or type(seq) not in _SEQUENCES:
            raise TypeError
        if len(seq) * count > MAX_SEQUENCE_LENGTH:
            raise SizeLimitError(f"'*' would build a {type_name(seq)} longer than "
                                f"{MAX_SEQUENCE_LENGTH:,} items")
        return seq * count
    if ta is int and tb is int and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise SizeLimitError(f"'*' would build an integer larger than {MAX_INT_BITS} bits")
    return _finite(a * b)


def add(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta in _SEQUENCES and type(b) is ta and len(a) + len(b) > MAX_SEQUENCE_LENGTH:
        raise SizeLimitError(f"'+' would build a {type_name(a)} longer than "
                            f"{MAX_SEQUENCE_LENGTH:,} items")
    return _finite(a + b)


def modulo(a: Any, b: Any) -> Any:
    # On a string ``%`` is printf-style formatting ("%999999999d"): numbers only.
    if type(a) not in (int, float, bool) or type(b) not in (int, float, bool):
        raise TypeError
    return _finite(a % b)


# --- the function library -----------------------------------------------------------------------
def _text(fn: str, value: Any, what: str = "a string") -> str:
    if type(value) is not str:
        raise FunctionError(f"{fn}() expects {what}, got {type_name(value)}")
    return value


def _number(fn: str, value: Any) -> int | float:
    if type(value) not in (int, float):
        raise FunctionError(f"{fn}() expects a number, got {type_name(value)}")
    return value


def _len(value: Any) -> int:
    if type(value) not in (str, list, tuple, dict):
        raise FunctionError(f"len() expects a string or a list, got {type_name(value)}")
    return len(value)


def _contains(haystack: Any, needle: Any) -> bool:
    if type(haystack) is str:
        return _text("contains", needle, "a string to look for in a string") in haystack
    if type(haystack) in (list, tuple):
        return needle in haystack
    raise FunctionError(f"contains() expects a string or a list, got {type_name(haystack)}")


def _round(value: Any, ndigits: Any = None) -> int | float:
    _number("round", value)
    if ndigits is None:
        return _finite(round(value))
    if type(ndigits) is not int:
        raise FunctionError(f"round() expects an integer number of digits, got {type_name(ndigits)}")
    return round(value, ndigits)


def _extreme(fn: str, pick: Callable[..., Any], args: Sequence[Any]) -> Any:
    values = args
    if len(args) == 1:
        if type(args[0]) not in (list, tuple):
            raise FunctionError(f"{fn}() of one argument expects a list, got {type_name(args[0])}")
        values = args[0]
        if not values:
            raise FunctionError(f"{fn}() of an empty list")
    try:
        return pick(values)
    except TypeError:
        kinds = sorted({type_name(v) for v in values})
        raise FunctionError(f"{fn}() cannot compare {' and '.join(kinds)}") from None


def _int(value: Any) -> int:
    if type(value) in (int, bool):
        return int(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise FunctionError("int() of a non-finite number")
        return int(value)
    if type(value) is str:
        try:
            return int(value.strip())
        except ValueError:
            raise FunctionError(f"int() cannot convert {_short(value)} to an integer") from None
    raise FunctionError(f"int() expects a number or a string, got {type_name(value)}")


def _float(value: Any) -> float:
    if type(value) in (int, bool, float):
        try:
            return _finite(float(value))
        except OverflowError:
            raise FunctionError("float() of an integer too large for a float") from None
    if type(value) is str:
        try:
            result = float(value.strip())
        except ValueError:
            raise FunctionError(f"float() cannot convert {_short(value)} to a number") from None
        return _finite(result)
    raise FunctionError(f"float() expects a number or a string, got {type_name(value)}")


def _str(value: Any) -> str:
    if type(value) is str:
        return value
    try:
        return str(value)
    except ValueError:  # ints beyond sys.get_int_max_str_digits()
        raise FunctionError("str() of an integer with too many digits") from None


@dataclass(frozen=True, slots=True)
class Function:
    """A whitelisted function: arity bounds and the implementation over evaluated arguments."""

    name: str
    min_args: int
    max_args: int | None
    impl: Callable[..., Any]


def _fn(name: str, min_args: int, max_args: int | None, impl: Callable[..., Any]) -> Function:
    return Function(name, min_args, max_args, impl)


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    _fn("len", 1, 1, _len),
    _fn("lower", 1, 1, lambda s: _text("lower", s).lower()),
    _fn("upper", 1, 1, lambda s: _text("upper", s).upper()),
    _fn("strip", 1, 1, lambda s: _text("strip", s).strip()),
    _fn("startswith", 2, 2, lambda s, p: _text("startswith", s).startswith(_text("startswith", p))),
    _fn("endswith", 2, 2, lambda s, p: _text("endswith", s).endswith(_text("endswith", p))),
    _fn("contains", 2, 2, _contains),
    _fn("matches", 2, 2, _matches),
    _fn("abs", 1, 1, lambda x: abs(_number("abs", x))),
    _fn("round", 1, 2, _round),
    _fn("min", 1, None, lambda *a: _extreme("min", min, a)),
    _fn("max", 1, None, lambda *a: _extreme("max", max, a)),
    _fn("int", 1, 1, _int),
    _fn("float", 1, 1, _float),
    _fn("str", 1, 1, _str),
    _fn("is_null", 1, 1, lambda x: x is None),
    _fn("is_number", 1, 1, lambda x: type(x) in (int, float)),
    # coalesce is lazy (arguments after the first non-null one are not evaluated): the
    # compiler handles it itself; this entry only declares its arity.
    _fn("coalesce", 1, None, lambda *a: next((x for x in a if x is not None), None)),
)}

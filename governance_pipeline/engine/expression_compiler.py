"""Turns a whitelisted Python expression AST into a tree of closures ``f(row, variables)``.

Each node is checked once here; any node type not handled below is refused with its position.
The closures capture everything they need (constants, child closures, the position to report),
so evaluation never looks at the AST again.
"""

from __future__ import annotations

import ast
import decimal
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from governance_pipeline.contracts.errors import (
    EXPRESSION_PATTERN_UNSAFE,
    EXPRESSION_TOO_LARGE,
    ErrorCode,
)
from governance_pipeline.engine import expression_functions as lib

Fn = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
Fail = Callable[..., Exception]  # (reason, code=None) -> the error to raise
_LITERAL_NAMES = {"true": True, "false": False, "null": None}
_CONSTANT_TYPES = (str, int, float, bool, type(None))

_BINOPS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", lib.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", lib.multiply),
    ast.Div: ("/", operator.truediv), ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", lib.modulo),
}
_FORBIDDEN_BINOPS = {ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
                     ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}
_CMPOPS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq), ast.NotEq: ("!=", operator.ne), ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le), ast.Gt: (">", operator.gt), ast.GtE: (">=", operator.ge),
    ast.In: ("in", operator.contains), ast.NotIn: ("not in", operator.contains),
    ast.Is: ("is", operator.is_), ast.IsNot: ("is not", operator.is_not),
}
_NODE_NAMES = {
    ast.Lambda: "lambda", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
    ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension", ast.NamedExpr: "':='",
    ast.JoinedStr: "f-string", ast.FormattedValue: "f-string", ast.Dict: "dict literal",
    ast.Set: "set literal", ast.Starred: "'*' unpacking", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slice",
}


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column in characters (the AST counts columns in UTF-8 bytes)."""

    line: int
    column: int

    @staticmethod
    def of(source: str, node: ast.AST) -> Position:
        lineno = getattr(node, "lineno", 1)
        lines = source.split("\n")
        line_text = lines[lineno - 1] if lineno <= len(lines) else ""
        col = getattr(node, "col_offset", 0)
        return Position(lineno, len(line_text.encode()[:col].decode(errors="ignore")) + 1)

    @staticmethod
    def at_offset(source: str, offset: int) -> Position:
        line = source.count("\n", 0, offset) + 1
        return Position(line, offset - (source.rfind("\n", 0, offset) + 1) + 1)


class Reject(Exception):
    """A construct outside the language; carries the reason and where it is."""

    def __init__(self, reason: str, position: Position, code: ErrorCode | None = None) -> None:
        super().__init__(reason)
        self.reason, self.position, self.code = reason, position, code


class Compiler:
    def __init__(self, source: str, variables: frozenset[str],
                 make_eval_error: Callable[..., Exception]) -> None:
        self.source = source
        self.variables = variables
        self.fields: set[str] = set()
        self.used_variables: set[str] = set()
        self._make_error = make_eval_error
        self._line_starts = [0]
        for i, ch in enumerate(source):
            if ch == "\n":
                self._line_starts.append(i + 1)

    # --- positions and errors -------------------------------------------------------------------
    def pos(self, node: ast.AST) -> Position:
        return Position.of(self.source, node)

    def _offset(self, lineno: int, col_bytes: int) -> int:
        start = self._line_starts[lineno - 1]
        line = self.source[start:].split("\n", 1)[0]
        return start + len(line.encode()[:col_bytes].decode(errors="ignore"))

    def op_pos(self, left: ast.AST, right: ast.AST, symbol: str) -> Position:
        """Where the operator between two operands is written (falls back to the left operand)."""
        begin = self._offset(left.end_lineno or 1, left.end_col_offset or 0)
        end = self._offset(right.lineno, right.col_offset)
        found = self.source.find(symbol.split()[0], begin, end)
        return Position.at_offset(self.source, found) if found >= 0 else self.pos(left)

    def error(self, position: Position) -> Fail:
        source, make = self.source, self._make_error
        return lambda reason, code=None: make(source, reason, position.line, position.column,
                                              code)

    # --- dispatch -------------------------------------------------------------------------------
    def compile(self, node: ast.expr) -> Fn:
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is None:
            what = _NODE_NAMES.get(type(node), f"'{type(node).__name__}'")
            raise Reject(f"{what} is not allowed", self.pos(node))
        return handler(node)

    def constant_of(self, node: ast.expr) -> tuple[bool, Any]:
        """``(True, value)`` when ``node`` is a literal (incl. lists of literals), else ``(False, None)``."""
        if isinstance(node, ast.Constant):
            return True, node.value
        if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
            return True, _LITERAL_NAMES[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            ok, value = self.constant_of(node.operand)
            if ok and type(value) in (int, float):
                return True, -value
        if isinstance(node, (ast.List, ast.Tuple)):
            # Only flat literals are folded: a nested list must stay a fresh list per row.
            items = [self.constant_of(e) for e in node.elts]
            if all(ok and type(v) is not tuple for ok, v in items):
                return True, tuple(v for _, v in items)
        return False, None

    # --- leaves ---------------------------------------------------------------------------------
    def _Constant(self, node: ast.Constant) -> Fn:
        value = node.value
        if type(value) not in _CONSTANT_TYPES:
            kind = "bytes" if type(value) is bytes else type_label(value)
            raise Reject(f"{kind} literals are not allowed", self.pos(node))
        try:
            lib.check_int(value)
        except lib.SizeLimitError as exc:
            raise Reject(f"literal {exc}", self.pos(node), EXPRESSION_TOO_LARGE) from None
        return lambda row, variables: value

    def _Name(self, node: ast.Name) -> Fn:
        name = node.id
        if name in _LITERAL_NAMES:
            value = _LITERAL_NAMES[name]
            return lambda row, variables: value
        if name in self.variables:
            self.used_variables.add(name)
            fail = self.error(self.pos(node))

            def variable(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
                try:
                    return variables[name]
                except KeyError:
                    raise fail(f"variable {name!r} was not provided") from None
            return variable
        if name == "row":
            raise Reject("'row' can only be used as row[\"field\"] or row.get(\"field\", default)",
                         self.pos(node))
        return self.field_reader(name, self.pos(node))

    def field_reader(self, name: str, position: Position) -> Fn:
        self.fields.add(name)
        fail = self.error(position)

        def read(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
            try:
                return row[name]
            except KeyError:
                raise fail(f"missing field {name!r}") from None
        return read

    def _Subscript(self, node: ast.Subscript) -> Fn:
        if not (isinstance(node.value, ast.Name) and node.value.id == "row"):
            raise Reject("subscripts are only allowed on row: use row[\"field\"]", self.pos(node))
        key = node.slice
        if not (isinstance(key, ast.Constant) and type(key.value) is str):
            raise Reject("row[...] needs a field name in quotes", self.pos(key))
        return self.field_reader(key.value, self.pos(node))

    def _Attribute(self, node: ast.Attribute) -> Fn:
        end = self._offset(node.end_lineno or 1, node.end_col_offset or 0)
        where = Position.at_offset(self.source, end - len(node.attr))
        hint = f": use {node.attr}(...)" if node.attr in lib.FUNCTIONS else ""
        raise Reject(f"attribute access ('.{node.attr}') is not allowed{hint}", where)

    def _List(self, node: ast.List) -> Fn:
        return self._sequence(node, list)

    def _Tuple(self, node: ast.Tuple) -> Fn:
        return self._sequence(node, tuple)

    def _sequence(self, node: ast.List | ast.Tuple, kind: type) -> Fn:
        ok, value = self.constant_of(node)
        if ok:
            return lambda row, variables: kind(value)
        items = [self.compile(e) for e in node.elts]
        return lambda row, variables: kind([f(row, variables) for f in items])

    # --- operators ------------------------------------------------------------------------------
    def _UnaryOp(self, node: ast.UnaryOp) -> Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda row, variables: not operand(row, variables)
        if isinstance(node.op, ast.Invert):
            raise Reject("operator '~' is not allowed", self.pos(node))
        symbol, apply = ("-", operator.neg) if isinstance(node.op, ast.USub) else ("+", operator.pos)
        fail = self.error(self.pos(node))

        def unary(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
            value = operand(row, variables)
            if type(value) not in (int, float, bool):
                raise fail(f"unary '{symbol}' not supported for {lib.type_name(value)}")
            return apply(value)
        return unary

    def _BinOp(self, node: ast.BinOp) -> Fn:
        if type(node.op) in _FORBIDDEN_BINOPS:
            symbol = _FORBIDDEN_BINOPS[type(node.op)]
            raise Reject(f"operator '{symbol}' is not allowed",
                         self.op_pos(node.left, node.right, symbol))
        symbol, apply = _BINOPS[type(node.op)]
        left, right = self.compile(node.left), self.compile(node.right)
        fail = self.error(self.op_pos(node.left, node.right, symbol))

        def binop(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
            a, b = left(row, variables), right(row, variables)
            try:
                result = lib.check_int(apply(a, b))
            except TypeError:
                raise fail(f"'{symbol}' not supported between {lib.type_name(a)} and "
                           f"{lib.type_name(b)}") from None
            except ZeroDivisionError:
                raise fail(f"division by zero in '{symbol}'") from None
            except OverflowError:
                raise fail(f"arithmetic overflow in '{symbol}'") from None
            except lib.SizeLimitError as exc:
                raise fail(str(exc), EXPRESSION_TOO_LARGE) from None
            except lib.FunctionError as exc:
                raise fail(str(exc)) from None
            if type(result) is float and not math.isfinite(result):
                raise fail(f"'{symbol}': result is not a finite number")
            return result
        return binop

    def _BoolOp(self, node: ast.BoolOp) -> Fn:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            def all_of(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
                for part in parts:
                    value = part(row, variables)
                    if not value:
                        return value
                return value
            return all_of

        def any_of(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
            for part in parts:
                value = part(row, variables)
                if value:
                    return value
            return value
        return any_of

    def _IfExp(self, node: ast.IfExp) -> Fn:
        test, body, orelse = self.compile(node.test), self.compile(node.body), self.compile(node.orelse)
        return lambda row, variables: (body(row, variables) if test(row, variables)
                                       else orelse(row, variables))

    def _Compare(self, node: ast.Compare) -> Fn:
        operands = [node.left, *node.comparators]
        steps = [self._comparison(operands[i], op, operands[i + 1])
                 for i, op in enumerate(node.ops)]
        first = self.compile(node.left)
        rights = [self.compile(c) for c in node.comparators]
        if len(steps) == 1:
            step, right = steps[0], rights[0]
            ok, value = self.constant_of(node.comparators[0])
            # `field > 1000`, `status in ['a', 'b']`: the literal is captured, no call per row
            # (a list literal folds to a tuple, which only a membership test may see).
            if ok and (type(value) is not tuple or isinstance(node.ops[0], (ast.In, ast.NotIn))):
                return lambda row, variables: step(first(row, variables), value)
            return lambda row, variables: step(first(row, variables), right(row, variables))

        def chained(row: Mapping[str, Any], variables: Mapping[str, Any]) -> bool:
            a = first(row, variables)
            for step, right in zip(steps, rights):
                b = right(row, variables)
                if not step(a, b):
                    return False
                a = b
            return True
        return chained

    def _comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Callable[[Any, Any], Any]:
        symbol, apply = _CMPOPS[type(op)]
        fail = self.error(self.op_pos(left, right, symbol))
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not any(self.constant_of(n) == (True, None) for n in (left, right)):
                raise Reject(f"'{symbol}' is only allowed with null: use '==' or '!='",
                             self.op_pos(left, right, symbol))
            return apply
        if isinstance(op, (ast.In, ast.NotIn)):
            return self._membership(symbol, right, fail)

        def compare(a: Any, b: Any) -> Any:
            try:
                return apply(a, b)
            except TypeError:
                raise fail(f"'{symbol}' not supported between {lib.type_name(a)} and "
                           f"{lib.type_name(b)}") from None
            except decimal.InvalidOperation:  # ordering a Decimal NaN signals, not returns
                raise fail(f"'{symbol}' cannot order a NaN ({a!r} {symbol} {b!r})") from None
        return compare

    def _membership(self, symbol: str, right: ast.expr,
                    fail: Fail) -> Callable[[Any, Any], Any]:
        negate = symbol == "not in"
        ok, value = self.constant_of(right)
        if ok and type(value) is tuple:
            members = frozenset(value)  # flat literals only, all hashable

            def in_literal(a: Any, b: Any) -> bool:
                try:
                    return (a in members) is not negate
                except TypeError:  # an unhashable left operand (a list): compare one by one
                    return (a in value) is not negate
            return in_literal

        def contains(a: Any, b: Any) -> bool:
            if type(b) not in (list, tuple, str, dict):
                raise fail(f"'{symbol}' needs a list or a string on its right, got "
                           f"{lib.type_name(b)}")
            try:
                return (a in b) is not negate
            except TypeError:
                raise fail(f"'{symbol}' not supported between {lib.type_name(a)} and "
                           f"{lib.type_name(b)}") from None
        return contains

    # --- calls ----------------------------------------------------------------------------------
    def _Call(self, node: ast.Call) -> Fn:
        if node.keywords:
            raise Reject("keyword arguments are not allowed", self.pos(node.keywords[0]))
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id == "row" and func.attr == "get":
            return self._row_get(node)
        if not isinstance(func, ast.Name):
            self.compile(func)  # an attribute, a lambda...: refused with its own position
            raise Reject("only the built-in functions can be called", self.pos(func))
        spec = lib.FUNCTIONS.get(func.id)
        if spec is None:
            raise Reject(f"unknown function {func.id!r}", self.pos(func))
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            expected = (str(spec.min_args) if spec.min_args == spec.max_args else
                        f"{spec.min_args} or more" if spec.max_args is None else
                        f"{spec.min_args} to {spec.max_args}")
            raise Reject(f"{func.id}() takes {expected} arguments, got {count}", self.pos(node))
        args = [self.compile(a) for a in node.args]
        fail = self.error(self.pos(node))
        if func.id == "coalesce":
            return _coalesce(args)
        if func.id == "matches":
            return self._matches(node, args, fail)
        return _call(func.id, spec.impl, args, fail)

    def _row_get(self, node: ast.Call) -> Fn:
        if not 1 <= len(node.args) <= 2:
            raise Reject("row.get() takes a field name and an optional default", self.pos(node))
        key = node.args[0]
        if not (isinstance(key, ast.Constant) and type(key.value) is str):
            raise Reject("row.get() needs a field name in quotes", self.pos(key))
        name = key.value
        self.fields.add(name)
        default = self.compile(node.args[1]) if len(node.args) == 2 else None

        def get(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
            if name in row:
                return row[name]
            return default(row, variables) if default is not None else None
        return get

    def _matches(self, node: ast.Call, args: list[Fn], fail: Fail) -> Fn:
        pattern_node = node.args[1]
        if not (isinstance(pattern_node, ast.Constant) and type(pattern_node.value) is str):
            return _call("matches", lib.FUNCTIONS["matches"].impl, args, fail)
        try:
            compiled = lib.compile_pattern(pattern_node.value)
        except lib.PatternError as exc:
            raise Reject(f"matches(): {exc}", self.pos(pattern_node),
                         EXPRESSION_PATTERN_UNSAFE) from None
        text = args[0]

        def matches(row: Mapping[str, Any], variables: Mapping[str, Any]) -> bool:
            value = text(row, variables)
            try:
                return lib.match_compiled(value, compiled)
            except lib.FunctionError as exc:
                raise fail(str(exc)) from None
        return matches


def type_label(value: Any) -> str:
    return type(value).__name__


def _coalesce(args: list[Fn]) -> Fn:
    def coalesce(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
        for arg in args:
            value = arg(row, variables)
            if value is not None:
                return value
        return None
    return coalesce


def _call(name: str, impl: Callable[..., Any], args: list[Fn],
          fail: Fail) -> Fn:
    def call(row: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
        values = [a(row, variables) for a in args]
        try:
            return lib.check_int(impl(*values))
        except lib.SizeLimitError as exc:
            raise fail(f"{name}(): {exc}", EXPRESSION_TOO_LARGE) from None
        except lib.FunctionError as exc:
            raise fail(str(exc)) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise fail(f"{name}() failed: {exc}") from None
    return call

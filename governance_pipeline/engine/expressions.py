"""The safe expression language of gates, filters, computed fields and policy rules.

Why ``ast.parse`` + a whitelist + closures rather than a hand-written parser: Python's own parser
gives exact line/column positions, correct precedence and chained comparisons for free, and the
language is deliberately a subset of Python expression syntax, so users already know it. Nothing
parsed is ever handed to ``eval``/``exec``/``compile``: every node type is checked against a
whitelist and turned, once, into a tree of plain closures ``f(row, variables)``. Evaluating a gate
then costs a handful of Python calls per row (about a microsecond for a three-clause predicate,
see ``docs/expressions.md``), with no tree walking and no dispatch on node types at run time.

Bounds: text length, nesting depth (checked iteratively, before any recursion), the size of
strings, lists and integers that operators may build, and the cost of regular expressions
(``expression_functions``). Errors: ``ExpressionSyntaxError`` at compile time with a position and
a caret excerpt; ``ExpressionEvalError`` per row, naming the expression, the position and the
problem (missing field, types that do not fit).
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from governance_pipeline.contracts.errors import (
    EXPRESSION_EVAL, EXPRESSION_INVALID, ConfigError, ErrorCode, GovernanceError)
from governance_pipeline.engine.expression_functions import type_name
from governance_pipeline.engine.expression_compiler import Compiler, Position, Reject

MAX_EXPRESSION_LENGTH = 4000
MAX_DEPTH = 50
_EMPTY: Mapping[str, Any] = {}

Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


class ExpressionSyntaxError(ConfigError):
    """An expression that cannot be compiled: carries its line, column and a caret excerpt."""

    default_code = EXPRESSION_INVALID

    def __init__(self, source: str, reason: str, line: int, column: int,
                 context: str | None = None, code: ErrorCode | None = None) -> None:
        self.source, self.reason, self.line, self.column = source, reason, line, column
        self.context = context
        self.excerpt = _excerpt(source, line, column)
        prefix = f"{context}: " if context else ""
        self.headline = f"{prefix}expression error at {line}:{column}: {reason}"
        super().__init__(f"{self.headline}\n{self.excerpt}", code=code,
                         details={"expression": source, "line": line, "column": column,
                                  "reason": reason})

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process boundaries
        return (type(self), (self.source, self.reason, self.line, self.column, self.context,
                             self.code))

    def with_context(self, context: str) -> ExpressionSyntaxError:
        """The same error, its message prefixed with where the expression came from."""
        return ExpressionSyntaxError(self.source, self.reason, self.line, self.column, context,
                                     self.code)


class ExpressionEvalError(GovernanceError):
    """An expression that failed on one row (missing field, mismatched types, bad conversion)."""

    default_code = EXPRESSION_EVAL

    def __init__(self, source: str, reason: str, line: int, column: int,
                 code: ErrorCode | None = None) -> None:
        self.source, self.reason, self.line, self.column = source, reason, line, column
        shown = source if len(source) <= 120 else source[:117] + "..."
        super().__init__(f"cannot evaluate {shown!r} at {line}:{column}: {reason}", code=code,
                         details={"expression": source, "line": line, "column": column,
                                  "reason": reason})

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.reason, self.line, self.column, self.code))


def _excerpt(source: str, line: int, column: int, width: int = 72) -> str:
    lines = source.split("\n")
    text = lines[min(max(line, 1), len(lines)) - 1]
    start = max(0, min(column - 1 - width // 2, len(text) - width))
    shown = text[start:start + width]
    lead = "..." if start > 0 else ""
    tail = "..." if start + width < len(text) else ""
    caret = " " * (len(lead) + column - 1 - start) + "^"
    return f"  {lead}{shown}{tail}\n  {caret}"


@dataclass(frozen=True)
class Expression:
    """A compiled expression. ``fields`` are the row fields it reads (bare names, ``row["f"]``,
    ``row.get("f")``); ``variables`` the extra names it reads from the variables mapping."""

    source: str
    fields: frozenset[str]
    variables: frozenset[str] = frozenset()
    _fn: Evaluator = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._fn is None:
            raise TypeError("an Expression is made by compile_expression(), not directly")

    def evaluate(self, row: Mapping[str, Any], variables: Mapping[str, Any] | None = None) -> Any:
        return self._fn(row, _EMPTY if variables is None else variables)

    def holds(self, row: Mapping[str, Any], variables: Mapping[str, Any] | None = None) -> bool:
        """Evaluate a condition: the result must be ``true`` or ``false``, nothing else.

        A gate that silently treated ``0``, ``""`` or ``null`` as false would route rows on an
        accident of the data; a non-boolean result is an ``ExpressionEvalError`` instead.
        """
        value = self._fn(row, _EMPTY if variables is None else variables)
        if value is True or value is False:
            return value
        raise ExpressionEvalError(self.source, "a condition must be true or false, got "
                                  f"{type_name(value)}", 1, 1)


def compile_expression(text: str, *, variables: Iterable[str] = ()) -> Expression:
    """Compile ``text`` once; raises ``ExpressionSyntaxError`` with its position."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError(str(text), f"an expression must be text, got "
                                    f"{type_name(text)}", 1, 1)
    return _compile(text, frozenset(variables))


@lru_cache(maxsize=1024)
def _compile(text: str, variables: frozenset[str]) -> Expression:
    # Python's tokenizer reads \r\n and a lone \r as line breaks; positions are counted on the
    # text with the same line breaks, so they match the AST's line numbers.
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    tree = _parse(lines)
    _check_depth(lines, tree)
    compiler = Compiler(lines, variables, make_eval_error=ExpressionEvalError)
    try:
        fn = compiler.compile(tree.body)
    except Reject as exc:
        raise ExpressionSyntaxError(lines, exc.reason, exc.position.line,
                                    exc.position.column, code=exc.code) from None
    return Expression(text, frozenset(compiler.fields), frozenset(compiler.used_variables), fn)


def _parse(text: str) -> ast.Expression:
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(text[:200], f"expression is {len(text):,} characters long; at "
                                    f"most {MAX_EXPRESSION_LENGTH:,} are allowed", 1, 1)
    if not text.strip():
        raise ExpressionSyntaxError(text, "empty expression", 1, 1)
    bad = next((i for i, ch in enumerate(text) if ch == "\x00" or "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        line = text.count("\n", 0, bad) + 1
        column = bad - (text.rfind("\n", 0, bad) + 1) + 1
        raise ExpressionSyntaxError(text, "invalid character in expression", line, column)
    try:
        with warnings.catch_warnings():
            # '\d' in a pattern literal is an "invalid escape sequence" warning that Python
            # accepts as backslash + d; under -W error it must not escape as a warning.
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        line = exc.lineno or 1
        column = exc.offset or 1
        if column < 1:
            lines = text.split("\n")
            column = len(lines[min(line, len(lines)) - 1]) + 1
        reason = exc.msg.removesuffix(". Perhaps you forgot a comma?")
        if "nested parentheses" in reason:
            reason = f"expression nested too deeply (at most {MAX_DEPTH} levels)"
        raise ExpressionSyntaxError(text, reason, line, column) from None
    except (RecursionError, MemoryError):
        raise ExpressionSyntaxError(text, f"expression nested too deeply (at most {MAX_DEPTH} "
                                    "levels)", 1, 1) from None


def _check_depth(text: str, tree: ast.Expression) -> None:
    """Reject over-deep trees iteratively, so compiling (which recurses) stays shallow."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            pos = Position.of(text, node)
            raise ExpressionSyntaxError(text, f"expression nested too deeply (at most {MAX_DEPTH} "
                                        "levels)", pos.line, pos.column)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                stack.append((child, depth + 1))
            else:
                stack.append((child, depth))

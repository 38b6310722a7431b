"""The expression language: results, refusals with positions, evaluation errors, bounds, and
property tests against Python's own semantics computed independently (never via eval)."""

from __future__ import annotations

import ast
import math
import operator
import pickle
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts.errors import ConfigError, ExitCode
from governance_pipeline.engine import expression_compiler, expression_functions, expressions
from governance_pipeline.engine.expressions import (
    MAX_DEPTH, MAX_EXPRESSION_LENGTH, Expression, ExpressionEvalError, ExpressionSyntaxError,
    compile_expression)

ROW = {"amount": 1500, "country": "DE", "status": "open", "name": "  Alice ", "score": 0.25,
       "tags": ["a", "b"], "note": None, "field name": 7, "code": "AB-123"}

# (expression, expected computed by the test's own Python over ROW)
VALID: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("amount > 1000 and country == 'DE'", lambda r: r["amount"] > 1000 and r["country"] == "DE"),
    ("amount > 1000 and country == \"FR\"", lambda r: False),
    ("0 < amount <= 2000", lambda r: 0 < r["amount"] <= 2000),
    ("0 < amount <= 1000", lambda r: 0 < r["amount"] <= 1000),
    ("1 < 2 < 3 > 2 != 5", lambda r: True),
    ("country in ['DE', 'FR']", lambda r: r["country"] in ("DE", "FR")),
    ("country not in ('DE', 'FR')", lambda r: r["country"] not in ("DE", "FR")),
    ("'a' in tags", lambda r: "a" in r["tags"]),
    ("'z' not in tags", lambda r: "z" not in r["tags"]),
    ("status in [amount, 'open']", lambda r: r["status"] in (r["amount"], "open")),
    ("not (amount > 10)", lambda r: not r["amount"] > 10),
    ("amount > 10 or undefined_field", lambda r: True),  # short-circuit: never read
    ("note or 'fallback'", lambda r: r["note"] or "fallback"),
    ("amount * 2 + 3 - 4", lambda r: r["amount"] * 2 + 3 - 4),
    ("amount / 7", lambda r: r["amount"] / 7),
    ("amount // 7", lambda r: r["amount"] // 7),
    ("-amount % 7", lambda r: -r["amount"] % 7),
    ("-(score * 4)", lambda r: -(r["score"] * 4)),
    ("+score", lambda r: r["score"]),
    ("'big' if amount > 1000 else 'small'", lambda r: "big" if r["amount"] > 1000 else "small"),
    ("row['field name'] * 2", lambda r: r["field name"] * 2),
    ('row["amount"] == amount', lambda r: True),
    ("row.get('missing', 42)", lambda r: 42),
    ("row.get('missing')", lambda r: None),
    ("row.get('amount', 0)", lambda r: r["amount"]),
    ("true and not false", lambda r: True),
    ("True and not False", lambda r: True),
    ("null is None and note is null", lambda r: r["note"] is None),
    ("note is not null", lambda r: r["note"] is not None),
    ("len(name) + len(tags)", lambda r: len(r["name"]) + len(r["tags"])),
    ("lower(strip(name))", lambda r: r["name"].strip().lower()),
    ("upper(country) + '-' + str(amount)", lambda r: r["country"].upper() + "-" + str(r["amount"])),
    ("startswith(code, 'AB') and endswith(code, '123')",
     lambda r: r["code"].startswith("AB") and r["code"].endswith("123")),
    ("contains(code, '-') and contains(tags, 'b')", lambda r: "-" in r["code"] and "b" in r["tags"]),
    ("matches(code, '^[A-Z]{2}-[0-9]+$')", lambda r: re.search(r"^[A-Z]{2}-[0-9]+$", r["code"]) is not None),
    ("matches(code, 'X')", lambda r: False),
    ("abs(-amount) == amount", lambda r: True),
    ("round(score * 10)", lambda r: round(r["score"] * 10)),
    ("round(2.675, 2)", lambda r: round(2.675, 2)),
    ("min(3, amount, 9)", lambda r: min(3, r["amount"], 9)),
    ("max([1, 5, 2])", lambda r: 5),
    ("int('42') + int(3.9) + int(true)", lambda r: 42 + 3 + 1),
    ("float(' 2.5 ') * 2", lambda r: 5.0),
    ("str(score)", lambda r: str(r["score"])),
    ("coalesce(note, row.get('other'), 'x')", lambda r: "x"),
    ("coalesce(note)", lambda r: None),
    ("is_null(note) and not is_null(amount)", lambda r: True),
    ("is_number(amount) and is_number(score) and not is_number(true) and not is_number('1')",
     lambda r: True),
    ("[1, amount, 'x']", lambda r: [1, r["amount"], "x"]),
    ("(1, 2)", lambda r: (1, 2)),
    ("'ab' * 3", lambda r: "ababab"),
    ("[0] * 4 + [1]", lambda r: [0, 0, 0, 0, 1]),
    ("[1] in [[1], 2]", lambda r: True),
    ("tags in [['a', 'b']]", lambda r: True),
    ("[[1]]", lambda r: [[1]]),
    ("(amount > 1000\n and country == 'DE')", lambda r: True),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t for t, _ in VALID])
def test_valid_expressions_agree_with_python(text: str, expected: Callable[[dict[str, Any]], Any]) -> None:
    result = compile_expression(text).evaluate(ROW)
    want = expected(ROW)
    assert result == want and type(result) is type(want)


def test_fields_and_variables_are_reported() -> None:
    expr = compile_expression("a > batch_count and row['b c'] == row.get('d') and len(e) > 0",
                              variables=["batch_count", "unused"])
    assert expr.fields == frozenset({"a", "b c", "d", "e"})
    assert expr.variables == frozenset({"batch_count"})
    row = {"a": 5, "b c": 1, "d": 1, "e": "x"}
    assert expr.evaluate(row, {"batch_count": 4}) is True
    assert expr.evaluate(row, {"batch_count": 5}) is False
    with pytest.raises(ExpressionEvalError, match="variable 'batch_count' was not provided"):
        expr.evaluate(row)


def test_compiled_once_and_shared() -> None:
    assert compile_expression("x + 1") is compile_expression("x + 1")
    assert isinstance(compile_expression("x + 1"), Expression)


def _col(text: str, needle: str, occurrence: int = 0) -> int:
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    return index + 1


# (expression, message fragment, the text the caret must point at)
FORBIDDEN = [
    ("__import__('os')", "unknown function '__import__'", "__import__"),
    ("amount > 1 and exec('x')", "unknown function 'exec'", "exec"),
    ("x.__class__", "attribute access ('.__class__') is not allowed", "__class__"),
    ("amount + name.upper()", "attribute access ('.upper') is not allowed: use upper(...)", "upper"),
    ("1 + (lambda: 1)()", "lambda is not allowed", "lambda"),
    ("[y for y in tags]", "comprehension is not allowed", "[y"),
    ("any(y for y in tags)", "unknown function 'any'", "any"),
    ("amount ** 2", "operator '**' is not allowed", "**"),
    ("(amount) **(2)", "operator '**' is not allowed", "**"),
    ("1 << amount", "operator '<<' is not allowed", "<<"),
    ("amount | 1", "operator '|' is not allowed", "|"),
    ("~amount", "operator '~' is not allowed", "~"),
    ("tags[0]", "subscripts are only allowed on row", "tags"),
    ("row[0]", "row[...] needs a field name in quotes", "0"),
    ("row[name]", "row[...] needs a field name in quotes", "name]"),
    ("row", "'row' can only be used as", "row"),
    ("row.keys()", "attribute access ('.keys') is not allowed", "keys"),
    ("row.get(name)", "row.get() needs a field name in quotes", "name"),
    ("f'{amount}'", "f-string is not allowed", "f'"),
    ("(y := 1)", "':=' is not allowed", "y :="),
    ("{'a': 1}", "dict literal is not allowed", "{"),
    ("{1, 2}", "set literal is not allowed", "{"),
    ("[*tags]", "'*' unpacking is not allowed", "*"),
    ("b'x' == name", "bytes literals are not allowed", "b'x'"),
    ("1j + 1", "complex literals are not allowed", "1j"),
    ("lower(name, 1)", "lower() takes 1 arguments, got 2", "lower"),
    ("round()", "round() takes 1 to 2 arguments, got 0", "round"),
    ("lower(x=name)", "keyword arguments are not allowed", "x="),
    ("amount is 1", "'is' is only allowed with null", "is"),
    ("tags[0:1]", "subscripts are only allowed on row", "tags"),
    ("(1)(2)", "only the built-in functions can be called", "1)"),
    ("amount >", "invalid syntax", None),
    ("amount > 1 and", "invalid syntax", None),
    ("", "empty expression", None),
    ("(yield amount)", "yield is not allowed", "yield"),
    ("await amount", None, None),
]


@pytest.mark.parametrize(("text", "fragment", "caret"), FORBIDDEN, ids=[f[0][:40] for f in FORBIDDEN])
def test_forbidden_constructs_are_refused_at_compile_time_with_position(
        text: str, fragment: str | None, caret: str | None) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.code.code == "GP-EXPR-001" and err.exit_code is ExitCode.INVALID_INPUT
    if fragment is not None:
        assert fragment in err.reason
    assert err.message.startswith(f"expression error at {err.line}:{err.column}: ")
    if caret is not None:
        assert (err.line, err.column) == (1, _col(text, caret))
        excerpt_line, caret_line = err.excerpt.split("\n")
        assert excerpt_line[caret_line.index("^")] == caret[0]


def test_positions_count_characters_and_lines() -> None:
    text = "(amount > 1 and\n   'ü' + x.y)"
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    assert (info.value.line, info.value.column) == (2, "   'ü' + x.y".index("y") + 1)
    text = "'äöü' + exec(1)"
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    assert info.value.column == text.index("exec") + 1
    assert info.value.message.startswith("expression error at 1:9: unknown function 'exec'")


@pytest.mark.parametrize(("text", "line", "column"), [
    ("(a\r+ b.c)", 2, 5), ("(a\r\n+ b ** 2)", 2, 5), ("(1\r\r+ exec(1))", 3, 3),
    ("(a\x0c+ b.c)", 1, 8),
])
def test_positions_follow_pythons_line_breaks(text: str, line: int, column: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    assert (info.value.line, info.value.column) == (line, column)


def test_syntax_error_carries_context_and_problem_document() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression("a + exec(1)")
    framed = info.value.with_context("nodes.gate.when")
    assert framed.message.startswith("nodes.gate.when: expression error at 1:5: unknown function")
    assert framed.code.code == "GP-EXPR-001"
    doc = framed.problem()
    assert doc["details"] == {"expression": "a + exec(1)", "line": 1, "column": 5,
                              "reason": "unknown function 'exec'"}


def test_errors_survive_pickling() -> None:
    with pytest.raises(ExpressionSyntaxError) as syntax:
        compile_expression("a + exec(1)")
    framed = syntax.value.with_context("options.when")
    copy = pickle.loads(pickle.dumps(framed))
    assert (copy.message, copy.line, copy.column, copy.code) == (
        framed.message, framed.line, framed.column, framed.code)
    with pytest.raises(ExpressionEvalError) as evaluation:
        compile_expression("a > 1").evaluate({"a": "x"})
    again = pickle.loads(pickle.dumps(evaluation.value))
    assert again.message == evaluation.value.message and again.reason == evaluation.value.reason


EVAL_ERRORS = [
    ("amount > 1000", {"amount": "12"}, "'>' not supported between str and int", ">"),
    ("amount > 1000", {}, "missing field 'amount'", "amount"),
    ("row['a b'] + 1", {}, "missing field 'a b'", "row"),
    ("1 < amount < 'x'", {"amount": 5}, "'<' not supported between int and str", "< '"),
    ("amount + name", {"amount": 1, "name": "x"}, "'+' not supported between int and str", "+"),
    ("amount / 0", {"amount": 1}, "division by zero in '/'", "/"),
    ("amount // zero", {"amount": 1, "zero": 0}, "division by zero in '//'", "//"),
    ("amount % 0", {"amount": 1}, "division by zero in '%'", "%"),
    ("'%d' % amount", {"amount": 1}, "'%' not supported between str and int", "% a"),
    ("-name", {"name": "x"}, "unary '-' not supported for str", "-"),
    ("lower(amount)", {"amount": 1}, "lower() expects a string, got int", "lower"),
    ("int(name)", {"name": "4.5"}, "int() cannot convert '4.5' to an integer", "int"),
    ("float(name)", {"name": "nan"}, "result is not a finite number", "float"),
    ("float(name)", {"name": "1e999"}, "result is not a finite number", "float"),
    ("min(a, b)", {"a": 1, "b": None}, "min() cannot compare int and null", "min"),
    ("max([])", {}, "max() of an empty list", "max"),
    ("1 in name", {"name": "abc"}, "'in' not supported between int and str", "in"),
    ("1 in amount", {"amount": 3}, "'in' needs a list or a string on its right, got int", "in"),
    ("matches(amount, 'x')", {"amount": 3}, "matches() expects a string, got int", "matches"),
    ("matches(name, pattern)", {"name": "aaa", "pattern": "(a)\\1"}, "invalid escape sequence",
     "matches"),
    ("'a' * 1000000000", {}, "longer than 1,000,000 items", "*"),
    ("[1] * n", {"n": 10**9}, "longer than 1,000,000 items", "*"),
    ("s + s", {"s": "x" * 600_000}, "longer than 1,000,000 items", "+"),
    ("n * m", {"n": 10**3000, "m": 10**3000}, "larger than 8192 bits", "*"),
    ("n * m", {"n": 10**10, "m": 10**10}, "beyond ±(2**53 - 1)", "*"),
    ("x * 1e308", {"x": 10.0}, "result is not a finite number", "*"),
    ("x - 1e308", {"x": -1e308}, "result is not a finite number", "-"),
    ("str(n)", {"n": 10**5000}, "str() of an integer with too many digits", "str"),
]


@pytest.mark.parametrize(("text", "row", "fragment", "at"), EVAL_ERRORS,
                         ids=[f"{e[0]}|{e[2][:20]}" for e in EVAL_ERRORS])
def test_evaluation_errors_are_precise(text: str, row: dict[str, Any], fragment: str, at: str) -> None:
    expr = compile_expression(text)
    started = time.perf_counter()
    with pytest.raises(ExpressionEvalError) as info:
        expr.evaluate(row)
    assert time.perf_counter() - started < 1.0  # refused before allocating anything large
    err = info.value
    size_cap = any(cap in fragment for cap in ("longer than", "bits", "2**53"))
    assert err.code.code == ("GP-EXPR-004" if size_cap else "GP-EXPR-002")
    assert fragment in err.reason
    assert (err.line, err.column) == (1, _col(text, at))
    assert err.message == f"cannot evaluate {text!r} at {err.line}:{err.column}: {err.reason}"


def test_holds_requires_a_boolean() -> None:
    assert compile_expression("amount > 1").holds({"amount": 2}) is True
    assert compile_expression("amount > 1").holds({"amount": 0}) is False
    for value, kind in ((0, "int"), ("", "str"), (None, "null")):
        with pytest.raises(ExpressionEvalError, match=f"must be true or false, got {kind}"):
            compile_expression("flag").holds({"flag": value})


@pytest.mark.filterwarnings("error")
def test_backslash_escapes_in_patterns_behave_as_in_python() -> None:
    # The first pattern escapes its backslash, the second relies on Python keeping '\d' as is.
    expr = compile_expression(r"matches(code, '^[A-Z]+-\\d+$') and matches(code, '\d')")
    assert expr.evaluate({"code": "AB-12"}) is True
    assert expr.evaluate({"code": "AB-x"}) is False


def test_matches_looks_only_at_the_first_10000_characters() -> None:
    expr = compile_expression("matches(text, 'x')")
    window = expression_functions.MATCH_WINDOW
    assert expr.evaluate({"text": "a" * (window - 1) + "x"}) is True
    assert expr.evaluate({"text": "a" * window + "x"}) is False
    dynamic = compile_expression("matches(text, pattern)")
    assert dynamic.evaluate({"text": "a" * window + "x", "pattern": "x"}) is False
    assert dynamic.evaluate({"text": "ab-12", "pattern": r"^\w+-\d+$"}) is True


def test_length_and_depth_bounds() -> None:
    at_limit = "+".join(["1"] * (MAX_DEPTH))
    assert compile_expression(at_limit).evaluate({}) == MAX_DEPTH
    with pytest.raises(ExpressionSyntaxError, match="nested too deeply"):
        compile_expression("+".join(["1"] * (MAX_DEPTH + 1)))
    with pytest.raises(ExpressionSyntaxError, match="at most 4,000 are allowed"):
        compile_expression("1 + " * 1000 + "1")
    assert len("1 + " * 1000 + "1") > MAX_EXPRESSION_LENGTH


ADVERSARIAL = [
    "-" * 3999 + "1",
    "not " * 999 + "x",
    "(" * 1999 + "1" + ")" * 1999,
    "[" * 2000,
    "f(" * 1300 + ")" * 1300,
    "1 if 1 else " * 333 + "1",
    "+".join(["1"] * 1999),
    "a." * 1999 + "b",
    "'" + "\\" * 3991 + "'",
    "x\x00y",
    "'\ud800'",
    "1" * 4001,
    "((((((((((" * 400,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: repr(t[:12]))
def test_adversarial_inputs_fail_fast_with_syntax_errors(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionSyntaxError):
        compile_expression(text)
    assert time.perf_counter() - started < 2.0


# --- property tests --------------------------------------------------------------------------
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
          "%": operator.mod, "/": operator.truediv}
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


class _Undefined(Exception):
    """The reference evaluation divided by zero: the expression must raise too."""


def _leaf(draw: st.DrawFn, names: list[str]) -> tuple[str, Callable[[dict[str, int]], Any]]:
    if draw(st.booleans()):
        value = draw(st.integers(-1000, 1000))
        return (f"({value})" if value < 0 else str(value)), (lambda row: value)
    name = draw(st.sampled_from(names))
    return name, (lambda row: row[name])


@st.composite
def arithmetic(draw: st.DrawFn, depth: int = 0) -> tuple[str, Callable[[dict[str, int]], Any]]:
    names = ["a", "b", "c"]
    if depth >= 4 or draw(st.integers(0, 3)) == 0:
        return _leaf(draw, names)
    kind = draw(st.sampled_from(["arith", "arith", "neg", "cond"]))
    if kind == "neg":
        text, ref = draw(arithmetic(depth + 1))
        return f"-({text})", (lambda row: -ref(row))
    if kind == "cond":
        (tt, tr), (bt, br), (ot, orr) = (draw(comparison(depth + 1)), draw(arithmetic(depth + 1)),
                                         draw(arithmetic(depth + 1)))
        return f"(({bt}) if ({tt}) else ({ot}))", (lambda row: br(row) if tr(row) else orr(row))
    op = draw(st.sampled_from(sorted(_ARITH)))
    (lt, lr), (rt, rr) = draw(arithmetic(depth + 1)), draw(arithmetic(depth + 1))

    def ref(row: dict[str, int]) -> Any:
        try:
            return _ARITH[op](lr(row), rr(row))
        except ZeroDivisionError:
            raise _Undefined from None
    return f"({lt}) {op} ({rt})", ref


@st.composite
def comparison(draw: st.DrawFn, depth: int = 0) -> tuple[str, Callable[[dict[str, int]], Any]]:
    kind = draw(st.sampled_from(["cmp", "chain", "and", "or", "not"]))
    if kind in ("cmp", "chain") or depth >= 3:
        count = 3 if kind == "chain" else 2
        operands = [draw(arithmetic(depth + 1)) for _ in range(count)]
        ops = [draw(st.sampled_from(sorted(_CMP))) for _ in range(count - 1)]
        text = f"({operands[0][0]})" + "".join(f" {o} ({t})" for o, (t, _) in zip(ops, operands[1:]))

        def ref(row: dict[str, int]) -> bool:
            # Python's chain: each operand evaluated once, left to right, stopping at the first
            # comparison that fails (so a later zero division is never reached).
            left = operands[0][1](row)
            for o, (_, right_ref) in zip(ops, operands[1:]):
                right = right_ref(row)
                if not _CMP[o](left, right):
                    return False
                left = right
            return True
        return text, ref
    if kind == "not":
        text, inner = draw(comparison(depth + 1))
        return f"not ({text})", (lambda row: not inner(row))
    (lt, lr), (rt, rr) = draw(comparison(depth + 1)), draw(comparison(depth + 1))
    if kind == "and":
        return f"({lt}) and ({rt})", (lambda row: lr(row) and rr(row))
    return f"({lt}) or ({rt})", (lambda row: lr(row) or rr(row))


def _check(text: str, ref: Callable[[dict[str, int]], Any], row: dict[str, int]) -> None:
    expr = compile_expression(text)
    try:
        want = ref(row)
    except _Undefined:
        with pytest.raises(ExpressionEvalError, match="division by zero"):
            expr.evaluate(row)
        return
    got = expr.evaluate(row)
    assert type(got) is type(want)
    assert got == want or (isinstance(want, float) and math.isclose(got, want))


_ROWS = st.fixed_dictionaries({k: st.integers(-50, 50) for k in "abc"})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arithmetic(), _ROWS)
def test_random_arithmetic_agrees_with_python(case: tuple[str, Any], row: dict[str, int]) -> None:
    _check(case[0], case[1], row)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(comparison(), _ROWS)
def test_random_comparisons_agree_with_python(case: tuple[str, Any], row: dict[str, int]) -> None:
    _check(case[0], case[1], row)


_TOKENS = st.sampled_from(["a", "b", "1", "2.5", "'s'", "(", ")", "[", "]", ",", "+", "-", "*",
                           "/", "//", "%", "**", "<", "==", " and ", " or ", " not ", " if ",
                           " else ", " in ", ".", "row", "\r", "\r\n", ".c", "\x0c", "[", "'x'", "lambda", ":", "len(",
                           "matches(", "exec(", "__import__", "{", "}", "\n", " ", "is", "None"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=120), st.lists(_TOKENS, max_size=40).map("".join)))
def test_garbage_never_raises_anything_but_syntax_errors(text: str) -> None:
    try:
        expr = compile_expression(text)
    except ExpressionSyntaxError:
        return
    # Whatever compiles evaluates to a value or to an ExpressionEvalError, nothing else.
    try:
        expr.evaluate({"a": 1, "b": "x", "row": 2})
    except ExpressionEvalError:
        pass


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet="()[]-+not a1'\\.", min_size=3000, max_size=4000))
def test_long_garbage_is_bounded(text: str) -> None:
    started = time.perf_counter()
    try:
        compile_expression(text)
    except ExpressionSyntaxError:
        pass
    assert time.perf_counter() - started < 2.0


def test_no_eval_exec_or_compile_in_the_implementation() -> None:
    forbidden = {"eval", "exec", "compile", "__import__"}
    for module in (expressions, expression_compiler, expression_functions):
        tree = ast.parse(Path(module.__file__).read_text())
        called = {node.func.id for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert not called & forbidden, module.__name__


def test_ordering_a_decimal_nan_is_an_evaluation_error_not_a_crash() -> None:
    """Sources produce Decimals; ordering Decimal('NaN') raises InvalidOperation in Python."""
    from decimal import Decimal

    from governance_pipeline.engine.expressions import ExpressionEvalError, compile_expression

    expr = compile_expression("amount > 1")
    assert expr.evaluate({"amount": Decimal("2.5")}) is True
    with pytest.raises(ExpressionEvalError, match="NaN"):
        expr.evaluate({"amount": Decimal("NaN")})


# --- RE2: linear-time patterns, refused constructs (GP-EXPR-003) ---------------------------------
@pytest.mark.timeout(10)
def test_overlapping_alternation_matches_in_linear_time() -> None:
    # Under Python's backtracking `re` this search does not finish; RE2 answers at once.
    expr = compile_expression("matches(text, '(a|aa)+$')")
    assert expr.evaluate({"text": "a" * 40 + "b"}) is False
    assert expr.evaluate({"text": "a" * 40}) is True
    nested = compile_expression(r"matches(text, '(\\w+\\s?)*x')")
    assert nested.evaluate({"text": "word " * 1_000 + "!"}) is False
    assert nested.evaluate({"text": "word " * 1_000 + "x"}) is True


PATTERN_REFUSED = [
    ("matches(code, '(a)\\\\1')", "invalid escape sequence: \\1"),
    ("matches(code, 'a(?=b)')", "invalid perl operator: (?="),
    ("matches(code, '(?<!a)b')", "invalid perl operator: (?<"),
    ("matches(code, '" + "a" * 1001 + "')", "at most 1000 are allowed"),
    ("matches(code, '[')", "missing ]"),
]


@pytest.mark.parametrize(("text", "fragment"), PATTERN_REFUSED, ids=[p[1] for p in PATTERN_REFUSED])
def test_patterns_re2_refuses_are_refused_at_compile_time(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    err = info.value
    assert err.code.code == "GP-EXPR-003" and err.exit_code is ExitCode.INVALID_INPUT
    assert fragment in err.reason
    assert (err.line, err.column) == (1, text.index("'") + 1)
    assert pickle.loads(pickle.dumps(err)).code.code == "GP-EXPR-003"


def test_the_same_patterns_without_the_refused_constructs_compile() -> None:
    assert compile_expression("matches(code, '(a)a')").evaluate({"code": "aa"}) is True
    assert compile_expression("matches(code, 'ab')").evaluate({"code": "xab"}) is True
    assert compile_expression("matches(code, '" + "a" * 1000 + "')").evaluate(
        {"code": "a" * 1000}) is True


# --- integers RFC 8785 cannot hash exactly (GP-EXPR-004) -------------------------------------------
@pytest.mark.parametrize(("text", "row", "at"), [
    ("x * 2", {"x": 2**52}, "*"),
    ("x + 1", {"x": 2**53 - 1}, "+"),
    ("-x - 1", {"x": 2**53 - 1}, "- 1"),
    ("int(f)", {"f": 1e300}, "int"),
    ("round(f)", {"f": -1e20}, "round"),
])
def test_integer_results_beyond_2_53_fail_the_row(text: str, row: dict[str, Any],
                                                  at: str) -> None:
    with pytest.raises(ExpressionEvalError) as info:
        compile_expression(text).evaluate(row)
    err = info.value
    assert err.code.code == "GP-EXPR-004" and "beyond ±(2**53 - 1)" in err.reason
    assert (err.line, err.column) == (1, _col(text, at))


def test_integer_results_up_to_2_53_are_kept() -> None:
    assert compile_expression("x * 2 - 1").evaluate({"x": 2**52 - 1}) == 2**53 - 3
    assert compile_expression("x + x + 1").evaluate({"x": 2**52 - 1}) == 2**53 - 1
    assert compile_expression("0 - x").evaluate({"x": 2**53 - 1}) == -(2**53 - 1)
    assert compile_expression("int(f)").evaluate({"f": 9.0e15}) == 9_000_000_000_000_000


def test_integer_literals_beyond_2_53_are_refused_at_compile_time() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression("amount > 9007199254740992")
    assert info.value.code.code == "GP-EXPR-004"
    assert compile_expression("amount > 9007199254740991").evaluate({"amount": 1}) is False

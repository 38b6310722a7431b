"""The declared row schema: what is coerced (only where meaning cannot change) and what is refused."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.engine.plugin_api import RowError
from governance_pipeline.engine.row_schema import (
    FieldSpec,
    RowErrorCode,
    RowSchema,
    compile_validator,
    validate_row,
)


def one(kind: str, value: Any, **spec: Any) -> Any:
    """Validate a one-field row; the converted value, or the RowError."""
    schema = RowSchema(fields={"f": FieldSpec(type=kind, **spec)})  # type: ignore[arg-type]
    result = validate_row(schema, {"f": value})
    return result if isinstance(result, RowError) else result["f"]


ACCEPTED = [
    ("int", "42", 42), ("int", " 42 ", 42), ("int", "\t-7\n", -7), ("int", "+7", 7),
    ("int", "007", 7), ("int", 42, 42), ("int", 42.0, 42), ("int", -0.0, 0),
    ("int", str(2**53 - 1), 2**53 - 1), ("int", -(2**53 - 1), -(2**53 - 1)),
    ("float", "4.5", 4.5), ("float", "42", 42.0), ("float", 42, 42.0), ("float", " 1e3 ", 1000.0),
    ("float", ".5", 0.5), ("float", "5.", 5.0), ("float", "-2.5E-3", -0.0025), ("float", 4.5, 4.5),
    ("bool", "true", True), ("bool", "TRUE", True), ("bool", "False", False), ("bool", "1", True),
    ("bool", "0", False), ("bool", " true ", True), ("bool", True, True), ("bool", 1, True),
    ("bool", 0, False),
    ("date", "2024-02-29", "2024-02-29"), ("date", " 2024-01-05 ", "2024-01-05"),
    ("date", date(2024, 1, 5), "2024-01-05"),
    ("datetime", "2024-01-05T10:00:00Z", "2024-01-05T10:00:00+00:00"),
    ("datetime", "2024-01-05 10:00", "2024-01-05T10:00:00"),
    ("datetime", "2024-01-05T10:00:00.500", "2024-01-05T10:00:00.500000"),
    ("datetime", "2024-01-05T10:00:00.123456000+0100", "2024-01-05T10:00:00.123456+01:00"),
    ("datetime", datetime(2024, 1, 5, 10, tzinfo=timezone.utc), "2024-01-05T10:00:00+00:00"),
    ("str", "  padded  ", "  padded  "), ("str", "NaN", "NaN"), ("str", "0", "0"),
    ("str", "héllo ✓", "héllo ✓"),
    ("any", {"a": [1, "x", None, 2.5]}, {"a": [1, "x", None, 2.5]}), ("any", " 7 ", " 7 "),
]


@pytest.mark.parametrize(("kind", "value", "expected"), ACCEPTED)
def test_meaning_preserving_coercions_are_accepted(kind: str, value: Any, expected: Any) -> None:
    got = one(kind, value)
    assert got == expected and type(got) is type(expected)
    stable_hash({"f": got})  # every accepted value is canonically hashable


REFUSED = [
    ("int", "4.5", "wrong_type"), ("int", "42.0", "wrong_type"), ("int", "abc", "wrong_type"),
    ("int", "1_000", "wrong_type"), ("int", "٤٢", "wrong_type"), ("int", "0x10", "wrong_type"),
    ("int", "4 2", "wrong_type"), ("int", True, "wrong_type"), ("int", 4.5, "wrong_type"),
    ("int", [1], "wrong_type"), ("int", "NaN", "not_finite"), ("int", "-inf", "not_finite"),
    ("int", math.nan, "not_finite"), ("int", math.inf, "not_finite"),
    ("int", str(2**53), "out_of_range"), ("int", -(2**53), "out_of_range"),
    ("int", "9" * 5000, "out_of_range"), ("int", 1e300, "out_of_range"),
    ("float", "abc", "wrong_type"), ("float", "1,5", "wrong_type"), ("float", "0x1p3", "wrong_type"),
    ("float", "1_0.5", "wrong_type"), ("float", True, "wrong_type"), ("float", "NaN", "not_finite"),
    ("float", "nan", "not_finite"), ("float", "-Infinity", "not_finite"), ("float", "inf", "not_finite"),
    ("float", "1e400", "not_finite"), ("float", math.nan, "not_finite"),
    ("float", -math.inf, "not_finite"), ("float", 2**60, "out_of_range"),
    ("bool", "yes", "wrong_type"), ("bool", "t", "wrong_type"), ("bool", 2, "wrong_type"),
    ("bool", 1.0, "wrong_type"), ("bool", "2", "wrong_type"),
    ("date", "2024-02-30", "wrong_type"), ("date", "20240105", "wrong_type"),
    ("date", "2024-01-05T00:00:00", "wrong_type"), ("date", "2024-W01-1", "wrong_type"),
    ("date", datetime(2024, 1, 5), "wrong_type"), ("date", 20240105, "wrong_type"),
    ("datetime", "2024-01-05", "wrong_type"), ("datetime", "2024-01-05T25:00", "wrong_type"),
    ("datetime", "2024-01-05T10:00:00.1234567Z", "wrong_type"),
    ("datetime", "20240105T100000", "wrong_type"), ("datetime", "2024-01-05T10:00:00,5", "wrong_type"),
    ("datetime", date(2024, 1, 5), "wrong_type"),
    ("str", 42, "wrong_type"), ("str", True, "wrong_type"), ("str", 4.5, "wrong_type"),
    ("str", "\udcff", "bad_encoding"),
    ("any", math.nan, "not_finite"), ("any", [1, [math.inf]], "not_finite"),
    ("any", {"k": 2**60}, "out_of_range"), ("any", {1: "x"}, "wrong_type"),
    ("any", object(), "wrong_type"), ("any", ["\ud800"], "bad_encoding"),
]


@pytest.mark.parametrize(("kind", "value", "code"), REFUSED)
def test_anything_that_would_change_meaning_is_refused(kind: str, value: Any, code: str) -> None:
    got = one(kind, value)
    assert isinstance(got, RowError), f"{value!r} was accepted as {got!r}"
    assert got.code == code, got.reason
    assert "'f'" in got.reason


@pytest.mark.parametrize("kind", ["str", "int", "float", "bool", "date", "datetime", "any"])
@pytest.mark.parametrize("empty", [None, ""])
def test_empty_is_null_never_zero(kind: str, empty: Any) -> None:
    assert one(kind, empty, nullable=True) is None
    refused = one(kind, empty)
    assert isinstance(refused, RowError) and refused.code == "missing_value"
    assert "'f'" in refused.reason and repr(empty) in refused.reason


@pytest.mark.parametrize("kind", ["int", "float", "bool", "date", "datetime"])
def test_blank_padding_around_nothing_is_empty_for_parsed_types(kind: str) -> None:
    assert one(kind, "  \t", nullable=True) is None
    assert one(kind, "  ").code == "missing_value"  # type: ignore[union-attr]


def test_whitespace_is_data_for_text_fields() -> None:
    assert one("str", "   ") == "   "
    assert one("any", "   ") == "   "


def test_missing_required_field_and_absent_optional_field() -> None:
    schema = RowSchema(fields={"a": FieldSpec(type="int"), "b": FieldSpec(required=False)})
    assert validate_row(schema, {"a": "1"}) == {"a": 1}  # absent optional: left out, not null
    assert validate_row(schema, {"a": "1", "b": "x"}) == {"a": 1, "b": "x"}
    refused = validate_row(schema, {"b": "x"})
    assert isinstance(refused, RowError) and refused.code == "missing_field"
    assert "'a'" in refused.reason


def test_extra_fields_are_rejected_or_dropped_as_declared() -> None:
    fields = {"a": FieldSpec()}
    refused = validate_row(RowSchema(fields=fields), {"a": "x", "zz": "surprise"})
    assert isinstance(refused, RowError) and refused.code == "extra_field"
    assert "'zz'" in refused.reason and "'surprise'" in refused.reason
    dropped = validate_row(RowSchema(fields=fields, extra_fields="drop"), {"a": "x", "zz": "s"})
    assert dropped == {"a": "x"}


def test_max_length_counts_characters() -> None:
    assert one("str", "ééé", max_length=3) == "ééé"
    refused = one("str", "éééé", max_length=3)
    assert isinstance(refused, RowError) and refused.code == "too_long"


def test_max_field_bytes_counts_utf8_bytes_for_every_type() -> None:
    schema = RowSchema(fields={"s": FieldSpec(), "n": FieldSpec(type="int")}, max_field_bytes=4)
    assert validate_row(schema, {"s": "éé", "n": "1234"}) == {"s": "éé", "n": 1234}
    for row in ({"s": "ééé", "n": "1"}, {"s": "abcde", "n": "1"}, {"s": "a", "n": "12345"}):
        refused = validate_row(schema, row)
        assert isinstance(refused, RowError) and refused.code == "oversized_field", row


def test_reasons_name_the_field_and_a_truncated_value() -> None:
    schema = RowSchema(fields={"amount": FieldSpec(type="int")})
    refused = validate_row(schema, {"amount": "x" * 500})
    assert isinstance(refused, RowError) and refused.code == "wrong_type"
    assert "'amount'" in refused.reason
    shown = refused.reason.split(": ")[-1]
    assert shown.startswith("'xxx") and shown.endswith("…") and len(shown) == 80


def test_first_problem_in_declared_order_is_reported() -> None:
    schema = RowSchema(fields={"a": FieldSpec(type="int"), "b": FieldSpec(type="bool")})
    refused = validate_row(schema, {"a": "1.5", "b": "maybe"})
    assert isinstance(refused, RowError) and "'a'" in refused.reason


def test_without_a_schema_rows_pass_as_read_but_must_be_hashable() -> None:
    row = {"a": "1", "b": 2, "c": [1.5, {"d": None}], "e": True}
    assert validate_row(None, row) == row
    cases = [({"a": math.nan}, "not_finite"), ({"a": [1, {"b": math.inf}]}, "not_finite"),
             ({"a": 2**53}, "out_of_range"), ({"a": "\udcff"}, "bad_encoding"),
             ({"\udcff": "x"}, "bad_encoding"), ({"a": "x" * 65_537}, "oversized_field"),
             ({"a": "é" * 40_000}, "oversized_field"), ({1: "x"}, "malformed"),
             ({"a": date(2024, 1, 1)}, "wrong_type")]
    for values, code in cases:
        refused = validate_row(None, values)
        assert isinstance(refused, RowError) and refused.code == code, (values, refused)
    assert validate_row(None, {"a": "x" * 65_536}) == {"a": "x" * 65_536}


def test_schema_models_forbid_unknown_keys_and_bad_combinations() -> None:
    with pytest.raises(ValidationError, match="extra"):
        RowSchema.model_validate({"fields": {"a": {}}, "strict": True})
    with pytest.raises(ValidationError, match="extra"):
        RowSchema.model_validate({"fields": {"a": {"type": "int", "min": 0}}})
    with pytest.raises(ValidationError, match="max_length applies to str"):
        FieldSpec(type="int", max_length=3)
    with pytest.raises(ValidationError):
        RowSchema.model_validate({"fields": {}})
    with pytest.raises(ValidationError):
        RowSchema.model_validate({"fields": {"a": {"type": "decimal"}}})
    with pytest.raises(ValidationError):
        RowSchema.model_validate({"fields": {"a": {}}, "max_field_bytes": 0})


def test_validator_is_compiled_once_and_schema_is_frozen() -> None:
    schema = RowSchema(fields={"a": FieldSpec(type="int")})
    assert schema.validator() is schema.validator() is compile_validator(schema)
    with pytest.raises(ValidationError):
        schema.extra_fields = "drop"  # type: ignore[misc]


def test_error_codes_are_the_documented_stable_set() -> None:
    assert {c.value for c in RowErrorCode} == {
        "bad_encoding", "malformed", "missing_field", "extra_field", "missing_value", "wrong_type",
        "not_finite", "out_of_range", "too_long", "oversized_field", "too_many_fields", "too_deep"}


@given(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_integer_text_round_trips_exactly(number: int) -> None:
    assert one("int", str(number)) == number
    assert one("float", str(number)) == float(number)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips_exactly(number: float) -> None:
    got = one("float", repr(number))
    assert got == number and math.copysign(1, got) == math.copysign(1, number)


@given(st.text(max_size=20))
def test_int_fields_accept_text_only_when_python_reads_the_same_integer(text: str) -> None:
    got = one("int", text, nullable=True)
    if isinstance(got, int):
        assert got == int(text) and "_" not in text

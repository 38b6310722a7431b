"""Canonical JSON is RFC 8785, byte for byte, whichever path (orjson fast path or rfc8785) runs.

The fast path is trusted only because these properties hold: for every value it accepts, its bytes
equal ``rfc8785.dumps``. A divergence found here is fixed by narrowing the fast path, never by
loosening a test.
"""

from __future__ import annotations

import hashlib
import math

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts import hashing
from governance_pipeline.contracts.errors import CanonicalizationError
from governance_pipeline.contracts.hashing import canonical_json, stable_hash

SAFE = 2**53 - 1

# Characters where encoders differ: controls (escaping), U+2028/9, U+E000+ (code-point vs UTF-16
# key order), astral planes (surrogate pairs in UTF-16), and everything else.
chars = st.one_of(
    st.characters(max_codepoint=0x1F),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
    st.sampled_from(["\u2028", "\u2029", "\ufeff", '"', "\\", "/"]),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
    st.characters(exclude_categories=("Cs",)),
)
texts = st.text(chars, max_size=12)
ascii_keys = st.text(st.characters(max_codepoint=0x7F), max_size=10)

special_floats = st.sampled_from([
    0.0, -0.0, 1.0, -1.0, 0.1, 1e-5, 9.99e-6, 1e-6, 1.5e-6, 9.999999999e-7, 1e-7, 5e-324,
    2.2250738585072014e-308, 1e15, 123456789.125, 1e16, 1e21, 1e22, 1.5e300,
    1.7976931348623157e308, 4503599627370495.5, float(2**53), -123.0, 1e-300,
])
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    special_floats,
    st.integers(-(10**6), 10**6).map(float),  # integral floats
    st.builds(lambda m, e: m * 10.0**e, st.floats(-10, 10, allow_nan=False), st.integers(-12, 25)),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-SAFE, SAFE), floats, texts)


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=25,
    )


any_keys = st.one_of(texts, ascii_keys)

PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(json_values(any_keys))
@example({"\ue000": 1, "\U0001f600": 2})
@example([1e-6, 9.99e-6, -0.0, 1.0, 1e21, 5e-324, "\u2028\x00\x7f"])
def test_canonical_json_is_byte_identical_to_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@PROPERTY
@given(json_values(ascii_keys))
def test_every_value_the_fast_path_accepts_gets_rfc8785_bytes(value: object) -> None:
    # Generated to land on the fast path often (ASCII keys); checked only where it does.
    if hashing._fast_path_ok(value):
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)
    assert canonical_json(value) == rfc8785.dumps(value)


def test_typical_rows_take_the_fast_path() -> None:
    row = {"id": 7, "name": "Zoë", "amount": 12.34, "active": True, "tags": ["a", "b"],
           "nested": {"x": None, "ratio": 0.5}}
    assert hashing._fast_path_ok(row)
    assert canonical_json(row) == rfc8785.dumps(row)


@pytest.mark.parametrize("value", [
    1e-6, 9.99e-6, 1.5e-6, -2.5e-6,  # orjson writes exponent notation here, RFC 8785 does not
    1.0, -0.0, 1e16, 1e21,  # integral floats: RFC 8785 writes no fraction
    {"é": 1}, {"\ue000": 1, "\U0001f600": 2},  # non-ASCII keys: UTF-16 order
])
def test_values_where_orjson_differs_are_kept_off_the_fast_path(value: object) -> None:
    assert not hashing._fast_path_ok(value)
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), 1e-5, 0.5, [{"a": "\x00"}]])
def test_boundary_values_on_the_fast_path_match_rfc8785(value: object) -> None:
    assert hashing._fast_path_ok(value)
    assert canonical_json(value) == rfc8785.dumps(value)


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, which sorts before U+E000.
    assert canonical_json({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()


@pytest.mark.parametrize("bad", [
    math.nan, math.inf, -math.inf, [1, math.nan], {"a": {"b": -math.inf}},
    2**53, -(2**53), 2**64, [0, 2**53], {"n": -(2**63)},
])
def test_nan_infinity_and_unsafe_integers_are_refused_not_coerced(bad: object) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonical_json(bad)
    assert info.value.code.code == "GP-HASH-001"
    with pytest.raises(CanonicalizationError):
        stable_hash(bad)


@settings(max_examples=100, deadline=None)
@given(st.recursive(
    st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
              st.integers(min_value=2**53, max_value=2**70).flatmap(
                  lambda n: st.sampled_from([n, -n]))),
    lambda inner: st.lists(inner, min_size=1, max_size=3).flatmap(
        lambda items: st.sampled_from([items, {"k": items}, [0, {"é": items}]])),
    max_leaves=5))
def test_a_non_json_number_anywhere_is_refused(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(bad)


def test_non_string_keys_and_unknown_types_are_refused() -> None:
    for bad in ({1: "a"}, {"a": b"bytes"}, {"a": object()}, "\ud800"):
        with pytest.raises(CanonicalizationError) as info:
            canonical_json(bad)
        assert info.value.code.code == "GP-HASH-001"


@PROPERTY
@given(json_values(any_keys))
def test_stable_hash_is_sha256_hex_of_the_canonical_bytes(value: object) -> None:
    digest = stable_hash(value)
    assert digest == hashlib.sha256(rfc8785.dumps(value)).hexdigest()
    assert len(digest) == 64 and digest == digest.lower()


@PROPERTY
@given(st.dictionaries(any_keys, json_values(any_keys), min_size=2, max_size=8).flatmap(
    lambda d: st.tuples(st.just(d), st.permutations(list(d.items())))))
def test_key_order_does_not_change_the_bytes_or_the_hash(case: tuple[dict, list]) -> None:
    original, shuffled_items = case
    shuffled = dict(shuffled_items)
    assert canonical_json(shuffled) == canonical_json(original)
    assert stable_hash(shuffled) == stable_hash(original)


def test_different_values_hash_differently() -> None:
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert stable_hash([1, 2]) != stable_hash([2, 1])
    assert stable_hash({"a": 1.5}) != stable_hash({"a": "1.5"})

"""Canonical JSON (RFC 8785) and SHA-256 content hashes.

``rfc8785`` is the reference implementation. Canonicalisation is the hottest path of the product,
so values made only of the types a row usually holds take a fast path through ``orjson`` that is
byte-identical to RFC 8785 for exactly those types (property-tested against ``rfc8785`` in
``test_hashing.py``); anything else goes to ``rfc8785``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson
import rfc8785

from governance_pipeline.contracts.errors import CanonicalizationError

#: Stored on every run so a future change of canonical form can never be mistaken for tampering.
CANONICAL_VERSION = "sha256-rfc8785-v1"

_SAFE_INT = 2**53  # RFC 8785 / I-JSON: integers must be exactly representable as doubles.
_ORJSON_OPTS = orjson.OPT_SORT_KEYS


def _fast_path_ok(value: Any) -> bool:
    """True when orjson with sorted keys produces exactly the RFC 8785 bytes for ``value``.

    orjson sorts keys by code point while RFC 8785 sorts by UTF-16 code unit (they differ only
    above U+E000, so keys are limited to ASCII); it writes integral floats as ``1.0`` where RFC 8785
    writes ``1`` and ``-0.0`` where it writes ``0``, so integral floats are excluded.
    """
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if -_SAFE_INT < v < _SAFE_INT:
                continue
            return False
        if t is float:
            if math.isfinite(v) and not v.is_integer():
                continue
            return False
        if t is dict:
            for k in v:
                if type(k) is not str or not k.isascii():
                    return False
            stack.extend(v.values())
            continue
        if t is list or t is tuple:
            stack.extend(v)
            continue
        return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of ``value``; NaN, infinities and unsafe integers are refused."""
    if _fast_path_ok(value):
        try:
            return orjson.dumps(value, option=_ORJSON_OPTS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: let the reference implementation give the precise error
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, OverflowError) as exc:
        raise CanonicalizationError(f"cannot canonicalise value: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

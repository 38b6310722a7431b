"""Canonical JSON (RFC 8785) and SHA-256 content hashes.

``rfc8785`` is the reference implementation. Canonicalisation is the hottest path of the product,
so values made only of the types a row usually holds take a fast path through ``orjson`` that is
byte-identical to RFC 8785 for exactly those types (property-tested against ``rfc8785`` in
``test_hashing.py``); anything else goes to ``rfc8785``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import rfc8785

from governance_pipeline.contracts.errors import CanonicalizationError

#: Stored on every run so a future change of canonical form can never be mistaken for tampering.
CANONICAL_VERSION = "sha256-rfc8785-v1"

_SAFE_INT = 2**53  # RFC 8785 / I-JSON: integers must be exactly representable as doubles.
_ORJSON_OPTS = orjson.OPT_SORT_KEYS
# orjson and ECMAScript agree on a float's digits but not on where exponent notation starts:
# orjson writes 9.99e-6 where RFC 8785 writes 0.00000999 (ECMAScript switches below 1e-6, orjson
# below 1e-5). Non-integral floats are far below 1e15, where both write plain decimals.
_FLOAT_FAST_MIN = 1e-5
_FLOAT_FAST_MAX = 1e15
_PLAIN = frozenset({str, bool, type(None)})


def _fast_path_ok(value: Any) -> bool:
    """True when orjson with sorted keys produces exactly the RFC 8785 bytes for ``value``.

    Only exact built-in types qualify (subclasses such as enums go to ``rfc8785``). orjson sorts
    keys by code point while RFC 8785 sorts by UTF-16 code unit (they differ only above U+E000),
    so keys are limited to ASCII; orjson writes integral floats as ``1.0`` where RFC 8785 writes
    ``1`` and ``-0.0`` where it writes ``0``, so integral floats are excluded, and so are floats
    outside the range where both use plain decimal notation.
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        v = pop()
        t = type(v)
        if t is dict:
            for k, item in v.items():
                if type(k) is not str or not k.isascii():
                    return False
                ti = type(item)
                if ti in _PLAIN:
                    continue
                if ti is int:
                    if not -_SAFE_INT < item < _SAFE_INT:
                        return False
                elif ti is float:
                    if not _FLOAT_FAST_MIN <= abs(item) < _FLOAT_FAST_MAX or item.is_integer():
                        return False
                else:
                    push(item)
        elif t is list or t is tuple:
            stack.extend(v)
        elif t in _PLAIN:
            continue
        elif t is int:
            if not -_SAFE_INT < v < _SAFE_INT:
                return False
        elif t is float:
            if not _FLOAT_FAST_MIN <= abs(v) < _FLOAT_FAST_MAX or v.is_integer():
                return False
        else:
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
    except RecursionError:  # the reference implementation recurses once per nesting level
        raise CanonicalizationError("cannot canonicalise value: nested too deeply") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks: a pipeline, policy or module file as
    the run read it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


"""Verified reads from the content-addressed payload store.

A payload's key is the SHA-256 of its bytes, so every read can prove itself: the bytes are
returned only when they hash to the key they were asked for. A payload that is missing, or
whose bytes or recorded size no longer match, raises ``AuditIntegrityError`` with the
``PAYLOAD_CORRUPT`` code — a changed payload would otherwise change what ``explain`` and the
evidence bundles say about a row without anything noticing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select

from governance_pipeline.contracts.errors import PAYLOAD_CORRUPT, AuditIntegrityError
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import Payload
from governance_pipeline.landscape.queries import Source, reading
from governance_pipeline.landscape.schema import payloads


def _corrupt(content_hash: str, why: str, **extra: Any) -> AuditIntegrityError:
    return AuditIntegrityError(f"payload {content_hash}: {why}", code=PAYLOAD_CORRUPT,
                               details={"content_hash": content_hash, **extra})


def load_payload(source: Source, content_hash: str) -> bytes:
    """The stored bytes of ``content_hash``, after checking they hash to it."""
    with reading(source) as conn:
        row = conn.execute(select(payloads).where(payloads.c.content_hash == content_hash)
                           ).mappings().first()
    return verified(content_hash, row)


def verified(content_hash: str, row: Mapping[str, Any] | None) -> bytes:
    """The bytes of a ``payloads`` row read for ``content_hash`` (None: no such row), checked.

    For callers that join payloads into a larger query instead of reading them one by one.
    """
    if row is None:
        raise _corrupt(content_hash, "missing from the payload store", reason="missing")
    payload = Payload.from_row(row)
    actual = sha256_hex(payload.data)
    if actual != content_hash:
        raise _corrupt(content_hash, f"stored bytes hash to {actual}", reason="hash_mismatch",
                       actual_hash=actual)
    if payload.size_bytes != len(payload.data):
        raise _corrupt(content_hash, f"recorded size {payload.size_bytes} but "
                       f"{len(payload.data)} bytes stored", reason="size_mismatch")
    return payload.data


def load_json_payload(source: Source, content_hash: str) -> Any:
    """The verified payload parsed as JSON (payloads stored by ``UnitOfWork.payload``)."""
    data = load_payload(source, content_hash)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # The bytes are intact (they hash to their key), so this is not a corrupt store but a
        # record pointing a JSON reader at raw bytes.
        raise AuditIntegrityError(f"payload {content_hash} is not JSON: {exc}",
                                  details={"content_hash": content_hash}) from exc

"""Verified reads from the content-addressed payload store.

A payload's key is the SHA-256 of its bytes, so every read can prove itself: the bytes are
returned only when they hash to the key they were asked for. A payload that is missing, or
whose bytes or recorded size no longer match, raises ``AuditIntegrityError`` with the
``PAYLOAD_CORRUPT`` code — a changed payload would otherwise change what ``explain`` and the
evidence bundles say about a row without anything noticing.

A sealed payload (``key_id`` set, see ``sealing.py``) is decrypted first and then checked the
same way. A payload whose contents were removed on purpose — purged past retention, or erased by
destroying its subject's key — raises ``PayloadRedacted`` naming the purge or erasure: not an
integrity failure, and never confused with one (contents missing without such a record are).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from governance_pipeline.contracts.errors import (
    PAYLOAD_CORRUPT,
    PAYLOAD_REDACTED,
    AuditIntegrityError,
    GovernanceError,
)
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import Payload
from governance_pipeline.landscape.reader import ConnectionReader, Reader, as_reader

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from governance_pipeline.landscape.queries import Source
    from governance_pipeline.landscape.sealing import PayloadProtection

# Plain SQL (reader.py), so that explain's direct readers verify payloads with these same reads.
PAYLOAD = "SELECT * FROM payloads WHERE content_hash = :content_hash"
LIVE_KEY = "SELECT key_id FROM subject_keys WHERE key_id = :key_id"
KEY_ERASURE = ("SELECT erasures.erasure_id, erasures.created_at, erasures.reason, "
               "erasures.key_ids_json FROM erasures "
               "JOIN subject_keys ON subject_keys.erasure_id = erasures.erasure_id "
               "WHERE subject_keys.key_id = :key_id AND subject_keys.wrapped_key IS NULL")
REDACTION = "SELECT * FROM payload_redactions WHERE content_hash = :content_hash"
ERASURE_REASON = "SELECT reason FROM erasures WHERE erasure_id = :event_id"
PURGE_REASON = "SELECT reason FROM purges WHERE purge_id = :event_id"


@dataclass(frozen=True, slots=True)
class Redaction:
    """Why a payload has no contents: ``purged`` or ``erased``, by which event, when, why."""

    action: str
    event_id: str
    at: str
    reason: str | None

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.action} on {self.at[:10]}{why}"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.action, "event_id": self.event_id, "at": self.at,
                "reason": self.reason, "note": self.describe()}


class PayloadRedacted(GovernanceError):
    default_code = PAYLOAD_REDACTED

    def __init__(self, content_hash: str, redaction: Redaction) -> None:
        super().__init__(f"payload {content_hash}: {redaction.describe()} "
                         f"({redaction.event_id})",
                         details={"content_hash": content_hash, **redaction.as_dict()})
        self.redaction = redaction


def _corrupt(content_hash: str, why: str, **extra: Any) -> AuditIntegrityError:
    return AuditIntegrityError(f"payload {content_hash}: {why}", code=PAYLOAD_CORRUPT,
                               details={"content_hash": content_hash, **extra})


def protection_of(source: Source | Reader) -> PayloadProtection | None:
    if isinstance(source, Reader):
        return None
    from governance_pipeline.landscape.store import Landscape

    return source.protection if isinstance(source, Landscape) else None


def load_payload(source: Source | Reader, content_hash: str,
                 protection: PayloadProtection | None = None) -> bytes:
    """The stored bytes of ``content_hash``, after checking they hash to it."""
    protection = protection or protection_of(source)
    if isinstance(source, Reader):
        return _fetch(source, content_hash, protection)
    from governance_pipeline.landscape.queries import reading

    with reading(source) as conn:
        return _fetch(ConnectionReader(conn), content_hash, protection)


def _fetch(reader: Reader, content_hash: str, protection: PayloadProtection | None) -> bytes:
    row = reader.first(PAYLOAD, {"content_hash": content_hash})
    return verified(content_hash, row, conn=reader, protection=protection)


def verified(content_hash: str, row: Mapping[str, Any] | None, *,
             conn: Connection | Reader | None = None,
             protection: PayloadProtection | None = None) -> bytes:
    """The bytes of a ``payloads`` row read for ``content_hash`` (None: no such row), checked.

    For callers that join payloads into a larger query instead of reading them one by one.
    ``conn`` and ``protection`` are needed to open a sealed payload and to name a redaction.
    """
    if row is None:
        raise _corrupt(content_hash, "missing from the payload store", reason="missing")
    reader = None if conn is None else as_reader(conn)
    payload = Payload.from_row(row)
    data = payload.data
    key_id = row.get("key_id")
    if not data and reader is not None:  # purged (or a row's clear payload erased)?
        redaction = redaction_of(reader, content_hash)
        if redaction is not None:
            raise PayloadRedacted(content_hash, redaction)
    if key_id is not None:
        data = _open(content_hash, key_id, data, reader, protection)
    actual = sha256_hex(data)
    if actual != content_hash:
        raise _corrupt(content_hash, f"stored bytes hash to {actual}", reason="hash_mismatch",
                       actual_hash=actual)
    if payload.size_bytes != len(data):
        raise _corrupt(content_hash, f"recorded size {payload.size_bytes} but "
                       f"{len(data)} bytes stored", reason="size_mismatch")
    return data


def _open(content_hash: str, key_id: str, stored: bytes, reader: Reader | None,
          protection: PayloadProtection | None) -> bytes:
    if reader is None or protection is None:
        raise _corrupt(content_hash, f"sealed under key {key_id} but read without the "
                       "Landscape's keys", reason="sealed")
    plain = protection.open(reader, key_id, content_hash, stored)
    if plain is not None:
        return plain
    redaction = erased_key(reader, key_id)
    if redaction is not None:
        raise PayloadRedacted(content_hash, redaction)
    live = reader.first(LIVE_KEY, {"key_id": key_id})
    why = ("ciphertext does not open under its key: altered" if live is not None
           else f"its data key {key_id} is gone, and no erasure destroyed it")
    raise _corrupt(content_hash, why, reason="sealed_corrupt" if live else "key_missing",
                   key_id=key_id)


def erased_key(conn: Connection | Reader, key_id: str) -> Redaction | None:
    """The erasure that destroyed ``key_id``, if a ledgered erasure did."""
    found = as_reader(conn).first(KEY_ERASURE, {"key_id": key_id})
    if found is None or key_id not in orjson.loads(found["key_ids_json"]):
        return None
    return Redaction("erased", found["erasure_id"], found["created_at"], found["reason"])


def redaction_of(conn: Connection | Reader, content_hash: str) -> Redaction | None:
    """The purge or erasure that removed the contents of a payload stored in clear."""
    reader = as_reader(conn)
    found = reader.first(REDACTION, {"content_hash": content_hash})
    if found is None:
        return None
    reason = None
    if found["action"] == "erased":
        reason = reader.scalar(ERASURE_REASON, {"event_id": found["event_id"]})
    else:
        reason = reader.scalar(PURGE_REASON, {"event_id": found["event_id"]}) \
            or "past retention"
    return Redaction(found["action"], found["event_id"], found["redacted_at"], reason)


def load_json_payload(source: Source | Reader, content_hash: str) -> Any:
    """The verified payload parsed as JSON (payloads stored by ``UnitOfWork.payload``)."""
    data = load_payload(source, content_hash)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # The bytes are intact (they hash to their key), so this is not a corrupt store but a
        # record pointing a JSON reader at raw bytes.
        raise AuditIntegrityError(f"payload {content_hash} is not JSON: {exc}",
                                  details={"content_hash": content_hash}) from exc

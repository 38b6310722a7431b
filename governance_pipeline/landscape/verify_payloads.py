"""The payload checks of ``verify``, with purged and erased payloads as their own categories.

A payload is judged by what it is stored as. In clear: its bytes must hash to its key. Sealed
under a live subject key: it must decrypt (AES-GCM authenticates it, bound to its hash) and the
plaintext hash to its key. Without contents, it is *purged* or *erased* — reported, counted, not
a finding — only when a ledgered record accounts for it: a ``payload_redactions`` row naming an
existing purge or erasure (the ledger covers that row like any other), or, for a sealed payload,
a destroyed key that a ledgered erasure names. Contents missing without such a record, a key
destroyed that no erasure names, or a key row gone are findings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, literal_column, select

from governance_pipeline.landscape.data_keys import KeyUnavailable, open_sealed
from governance_pipeline.landscape.schema import payloads
from governance_pipeline.landscape.schema_data_protection import (
    erasures,
    payload_redactions,
    purges,
    subject_keys,
)
from governance_pipeline.landscape.sealing import PayloadProtection
from governance_pipeline.landscape.verify_chain import PAYLOAD, STREAM, Tally

LISTED = 10_000  # hashes listed per category; the counts are always complete


@dataclass
class Redacted:
    """Payloads whose contents were removed on purpose, by category and event."""

    hashes: dict[str, list[str]] = field(default_factory=lambda: {"purged": [], "erased": []})
    counts: dict[str, int] = field(default_factory=lambda: {"purged": 0, "erased": 0})
    by_event: dict[str, int] = field(default_factory=dict)

    def add(self, action: str, content_hash: str, event_id: str) -> None:
        self.counts[action] += 1
        if len(self.hashes[action]) < LISTED:
            self.hashes[action].append(content_hash)
        self.by_event[event_id] = self.by_event.get(event_id, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {action: {"count": self.counts[action], "content_hashes": self.hashes[action],
                         "listed_all": self.counts[action] <= LISTED}
                for action in ("purged", "erased")} | {"by_event": dict(self.by_event)}


class PayloadJudge:
    """Judges payload rows read with ``columns()``; findings go to the shared ``Tally``."""

    def __init__(self, conn: Connection, state: Tally,
                 protection: PayloadProtection | None) -> None:
        self.state = state
        self.protection = protection
        self.redacted = Redacted()
        self.purge_ids = set(conn.execute(select(purges.c.purge_id)).scalars())
        self.erased_keys: dict[str, set[str]] = {}
        for erasure_id, key_ids in conn.execute(select(erasures.c.erasure_id,
                                                       erasures.c.key_ids_json)):
            self.erased_keys[erasure_id] = set(orjson.loads(key_ids))

    @staticmethod
    def columns() -> list[Any]:
        # Untyped columns (no result processing): a retyped column must become a finding.
        return [*(literal_column(f"payloads.{c}").label(c)
                  for c in ("content_hash", "size_bytes", "data")),
                payloads.c.key_id.label("key_id"), payload_redactions.c.action.label("action"),
                payload_redactions.c.event_id.label("event_id"),
                subject_keys.c.key_id.label("key_found"),
                subject_keys.c.wrapped_key.label("wrapped_key"),
                subject_keys.c.erasure_id.label("key_erasure")]

    @staticmethod
    def joined(base: Any) -> Any:
        return (base.outerjoin(payload_redactions,
                               payload_redactions.c.content_hash == payloads.c.content_hash)
                .outerjoin(subject_keys, subject_keys.c.key_id == payloads.c.key_id))

    def check_all(self, conn: Connection) -> None:
        query = select(*self.columns()).select_from(self.joined(payloads))
        self.judge_all(conn.execution_options(yield_per=STREAM).execute(query), None)

    def judge_all(self, result: Any, scope: str | None) -> None:
        """Judge every row of ``result`` (``columns()``, and ``ref`` when joined from refs).

        A payload in clear whose bytes hash to its key and whose size is right is counted
        straight from the row; any other goes through ``judge``."""
        names = list(result.keys())
        at = {name: names.index(name) for name in ("content_hash", "size_bytes", "data",
                                                     "key_id")}
        i_hash, i_size, i_data, i_key = (at["content_hash"], at["size_bytes"], at["data"],
                                         at["key_id"])
        sha256, state = hashlib.sha256, self.state
        for rows in result.partitions(STREAM):
            for row in rows:
                data = row[i_data]
                if (row[i_key] is None and type(data) is bytes and data
                        and row[i_size] == len(data)
                        and sha256(data).hexdigest() == row[i_hash]):
                    state.payloads += 1
                elif row[i_hash] is None:  # the outer join found no payload for the ref
                    state.add(PAYLOAD, "payloads", str(row._mapping["ref"]),
                              "missing: a record of this scope references a payload that is "
                              "not stored", scope)
                else:
                    self.judge(row._mapping, scope)

    def judge(self, row: Any, scope: str | None) -> None:
        state = self.state
        state.payloads += 1
        content_hash = str(row["content_hash"])
        if not isinstance(row["data"], (bytes, bytearray, memoryview)):
            state.add(PAYLOAD, "payloads", content_hash,
                      f"corrupt: the stored data is {type(row['data']).__name__}, not bytes", scope)
            return
        data = bytes(row["data"])
        if not data and row["action"] is not None and self._accounted(row):
            self.redacted.add(str(row["action"]), content_hash, str(row["event_id"]))
            return
        if row["key_id"] is not None:
            opened = self._open(row, data, scope)
            if opened is None:
                return
            data = opened
        elif not data and row["size_bytes"]:
            state.add(PAYLOAD, "payloads", content_hash,
                      "contents missing: the payload is empty and no purge or erasure record "
                      "accounts for it", scope)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest != content_hash:
            state.add(PAYLOAD, "payloads", content_hash,
                      "corrupt: the stored bytes no longer hash to the payload's content hash",
                      scope, actual=digest)
        elif row["size_bytes"] != len(data):
            state.add(PAYLOAD, "payloads", content_hash,
                      f"size altered: size_bytes says {row['size_bytes']}, data holds {len(data)}",
                      scope)

    def _accounted(self, row: Any) -> bool:
        event_id = str(row["event_id"])
        if row["action"] == "purged":
            return event_id in self.purge_ids
        return event_id in self.erased_keys

    def _open(self, row: Any, stored: bytes, scope: str | None) -> bytes | None:
        """The plaintext of a sealed payload, or None once it has been judged otherwise."""
        content_hash, key_id = str(row["content_hash"]), str(row["key_id"])
        if row["key_found"] is None:
            self.state.add(PAYLOAD, "payloads", content_hash,
                           f"data key {key_id} is missing: deleted, and no erasure destroyed it",
                           scope, key_id=key_id)
            return None
        if row["wrapped_key"] is None:
            erasure = row["key_erasure"]
            if erasure in self.erased_keys and key_id in self.erased_keys[erasure]:
                self.redacted.add("erased", content_hash, str(erasure))
            else:
                self.state.add(PAYLOAD, "payloads", content_hash,
                               f"data key {key_id} was destroyed, but no erasure record names "
                               "it", scope, key_id=key_id, erasure_id=erasure)
            return None
        if self.protection is None:
            return None  # not checkable here (no keys): counted, not judged
        try:
            dek = self.protection.keyring.unwrap(key_id, bytes(row["wrapped_key"]))
        except KeyUnavailable as exc:
            self.state.add(PAYLOAD, "payloads", content_hash, f"corrupt: {exc.message}", scope,
                           key_id=key_id)
            return None
        plain = open_sealed(dek, content_hash, stored)
        if plain is None:
            self.state.add(PAYLOAD, "payloads", content_hash,
                           "corrupt: the ciphertext does not authenticate under its data key",
                           scope, key_id=key_id)
        return plain

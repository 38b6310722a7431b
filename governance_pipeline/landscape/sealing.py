"""Per-subject encryption of payloads: sealed when a unit of work commits, opened when read.

A payload whose JSON object holds a declared subject field (``subject_fields:`` in the
pipeline) is stored as AES-256-GCM ciphertext under the data key of its *subject*: the values of
all declared subject fields it holds. Keys are per subject, not per row, because payloads are
content-addressed: identical bytes are stored once, and identical bytes necessarily name the same
subject, so one stored copy under one key is always consistent — a per-row key would leave a
payload shared by two rows readable under the other row's key after one of them was erased.

Inside the audit transaction (so that an erasure committing meanwhile cannot be missed: on
PostgreSQL the live keys are read ``FOR SHARE``), the sealer finds each subject's live key, makes
and wraps a new one when there is none, indexes the subject's field values by keyed HMAC, and
encrypts. Unwrapped keys are cached in memory per process (bounded) for the run's next chunks.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from governance_pipeline.landscape.reader import Reader, as_reader

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from sqlalchemy import Connection

    from governance_pipeline.landscape.data_keys import Keyring

# The sealing side (at commit) imports SQLAlchemy and the tables where it uses them, and the
# keys (cryptography) are imported when one is first used: the opening side reads one plain
# statement, so explain's direct readers open sealed payloads with it too, and a row with no
# sealed payload costs no cryptography import.
DATA_KEY = "SELECT wrapped_key FROM subject_keys WHERE key_id = :key_id"

Subject = tuple[tuple[str, str], ...]  # ((field, value as text), ...) in declared order
PayloadRow = tuple[str, int, bytes, str, str | None]
_IN_BATCH = 500
_CACHE_LIMIT = 50_000


def subject_text(value: Any) -> str:
    """A subject value as the index compares it: strings as they are, anything else as JSON
    (so ``--value 42`` finds the integer 42 and the string "42" alike)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def subject_of(fields: Sequence[str], value: Any) -> Subject | None:
    """The subject a payload names, or None (not an object, or no declared field set)."""
    if type(value) is not dict:
        return None
    found = tuple((f, subject_text(v)) for f in fields if (v := value.get(f)) is not None)
    return found or None


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _IN_BATCH):
        yield items[i:i + _IN_BATCH]


def _insert_ignoring_conflicts(conn: Connection, table: Any, rows: list[dict[str, Any]],
                               **conflict: Any) -> None:
    if not rows:
        return
    if conn.dialect.name not in ("sqlite", "postgresql"):
        # other dialects: no concurrent writers supported, plain insert
        conn.execute(table.insert(), rows)
        return
    # The connection's own dialect only: importing the other one would cost every command that
    # opens a Landscape (PostgreSQL's dialect, for a SQLite file) its import time.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
    conn.execute(dialect.insert(table).on_conflict_do_nothing(**conflict), rows)


class PayloadProtection:
    """The sealing and opening of subject payloads for one Landscape (keys under ``keys_dir``)."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._deks: dict[str, bytes] = {}  # key_id -> unwrapped data key
        self._ciphers: dict[str, AESGCM] = {}  # key_id -> its AES-GCM instance (for sealing)
        # Per process, so that a run's chunks do not recompute or re-insert what is known.
        self._hmacs: dict[tuple[str, ...], str] = {}
        self._indexed: set[tuple[str, str, str]] = set()
        self._pending_index: list[tuple[str, str, str]] = []

    @cached_property
    def keyring(self) -> Keyring:
        from governance_pipeline.landscape.data_keys import load_or_create_keyring

        return load_or_create_keyring(self.keys_dir)

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop destroyed keys from this process's memory (erasure calls it)."""
        for key_id in key_ids:
            self._deks.pop(key_id, None)
            self._ciphers.pop(key_id, None)

    def _remember(self, key_id: str, dek: bytes) -> None:
        if len(self._deks) >= _CACHE_LIMIT:
            self._deks.clear()
            self._ciphers.clear()
        self._deks[key_id] = dek

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            cipher = self._ciphers[key_id] = AESGCM(self._deks[key_id])
        return cipher

    def _hmac(self, *parts: str) -> str:
        found = self._hmacs.get(parts)
        if found is None:
            if len(self._hmacs) >= _CACHE_LIMIT:
                self._hmacs.clear()
            found = self._hmacs[parts] = self.keyring.hmac(*parts)
        return found

    # -- sealing at commit -----------------------------------------------------------------------
    def subject_hmac(self, subject: Subject) -> str:
        return self._hmac("subject", *(p for pair in subject for p in pair))

    def value_hmac(self, field: str, value: str) -> str:
        return self._hmac("field", field, value)

    def seal_rows(self, conn: Connection, payloads: Mapping[str, bytes],
                  subjects: Mapping[str, Subject], now: str) -> list[PayloadRow]:
        """Payload rows for ``payloads``: those with a subject encrypted under its live key."""
        from governance_pipeline.landscape.data_keys import seal
        from governance_pipeline.landscape.schema_data_protection import subject_index

        by_hmac = {s: self.subject_hmac(s) for s in set(subjects.values())}
        key_of = self._live_keys(conn, sorted(set(by_hmac.values())), now)
        index = {(f, self.value_hmac(f, v), key_of[h]) for s, h in by_hmac.items() for f, v in s}
        new_entries = sorted(index - self._indexed)
        _insert_ignoring_conflicts(
            conn, subject_index,
            [{"field_name": f, "value_hmac": vh, "key_id": k} for f, vh, k in new_entries],
            index_elements=["field_name", "value_hmac", "key_id"])
        self._pending_index.extend(new_entries)  # remembered once the unit commits
        rows: list[PayloadRow] = []
        for digest, data in payloads.items():
            subject = subjects.get(digest)
            if subject is None:
                rows.append((digest, len(data), data, now, None))
                continue
            key_id = key_of[by_hmac[subject]]
            rows.append((digest, len(data), seal(self._cipher(key_id), digest, data), now,
                         key_id))
        return rows

    def _live_keys(self, conn: Connection, hmacs: list[str], now: str) -> dict[str, str]:
        """subject HMAC -> live key id, creating keys that do not exist; their DEKs cached."""
        from governance_pipeline.contracts.ids import new_id
        from governance_pipeline.landscape.data_keys import new_data_key
        from governance_pipeline.landscape.schema_data_protection import subject_keys

        found = self._select_live(conn, hmacs)
        missing = [h for h in hmacs if h not in found]
        if missing:
            ring = self.keyring
            fresh = []
            for h in missing:
                key_id, dek = new_id("sk_"), new_data_key()
                self._remember(key_id, dek)
                fresh.append({"key_id": key_id, "subject_hmac": h, "kek_id": ring.kek_id,
                              "wrapped_key": ring.wrap(key_id, dek), "created_at": now,
                              "destroyed_at": None, "erasure_id": None})
            # A concurrent run may create the same subject's key first: its key wins, ours is
            # dropped, and the re-read below returns the winner.
            _insert_ignoring_conflicts(conn, subject_keys, fresh, index_elements=["subject_hmac"],
                                       index_where=subject_keys.c.destroyed_at.is_(None))
            found.update(self._select_live(conn, missing))
        return found

    def _select_live(self, conn: Connection, hmacs: Sequence[str]) -> dict[str, str]:
        from sqlalchemy import select

        from governance_pipeline.landscape.schema_data_protection import subject_keys

        found: dict[str, str] = {}
        for part in _chunks(hmacs):
            query = select(subject_keys.c.key_id, subject_keys.c.subject_hmac,
                           subject_keys.c.wrapped_key).where(
                subject_keys.c.subject_hmac.in_(part), subject_keys.c.destroyed_at.is_(None))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(read=True)  # an erasure waits for this commit
            for key_id, subject_hmac, wrapped in conn.execute(query):
                if key_id not in self._deks:
                    self._remember(key_id, self.keyring.unwrap(key_id, bytes(wrapped)))
                found[subject_hmac] = key_id
        return found

    def committed(self, ok: bool) -> None:
        """The unit that sealed payloads committed (``ok``) or rolled back: index entries it
        wrote are known from now on, or never were."""
        if ok:
            if len(self._indexed) >= _CACHE_LIMIT:
                self._indexed.clear()
            self._indexed.update(self._pending_index)
        self._pending_index.clear()

    # -- opening on read -------------------------------------------------------------------------
    def data_key(self, conn: Connection | Reader, key_id: str) -> bytes | None:
        """The data key ``key_id``, or None when it was destroyed (or is missing)."""
        # Always asked of the database, never answered from the cache alone: another process
        # may have erased the subject since this one cached its key.
        wrapped = as_reader(conn).scalar(DATA_KEY, {"key_id": key_id})
        if wrapped is None:
            self._deks.pop(key_id, None)
            return None
        dek = self._deks.get(key_id)
        if dek is None:
            dek = self.keyring.unwrap(key_id, bytes(wrapped))
            self._remember(key_id, dek)
        return dek

    def open(self, conn: Connection | Reader, key_id: str, content_hash: str,
             stored: bytes) -> bytes | None:
        """Plaintext of a sealed payload; None when its key is gone or the ciphertext altered."""
        from governance_pipeline.landscape.data_keys import open_sealed

        dek = self.data_key(conn, key_id)
        return None if dek is None else open_sealed(dek, content_hash, stored)

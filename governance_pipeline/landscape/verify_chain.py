"""Chain and seal checks of ``verify``: the ledger of one scope, recomputed from its rows.

Every entry hash is recomputed, every link and manifest digest checked, and each manifest's
items are handed, table by table, to the record check (``verify_records``) as they are read.
Every seal must be signed by the trusted key over an entry that is still in the chain, and a
finished run's chain must be sealed up to its last entry.
"""

from __future__ import annotations

import zlib
from itertools import groupby
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Select, Table, column, select

from governance_pipeline.contracts.errors import Finding
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.signing_keyring import SigningKeyring
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    LEDGERED,
    LedgerSpec,
    ledger_entries,
    ledger_seals,
    runs,
)

CHAIN = "chain"
SEAL = "seal"
KEY = "key"  # a signature by a key outside its validity, or a broken keyring
RECORD = "record"
PAYLOAD = "payload"


def raw_select(table: Table) -> Select[Any]:
    """SELECT every column of ``table`` as the driver returns it, without SQLAlchemy's type
    processing: a retyped column must become a finding, not a crash in a result processor."""
    return select(*(column(c.name) for c in table.columns)).select_from(table)


_ENTRY_SPEC = LedgerSpec(ledger_entries, ("scope", "seq"), "scope", (), frozenset())
STREAM = 2_000  # rows fetched per round trip while streaming a table
#: Ledger entries fetched per round trip: each carries a whole chunk's manifest (hundreds of
#: KB), so ``STREAM`` of them would hold a large run's every manifest at once.
ENTRY_STREAM = 8


@dataclass
class Tally:
    """Counters and findings of one verify, shared by its checks."""

    entries: int = 0
    records: int = 0
    payloads: int = 0
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, table: str, key: str, message: str, scope: str | None,
            **extra: Any) -> None:
        self.findings.append(Finding(check, table, key, message, scope, extra))


@dataclass
class Chain:
    """What one scope's chain committed, as verify replayed it."""

    heads: dict[int, str] = field(default_factory=dict)  # seq -> stored entry_hash
    last_seq: int = 0


def entry_key(scope: str, seq: Any) -> str:
    return ledger.record_key(_ENTRY_SPEC, {"scope": scope, "seq": seq})


# What the ledger's own columns must hold before they are hashed or compared: on SQLite any
# column can hold any type, and an owner can retype a PostgreSQL column.
_ENTRY_TYPES = {"seq": int, "prev_hash": str, "records_digest": str, "record_count": int,
                "manifest": (bytes, memoryview), "created_at": str, "entry_hash": str}
_SEAL_TYPES = {"seq": int, "head_hash": str, "key_id": str, "signature": str, "sealed_at": str}


def _malformed(row: Any, types: dict[str, Any]) -> str:
    """'' when every column holds its type, else a description of the first that does not."""
    for name, expected in types.items():
        value = row[name]
        if type(value) is bool or not isinstance(value, expected):
            return f"{name} holds {type(value).__name__} {value!r:.40}"
    return ""


# --- 1. the chain ---------------------------------------------------------------------------------
def check_chain(conn: Connection, scope: str, state: Tally,
                records: Committer | None = None) -> Chain:
    """Check the chain of ``scope``; each entry's manifest items go to ``records``."""
    chain = Chain()
    prev_seq, prev_hash = 0, ledger.GENESIS_HASH
    result = conn.execution_options(yield_per=ENTRY_STREAM).execute(
        raw_select(ledger_entries).where(ledger_entries.c.scope == scope)
        .order_by(ledger_entries.c.seq))
    for entry in result.mappings():
        state.entries += 1
        key = entry_key(scope, entry["seq"])
        wrong = _malformed(entry, _ENTRY_TYPES)
        if wrong:
            # Unusable: the next entry then reports the gap or broken link this leaves.
            state.add(CHAIN, "ledger_entries", key, f"entry malformed: {wrong}", scope)
            continue
        seq = entry["seq"]
        if seq != prev_seq + 1:
            missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
            state.add(CHAIN, "ledger_entries", entry_key(scope, prev_seq + 1),
                      f"gap: seq {missing} missing from the chain (deleted or moved)", scope,
                      missing_from=prev_seq + 1, missing_to=seq - 1)
        elif entry["prev_hash"] != prev_hash:
            state.add(CHAIN, "ledger_entries", key,
                      f"broken link: prev_hash does not match the entry_hash of seq {prev_seq}",
                      scope, expected=prev_hash, actual=entry["prev_hash"])
        recomputed = ledger.entry_hash(
            scope=scope, seq=seq, prev_hash=entry["prev_hash"],
            records_digest=entry["records_digest"], record_count=entry["record_count"],
            created_at=entry["created_at"])
        if recomputed != entry["entry_hash"]:
            state.add(CHAIN, "ledger_entries", key,
                      "entry altered: its content no longer hashes to its entry_hash", scope,
                      expected=entry["entry_hash"], actual=recomputed)
        _replay_manifest(scope, entry, key, records, state)
        chain.heads[seq] = entry["entry_hash"]
        prev_seq, prev_hash = seq, entry["entry_hash"]
    chain.last_seq = prev_seq
    return chain


class Committer(Protocol):
    """Takes the (table, key, hash) items one entry commits for one table
    (``verify_records.RecordCheck``)."""

    def commit(self, table: str, items: list[tuple[str, str, str]]) -> None: ...


def _replay_manifest(scope: str, entry: Any, key: str, records: Committer | None,
                     state: Tally) -> None:
    try:
        items, digest = ledger.decode_manifest(bytes(entry["manifest"]))
    except (zlib.error, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        state.add(CHAIN, "ledger_entries", key, f"manifest unreadable: {exc}", scope)
        return
    if digest != entry["records_digest"]:
        state.add(CHAIN, "ledger_entries", key,
                  "manifest altered: its digest differs from the committed records_digest",
                  scope, expected=entry["records_digest"], actual=digest)
    if len(items) != entry["record_count"]:
        state.add(CHAIN, "ledger_entries", key,
                  f"manifest lists {len(items)} records but record_count is "
                  f"{entry['record_count']}", scope)
    groups = _grouped(scope, items)
    if groups is None:
        groups = _checked_items(scope, items, key, state)
    if records is not None:
        for table, pairs in groups:
            records.commit(table, pairs)


_Groups = list[tuple[str, list[tuple[str, str, str]]]]


def _grouped(scope: str, items: list[Any]) -> _Groups | None:
    """The items as runs of one table, in manifest order, when every item is well formed and
    may be in ``scope`` (the common case, checked a run at a time), else None."""
    try:
        if not set(map(len, items)) <= {3}:
            return None
    except TypeError:  # an item that is no sequence at all
        return None
    groups = [(table, list(run)) for table, run in groupby(items, itemgetter(0))]
    for table, run in groups:
        if type(table) is not str or table not in LEDGERED or (
                scope != GLOBAL_SCOPE and LEDGERED[table].scope_column is None):
            return None
        if not set(map(type, map(itemgetter(1), run))) == set(
                map(type, map(itemgetter(2), run))) == {str}:
            return None
    return groups


def _checked_items(scope: str, items: list[Any], key: str, state: Tally) -> _Groups:
    """The well-formed items of ``scope``, grouped as ``_grouped`` does; a finding for each
    other one."""
    groups: _Groups = []
    for item in items:
        if not (len(item) == 3 and type(item[1]) is str and type(item[2]) is str
                and type(item[0]) is str and item[0] in LEDGERED):
            state.add(CHAIN, "ledger_entries", key, f"manifest item malformed: {item!r:.120}",
                      scope)
            continue
        table, record, record_hash = item
        if scope != GLOBAL_SCOPE and LEDGERED[table].scope_column is None:
            # Such a record lives in the global scope, whose chain does not commit it.
            state.add(CHAIN, "ledger_entries", key,
                      f"manifest commits {table} {record}, which belongs to the global scope",
                      scope, table=table, record=record)
            continue
        if not groups or groups[-1][0] != table:
            groups.append((table, []))
        groups[-1][1].append((table, record, record_hash))
    return groups


# --- 2. seals -------------------------------------------------------------------------------------
def check_keyring(keyring: SigningKeyring, state: Tally) -> None:
    """Every statement of the keyring that proves nothing (or forks it) is a finding."""
    for problem in keyring.problems:
        state.add(KEY, "operator_events", problem.item, problem.message, GLOBAL_SCOPE)


def check_seals(conn: Connection, scope: str, chain: Chain, keyring: SigningKeyring,
                state: Tally) -> None:
    """Every seal must be signed by a trusted key that was valid at its ``sealed_at``."""
    covered = 0  # highest seq covered by a valid seal
    for seal in conn.execute(raw_select(ledger_seals).where(ledger_seals.c.scope == scope)
                             .order_by(ledger_seals.c.seq, ledger_seals.c.seal_id)).mappings():
        key, seq = str(seal["seal_id"]), seal["seq"]
        wrong = _malformed(seal, _SEAL_TYPES)
        if wrong:
            state.add(SEAL, "ledger_seals", key, f"seal malformed: {wrong}", scope)
            continue
        trusted = keyring.public(seal["key_id"])
        if trusted is None:
            known = sorted(e.key_id for e in keyring.entries.values() if e.trusted)
            which = (f"trusted key is {known[0]}" if len(known) == 1
                     else f"trusted keys are {', '.join(known) or 'none'}")
            state.add(SEAL, "ledger_seals", key,
                      f"sealed by unknown key {seal['key_id']} ({which})", scope, seq=seq)
            continue
        message = ledger.seal_message(scope=scope, seq=seq, head_hash=seal["head_hash"],
                                      key_id=seal["key_id"], sealed_at=seal["sealed_at"])
        if not trusted.verify(seal["signature"], message):
            state.add(SEAL, "ledger_seals", key,
                      "invalid signature: the seal was not signed by the trusted key", scope,
                      seq=seq)
            continue
        outside = keyring.check(seal["key_id"], seal["sealed_at"])
        if outside is not None:
            state.add(KEY, "ledger_seals", key, f"seal {outside}", scope, seq=seq,
                      key_id=seal["key_id"], sealed_at=seal["sealed_at"])
            continue
        head = ledger.GENESIS_HASH if seq == 0 else chain.heads.get(seq)
        if head is None:
            state.add(SEAL, "ledger_seals", key,
                      f"chain truncated: the seal covers seq {seq}, which is missing from the "
                      f"chain (last seq {chain.last_seq})", scope, seq=seq)
        elif head != seal["head_hash"]:
            state.add(SEAL, "ledger_seals", key,
                      f"seal does not match chain: entry seq {seq} is not the entry that was "
                      "sealed", scope, seq=seq, expected=seal["head_hash"], actual=head)
        else:
            covered = max(covered, seq)
    if covered >= chain.last_seq:
        return
    if scope == GLOBAL_SCOPE:
        state.add(SEAL, "ledger_entries", entry_key(scope, chain.last_seq),
                  f"unsealed tail: the global chain is sealed at every commit, but no valid seal "
                  f"covers entries {covered + 1}..{chain.last_seq}; they were appended or "
                  "rewritten without the signing key", scope, sealed_through=covered,
                  last_seq=chain.last_seq)
        return
    status = conn.execute(select(runs.c.status).where(runs.c.run_id == scope)).scalar()
    if status is not None and status != "running":
        state.add(SEAL, "ledger_entries", entry_key(scope, chain.last_seq),
                  f"unsealed tail: the run is {status} but no valid seal covers entries "
                  f"{covered + 1}..{chain.last_seq}; they could have been appended or truncated "
                  "undetectably", scope, sealed_through=covered, last_seq=chain.last_seq)

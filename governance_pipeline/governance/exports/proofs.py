"""Inclusion proofs: a sampled audit record, shown to be in the ledger a bundle's checkpoint sealed.

A proof carries the record's hashed columns (exactly what ``ledger.record_hash`` hashes), the
ledger entry whose manifest commits it (with the manifest's exact text, so its digest can be
recomputed), the headers of every later entry up to the sealed head, and that seal. Checking it
needs no database: record hash → last manifest item for the record → ``records_digest`` →
``entry_hash`` → each later entry's link and hash → the sealed head → the seal's Ed25519
signature.

The builder proves the record's *current* content and only when that is the latest version the
checkpoint committed; a record changed after the seal cannot be proven (seal again first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governance_pipeline.contracts.errors import (
    LEDGER_TAMPERED,
    AuditIntegrityError,
    ConfigError,
    ExitCode,
    NotFoundError,
    register,
)
from governance_pipeline.governance.exports.checkpoint import (
    Checkpoint,
    Seal,
    checkpoint_for,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    LEDGERED,
    LedgerSpec,
    ledger_entries,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import _read_snapshot
from governance_pipeline.landscape.verify_chain import ENTRY_STREAM, raw_select

__all__ = ["PROOF_VERSION", "RECORD_UNPROVABLE", "checkpoint_for", "inclusion_proof",
           "inclusion_proofs", "record_content_hash", "verify_proof"]

PROOF_VERSION = 1

RECORD_UNPROVABLE = register(
    "GP-BUNDLE-004", "A record cannot be proven against the checkpoint",
    "The record is not in the scope named, its scope is not in the checkpoint, or it was "
    "committed or changed after the checkpoint's seal: seal the scope again "
    "(exports.checkpoint.seal_scopes), build a new checkpoint and retry. If it persists, run "
    "`governance-pipeline verify`.",
    ExitCode.INVALID_INPUT)

RecordRef = tuple[str, str, str]  # (table, key, scope)


def record_content_hash(table: str, values: list[Any]) -> str:
    """``ledger.record_hash`` over already-normalised column values (the form a proof holds)."""
    return hashlib.sha256(orjson.dumps([table, *values])).hexdigest()


def _content(spec: LedgerSpec, row: Mapping[str, Any]) -> list[Any]:
    """The hashed columns' values as ``ledger.record_hash`` normalises them (JSON-safe)."""
    values: list[Any] = []
    for col in spec.hashed_columns:
        v = row[col]
        if v is not None and col in spec.float_columns:
            v = float(v)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v).hex()
        values.append(v)
    return values


def _header(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("seq", "prev_hash", "records_digest", "record_count",
                                  "created_at", "entry_hash")}


# --- building -------------------------------------------------------------------------------------
def inclusion_proof(landscape: Landscape, table: str, key: str, scope: str,
                    checkpoint: Checkpoint) -> dict[str, Any]:
    return inclusion_proofs(landscape, [(table, key, scope)], checkpoint)[0]


def inclusion_proofs(landscape: Landscape, records: Iterable[RecordRef],
                     checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """One JSON-safe proof per ``(table, key, scope)``, in order; each is verified before it is
    returned (``verify_proof`` with this Landscape's key), so a bundle never ships a bad one.

    Raises ``NotFoundError`` for a record that does not exist, ``ConfigError``
    (GP-BUNDLE-004) for one the checkpoint does not cover.
    """
    refs = list(records)
    keyring = landscape.own_keyring()
    with _read_snapshot(landscape.engine) as conn:
        contents = [_read_record(conn, *ref) for ref in refs]
        located: dict[RecordRef, dict[str, Any]] = {}
        for scope in sorted({ref[2] for ref in refs}):
            seal = checkpoint.seal(scope)
            if seal is None:
                raise ConfigError(f"scope {scope} is not in the checkpoint (it covers "
                                  f"{', '.join(checkpoint.scopes) or 'nothing'})",
                                  code=RECORD_UNPROVABLE, details={"scope": scope})
            wanted = {(t, k) for t, k, s in refs if s == scope}
            for (t, k), found in _locate(conn, scope, seal, wanted).items():
                located[(t, k, scope)] = found
    proofs = []
    for ref, values in zip(refs, contents, strict=True):
        table, key, scope = ref
        found = located[ref]
        actual = record_content_hash(table, values)
        if found["committed"] != actual:
            raise ConfigError(
                f"{table} {key} differs from the version the checkpoint of scope {scope} "
                "committed: it changed after the seal (or was altered)", code=RECORD_UNPROVABLE,
                details={"table": table, "key": key, "scope": scope})
        seal = checkpoint.seal(scope)
        assert seal is not None
        proof = {
            "v": PROOF_VERSION, "scope": scope,
            "record": {"table": table, "key": key, "columns": list(LEDGERED[table].hashed_columns),
                       "values": values, "record_hash": actual},
            "entry": found["entry"], "chain": found["chain"], "seal": seal.model_dump(mode="json"),
        }
        public = keyring.public(seal.key_id)
        problems = (verify_proof(proof, seal.model_dump(mode="json"), public)
                    if public is not None else [f"seal key {seal.key_id} is not trusted"])
        if problems:
            raise AuditIntegrityError(f"the ledger of scope {scope} does not prove {table} {key}: "
                                      f"{problems[0]}", code=LEDGER_TAMPERED,
                                      details={"problems": problems})
        proofs.append(proof)
    return proofs


def _read_record(conn: Any, table: str, key: str, scope: str) -> list[Any]:
    spec = LEDGERED.get(table)
    if spec is None:
        raise NotFoundError(f"{table} is not a ledgered table", details={"table": table})
    try:
        parts = [key] if len(spec.key_columns) == 1 else orjson.loads(key)
    except orjson.JSONDecodeError:
        parts = None
    if not isinstance(parts, list) or len(parts) != len(spec.key_columns):
        raise NotFoundError(f"{key!r} is not a key of {table} (columns "
                            f"{', '.join(spec.key_columns)})", details={"table": table})
    where = [spec.table.c[c] == v for c, v in zip(spec.key_columns, parts, strict=True)]
    row = conn.execute(raw_select(spec.table).where(*where)).mappings().first()
    if row is None:
        raise NotFoundError(f"no {table} record {key}", details={"table": table, "key": key})
    owner = row[spec.scope_column] if spec.scope_column else GLOBAL_SCOPE
    if owner != scope:
        raise ConfigError(f"{table} {key} belongs to scope {owner}, not {scope}",
                          code=RECORD_UNPROVABLE, details={"table": table, "key": key})
    values = _content(spec, row)
    if ledger.record_hash(spec, row) != record_content_hash(table, values) \
            or orjson.loads(orjson.dumps(values)) != values:
        raise AuditIntegrityError(f"{table} {key} holds a value JSON cannot carry exactly",
                                  details={"table": table, "key": key})
    return values


def _locate(conn: Any, scope: str, seal: Seal,
            wanted: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Walk the chain down from the sealed head to the latest entry committing each record."""
    pending = set(wanted)
    headers: list[dict[str, Any]] = []  # newest first
    found: dict[tuple[str, str], dict[str, Any]] = {}
    result = conn.execution_options(yield_per=ENTRY_STREAM).execute(
        raw_select(ledger_entries)
        .where(ledger_entries.c.scope == scope, ledger_entries.c.seq <= seal.seq)
        .order_by(ledger_entries.c.seq.desc()))
    try:
        for entry in result.mappings():
            header = _header(entry)
            headers.append(header)
            try:
                items, _ = ledger.decode_manifest(entry["manifest"])
            except ledger.ManifestError as exc:
                raise AuditIntegrityError(f"the manifest of entry seq {entry['seq']} of scope "
                                          f"{scope} is unreadable ({exc}): run verify",
                                          code=LEDGER_TAMPERED) from exc
            latest = {(t, k): h for t, k, h in items if (t, k) in pending}
            if not latest:
                continue
            manifest_format, text = ledger.portable_manifest(entry["manifest"])
            for ref, committed in latest.items():
                pending.discard(ref)
                found[ref] = {"committed": committed,
                              "entry": {**header, "manifest": text,
                                        "manifest_format": manifest_format},
                              "chain": list(reversed(headers[:-1]))}
            if not pending:
                break
    finally:
        result.close()
    if pending:
        missing = ", ".join(f"{t} {k}" for t, k in sorted(pending))
        raise ConfigError(f"no entry up to the sealed seq {seal.seq} of scope {scope} commits "
                          f"{missing}: committed after the checkpoint", code=RECORD_UNPROVABLE,
                          details={"scope": scope, "seq": seal.seq})
    return found


# --- checking -------------------------------------------------------------------------------------
class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RecordFields(StrictModel):
    """A proven record as a proof shows it: its table, key and hashed columns' values."""

    table: str
    key: str
    columns: list[str]
    values: list[Any]


class _Record(RecordFields):
    record_hash: str


class EntryHeader(StrictModel):
    """A ledger entry's header: what ``ledger.entry_hash`` commits to, and the hash."""

    seq: int = Field(ge=1)
    prev_hash: str
    records_digest: str
    record_count: int = Field(ge=0)
    created_at: str
    entry_hash: str


_Header = EntryHeader


class _Entry(EntryHeader):
    manifest: str
    manifest_format: int = 1  # ledger.portable_manifest: 1 JSON text, 2 base64 of the binary


class _Proof(StrictModel):
    v: int
    scope: str
    record: _Record
    entry: _Entry
    chain: list[_Header]
    seal: dict[str, Any]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err['loc'])) or 'proof'}: {err['msg']}"


def verify_proof(proof: Any, checkpoint_entry: Any, public_key: PublicKey) -> list[str]:
    """Every reason ``proof`` does not show its record under ``checkpoint_entry`` (a ``Seal`` as
    a dict), signed by ``public_key``; empty when it does. Pure: no database, no clock."""
    try:
        p = _Proof.model_validate(proof)
    except ValidationError as exc:
        return [f"proof malformed: {_first_error(exc)}"]
    try:
        sealed = Seal.model_validate(checkpoint_entry)
        claimed = Seal.model_validate(p.seal)
    except ValidationError as exc:
        return [f"seal malformed: {_first_error(exc)}"]
    problems: list[str] = []
    if p.v != PROOF_VERSION:
        problems.append(f"proof format v{p.v} is not v{PROOF_VERSION}")
    if claimed != sealed:
        problems.append(f"proof was built against another checkpoint: it names seal "
                        f"{claimed.seal_id} (seq {claimed.seq}), the bundle's checkpoint for "
                        f"scope {sealed.scope} is seal {sealed.seal_id} (seq {sealed.seq})")
    if p.scope != sealed.scope:
        problems.append(f"proof is for scope {p.scope}, its checkpoint seal for {sealed.scope}")
    if sealed.key_id != public_key.key_id:
        problems.append(f"checkpoint sealed by key {sealed.key_id}, not by {public_key.key_id}")
    elif not public_key.verify(sealed.signature, sealed.message()):
        problems.append("seal signature invalid: the checkpoint was not signed by the key")
    committed = _check_record(p, problems)
    _check_manifest(p, committed, problems)
    _check_chain(p, sealed, problems)
    return problems


def _check_record(p: _Proof, problems: list[str]) -> str | None:
    r = p.record
    spec = LEDGERED.get(r.table)
    if spec is None:
        problems.append(f"record table {r.table} is not a ledgered table")
        return None
    if tuple(r.columns) != spec.hashed_columns or len(r.values) != len(r.columns):
        problems.append(f"record columns do not match the ledgered columns of {r.table}")
        return None
    row = dict(zip(r.columns, r.values, strict=True))
    try:
        key = ledger.record_key(spec, row)
        actual = record_content_hash(r.table, r.values)
    except (TypeError, orjson.JSONEncodeError) as exc:
        problems.append(f"record content cannot be hashed: {exc}")
        return None
    if key != r.key:
        problems.append(f"record key {r.key} does not match its key columns ({key})")
    owner = row[spec.scope_column] if spec.scope_column else GLOBAL_SCOPE
    if owner != p.scope:
        problems.append(f"record belongs to scope {owner}, the proof is for {p.scope}")
    if actual != r.record_hash:
        problems.append(f"record content altered: it hashes to {actual[:16]}…, the proof "
                        f"states {r.record_hash[:16]}…")
    return actual


def _check_manifest(p: _Proof, actual: str | None, problems: list[str]) -> None:
    e = p.entry
    try:
        items, digest = ledger.read_portable(e.manifest_format, e.manifest)
    except ledger.ManifestError as exc:
        problems.append(f"manifest of entry seq {e.seq} unreadable: {exc}")
        return
    if digest != e.records_digest:
        problems.append(f"manifest of entry seq {e.seq} does not hash to its records_digest")
    if len(items) != e.record_count:
        problems.append(f"manifest of entry seq {e.seq} does not list record_count "
                        f"({e.record_count}) items")
        return
    latest = None
    for item in items:
        if isinstance(item, tuple) and item[:2] == (p.record.table, p.record.key):
            latest = item
    if latest is None:
        problems.append(f"entry seq {e.seq} does not commit {p.record.table} {p.record.key}")
    elif actual is not None and (len(latest) != 3 or latest[2] != actual):
        problems.append(f"entry seq {e.seq} commits another version of {p.record.table} "
                        f"{p.record.key} than the proof's record content")


def _check_chain(p: _Proof, sealed: Seal, problems: list[str]) -> None:
    previous: _Header | None = None
    for h in [p.entry, *p.chain]:
        recomputed = ledger.entry_hash(scope=p.scope, seq=h.seq, prev_hash=h.prev_hash,
                                       records_digest=h.records_digest,
                                       record_count=h.record_count, created_at=h.created_at)
        if recomputed != h.entry_hash:
            problems.append(f"entry seq {h.seq} altered: its content does not hash to its "
                            "entry_hash")
        if previous is not None and (h.seq != previous.seq + 1
                                     or h.prev_hash != previous.entry_hash):
            problems.append(f"chain broken between seq {previous.seq} and seq {h.seq}: an "
                            "entry is missing or does not link to the one before")
        previous = h
    assert previous is not None
    if previous.seq != sealed.seq or previous.entry_hash != sealed.head_hash:
        problems.append(f"chain ends at seq {previous.seq}, not at the sealed head (seq "
                        f"{sealed.seq}): it was cut or extended")

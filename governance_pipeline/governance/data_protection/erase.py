"""Erasure by subject (crypto-shredding): destroy the data keys, record who, why, when, what.

``--field F --value V`` finds the subject's keys through the keyed HMAC index (no payload is
decrypted to find them); ``--run R --row N`` takes the keys of the payloads that row's records
reference, and also empties that row's payloads stored in clear (written before its pipeline
declared ``subject_fields``). Destroying a key makes every payload sealed under it unreadable, in
every run and every copy of the database made from now on — backups made earlier still hold the
wrapped key (docs/data_protection.md). The erasure record holds the field and the value's keyed
HMAC, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, update

from governance_pipeline.contracts.data_protection import (
    ErasureRecord,
    ErasureSelector,
    PayloadRedaction,
    RedactionAction,
)
from governance_pipeline.contracts.errors import (
    ERASE_ALREADY,
    ERASE_NO_MATCH,
    ERASE_NO_SUBJECT_FIELD,
    ERASE_ROW_UNKNOWN,
    ERASE_SELECTOR_INVALID,
    ConfigError,
    NotFoundError,
    StaleStateError,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.governance.data_protection.purge import digest_of
from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    calls,
    compact_states,
    node_states,
    payloads,
    rows,
    runs,
    token_outcomes,
    tokens,
    validation_errors,
)
from governance_pipeline.landscape.schema_data_protection import (
    payload_redactions,
    subject_index,
    subject_keys,
)
from governance_pipeline.landscape.sealing import subject_text
from governance_pipeline.landscape.store import Landscape

_BATCH = 500


@dataclass(frozen=True)
class ErasureTarget:
    """What an erasure will destroy: live keys, payloads sealed under them, clear payloads."""

    live_keys: list[str]
    sealed_payloads: list[str]
    clear_payloads: list[str]
    rows: list[tuple[str, int]]  # (run id, row index) whose source payload goes

    @property
    def payloads(self) -> list[str]:
        return sorted(set(self.sealed_payloads) | set(self.clear_payloads))


@dataclass(frozen=True)
class ErasureResult:
    record: ErasureRecord

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {"erasure_id": r.erasure_id, "actor": r.actor, "reason": r.reason,
                "at": r.created_at, "selector": r.selector.value, "field": r.field_name,
                "value_hmac": r.value_hmac, "hmac_key_id": r.hmac_key_id, "run_id": r.run_id,
                "row_index": r.row_index, "key_ids": orjson.loads(r.key_ids_json),
                "key_count": r.key_count, "payload_count": r.payload_count,
                "payloads_digest": r.payloads_digest, "row_count": r.row_count,
                "runs": orjson.loads(r.runs_json)}


def _in_batches(conn: Connection, query_of: Any, values: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(values), _BATCH):
        out.extend(conn.execute(query_of(values[i:i + _BATCH])).all())
    return out


def _subject_keys(conn: Connection, landscape: Landscape, field: str,
                  value: str) -> tuple[list[str], str]:
    if conn.execute(select(subject_index.c.field_name)
                    .where(subject_index.c.field_name == field).limit(1)).first() is None:
        indexed = sorted(conn.execute(select(subject_index.c.field_name).distinct()).scalars())
        raise ConfigError(f"no payload is indexed under subject field {field!r} (indexed: "
                          f"{', '.join(indexed) or 'none'})", code=ERASE_NO_SUBJECT_FIELD,
                          details={"field": field, "indexed_fields": indexed})
    value_hmac = landscape.protection.value_hmac(field, subject_text(value))
    keys = sorted(conn.execute(select(subject_index.c.key_id).where(
        subject_index.c.field_name == field, subject_index.c.value_hmac == value_hmac)).scalars())
    if not keys:
        raise NotFoundError(f"no recorded payload has {field} equal to the given value",
                            code=ERASE_NO_MATCH, details={"field": field})
    return keys, value_hmac


def _row_payloads(conn: Connection, run_id: str, row_index: int) -> set[str]:
    row = conn.execute(select(rows.c.row_id, rows.c.source_data_hash).where(
        rows.c.run_id == run_id, rows.c.row_index == row_index)).first()
    if row is None:
        known = conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
        what = f"row {row_index} in run {run_id}" if known else f"run {run_id}"
        raise NotFoundError(f"no {what} in this Landscape", code=ERASE_ROW_UNKNOWN,
                            details={"run_id": run_id, "row_index": row_index})
    found = {row.source_data_hash}
    toks = select(tokens.c.token_id).where(tokens.c.run_id == run_id,
                                           tokens.c.row_id == row.row_id)
    states = select(node_states.c.state_id).where(node_states.c.token_id.in_(toks))
    for col in (node_states.c.input_hash, node_states.c.output_hash):
        found.update(conn.execute(select(col).where(node_states.c.token_id.in_(toks))).scalars())
    found.update(conn.execute(select(compact_states.c.row_hash).where(  # pass-through states
        compact_states.c.token_id.in_(toks))).scalars())
    for col in (calls.c.request_hash, calls.c.response_hash):
        found.update(conn.execute(select(col).where(calls.c.state_id.in_(states))).scalars())
    found.update(conn.execute(select(token_outcomes.c.error_hash).where(
        token_outcomes.c.token_id.in_(toks))).scalars())
    found.update(conn.execute(select(validation_errors.c.raw_payload_hash).where(
        validation_errors.c.run_id == run_id,
        validation_errors.c.row_index == row_index)).scalars())
    found.discard(None)
    return found


def _target(conn: Connection, keys: list[str], clear_candidates: set[str]) -> ErasureTarget:
    live = sorted(r[0] for r in _in_batches(conn, lambda part: select(subject_keys.c.key_id).where(
        subject_keys.c.key_id.in_(part), subject_keys.c.wrapped_key.is_not(None)), keys))
    sealed = sorted(r[0] for r in _in_batches(conn, lambda part: select(
        payloads.c.content_hash).where(payloads.c.key_id.is_not(None),  # the partial index
                                       payloads.c.key_id.in_(part)), live))
    redacted = set(conn.execute(select(payload_redactions.c.content_hash)).scalars())
    clear = sorted(r[0] for r in _in_batches(conn, lambda part: select(
        payloads.c.content_hash).where(payloads.c.content_hash.in_(part),
                                       payloads.c.key_id.is_(None),
                                       func.length(payloads.c.data) > 0),
        sorted(clear_candidates - redacted)))
    gone = sorted(set(sealed) | set(clear))
    affected = sorted(set(_in_batches(conn, lambda part: select(rows.c.run_id, rows.c.row_index)
                                      .where(rows.c.source_data_hash.in_(part)), gone)))
    return ErasureTarget(live, sealed, clear, [(r, int(i)) for r, i in affected])


def erase(landscape: Landscape, *, actor: str, reason: str, field: str | None = None,
          value: str | None = None, run_id: str | None = None,
          row_index: int | None = None) -> ErasureResult:
    """Crypto-shred a subject (``field`` = ``value``) or one row; the erasure (or its refusal) is
    an operator-log entry, in the erasure's own transaction when it writes one. The value itself
    is never logged: the entry names the field and, once known, the value's keyed HMAC."""
    with operator_action(landscape, action=OperatorAction.ERASE, actor=actor, subject=run_id,
                         inputs={"field": field, "run_id": run_id, "row_index": row_index}) as act:
        return _erase(landscape, act, actor=actor, reason=reason, field=field, value=value,
                      run_id=run_id, row_index=row_index)


def _erase(landscape: Landscape, act: OperatorActionScope, *, actor: str, reason: str,
           field: str | None, value: str | None, run_id: str | None,
           row_index: int | None) -> ErasureResult:
    by_subject = field is not None or value is not None
    by_row = run_id is not None or row_index is not None
    if by_subject == by_row or (by_subject and (field is None or value is None)) or (
            by_row and (run_id is None or row_index is None)) or not reason.strip():
        raise ConfigError("erase needs --field and --value, or --run and --row, and a "
                          "non-empty --reason", code=ERASE_SELECTOR_INVALID)
    value_hmac: str | None = None
    with reading(landscape, snapshot=True) as conn:
        if by_subject:
            keys, value_hmac = _subject_keys(conn, landscape, field, value)  # type: ignore[arg-type]
            target = _target(conn, keys, set())
        else:
            mine = _row_payloads(conn, run_id, row_index)  # type: ignore[arg-type]
            keys = sorted(set(conn.execute(select(payloads.c.key_id).where(
                payloads.c.content_hash.in_(sorted(mine)),
                payloads.c.key_id.is_not(None))).scalars()))
            target = _target(conn, keys, mine)
        if not target.live_keys and not target.clear_payloads:
            previous = sorted(set(conn.execute(select(subject_keys.c.erasure_id).where(
                subject_keys.c.key_id.in_(keys or [""]))).scalars()) - {None})
            raise ConfigError(f"already erased (by {', '.join(previous) or 'an earlier erasure'}); "
                              "nothing was changed", code=ERASE_ALREADY,
                              details={"erasure_ids": previous})
    erasure_id = new_id("erasure_")
    recorder = Recorder(landscape)
    with recorder.unit(GLOBAL_SCOPE) as uow:
        record = ErasureRecord(
            erasure_id, actor, reason,
            ErasureSelector.SUBJECT if by_subject else ErasureSelector.ROW, field, value_hmac,
            run_id, row_index, landscape.protection.keyring.index_key_id,
            orjson.dumps(target.live_keys).decode(), len(target.live_keys),
            len(target.payloads), digest_of(target.payloads), len(target.rows),
            orjson.dumps(sorted({r for r, _ in target.rows})).decode(), uow.now)
        uow.add(record)
        for content_hash in target.clear_payloads:
            uow.add(PayloadRedaction(content_hash, RedactionAction.ERASED, erasure_id, uow.now))
        uow.effect(lambda conn: _destroy(conn, target, erasure_id, uow.now))
        act.inputs.update(erasure_id=erasure_id, value_hmac=value_hmac,
                          keys=len(target.live_keys), payloads=len(target.payloads))
        act.record_in(uow)
    landscape.protection.forget(target.live_keys)
    return ErasureResult(record)


def _destroy(conn: Connection, target: ErasureTarget, erasure_id: str, now: str) -> None:
    """Inside the erasure's transaction: destroy the keys (a concurrent destroy of the same key
    discards this erasure) and empty the clear payloads."""
    for i in range(0, len(target.live_keys), _BATCH):
        part = target.live_keys[i:i + _BATCH]
        done = conn.execute(update(subject_keys).where(
            subject_keys.c.key_id.in_(part), subject_keys.c.wrapped_key.is_not(None))
            .values(wrapped_key=None, destroyed_at=now, erasure_id=erasure_id)).rowcount
        if done != len(part):
            raise StaleStateError("another erasure destroyed some of these keys first; nothing "
                                  "was changed", details={"erasure_id": erasure_id})
    for i in range(0, len(target.clear_payloads), _BATCH):
        part = target.clear_payloads[i:i + _BATCH]
        conn.execute(update(payloads).where(payloads.c.content_hash.in_(part)).values(data=b""))

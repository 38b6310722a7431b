"""Legal holds: a run, or an incident (and so its run), that no purge may touch while held.

Placing and releasing a hold are ledgered (global scope) with who and why; a release is an
update of the hold record, so the ledger keeps both versions' hashes in order.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from governance_pipeline.contracts.data_protection import HoldTarget, LegalHold
from governance_pipeline.contracts.errors import (
    HOLD_NOT_ACTIVE,
    RETENTION_RUN_UNKNOWN,
    ConfigError,
    NotFoundError,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)
from governance_pipeline.landscape.queries import Source, reading
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, incidents, runs
from governance_pipeline.landscape.schema_data_protection import legal_holds
from governance_pipeline.landscape.store import Landscape


def _target_exists(conn: Connection, kind: HoldTarget, target_id: str) -> bool:
    table, key = (runs, runs.c.run_id) if kind is HoldTarget.RUN else (incidents,
                                                                       incidents.c.incident_id)
    return conn.execute(select(key).select_from(table).where(key == target_id)).first() is not None


def place_hold(landscape: Landscape, kind: HoldTarget, target_id: str, *, actor: str,
               reason: str) -> LegalHold:
    """Place a legal hold; the hold (or its refusal) is an operator-log entry."""
    with operator_action(landscape, action=OperatorAction.LEGAL_HOLD, actor=actor,
                         subject=target_id, inputs={"operation": "add", "target_kind": kind.value,
                                                    "target_id": target_id}) as act:
        return _place_hold(landscape, act, kind, target_id, actor=actor, reason=reason)


def _place_hold(landscape: Landscape, act: OperatorActionScope, kind: HoldTarget,
                target_id: str, *, actor: str, reason: str) -> LegalHold:
    if not reason.strip():
        raise ConfigError("a legal hold needs a reason (--reason TEXT)")
    with reading(landscape) as conn:
        if not _target_exists(conn, kind, target_id):
            raise NotFoundError(f"no {kind.value} {target_id} in this Landscape",
                                code=RETENTION_RUN_UNKNOWN,
                                details={"target_kind": kind.value, "target_id": target_id})
    recorder = Recorder(landscape)
    with recorder.unit(GLOBAL_SCOPE) as uow:
        hold = LegalHold(new_id("hold_"), kind, target_id, reason, actor, uow.now,
                         None, None, None)
        uow.add(hold)
        act.inputs["hold_id"] = hold.hold_id
        act.record_in(uow)
    return hold


def release_hold(landscape: Landscape, hold_id: str, *, actor: str, reason: str) -> LegalHold:
    """Release a legal hold; the release (or its refusal) is an operator-log entry."""
    with operator_action(landscape, action=OperatorAction.LEGAL_HOLD, actor=actor,
                         subject=hold_id, inputs={"operation": "remove",
                                                  "hold_id": hold_id}) as act:
        return _release_hold(landscape, act, hold_id, actor=actor, reason=reason)


def _release_hold(landscape: Landscape, act: OperatorActionScope, hold_id: str, *, actor: str,
                  reason: str) -> LegalHold:
    if not reason.strip():
        raise ConfigError("releasing a legal hold needs a reason (--reason TEXT)")
    with reading(landscape) as conn:
        row = conn.execute(select(legal_holds).where(legal_holds.c.hold_id == hold_id)
                           ).mappings().first()
    if row is None or row["released_at"] is not None:
        raise NotFoundError(f"no active legal hold {hold_id}", code=HOLD_NOT_ACTIVE,
                            details={"hold_id": hold_id})
    recorder = Recorder(landscape)
    with recorder.unit(GLOBAL_SCOPE) as uow:
        uow.update("legal_holds", {"hold_id": hold_id},
                   {"released_by": actor, "release_reason": reason, "released_at": uow.now},
                   expect={"released_at": None})
        act.record_in(uow)
        released = uow.now
    held = LegalHold.from_row(row)
    return LegalHold(held.hold_id, held.target_kind, held.target_id, held.reason,
                     held.placed_by, held.placed_at, actor, reason, released)


def list_holds(source: Source, *, include_released: bool = False) -> list[LegalHold]:
    query = select(legal_holds).order_by(legal_holds.c.placed_at, legal_holds.c.hold_id)
    if not include_released:
        query = query.where(legal_holds.c.released_at.is_(None))
    with reading(source) as conn:
        return [LegalHold.from_row(r) for r in conn.execute(query).mappings()]


def held_runs(conn: Connection) -> dict[str, list[str]]:
    """run id -> ids of the active holds covering it (directly, or through an incident)."""
    held: dict[str, list[str]] = {}
    for hold in (LegalHold.from_row(r) for r in conn.execute(
            select(legal_holds).where(legal_holds.c.released_at.is_(None))).mappings()):
        if hold.target_kind is HoldTarget.RUN:
            held.setdefault(hold.target_id, []).append(hold.hold_id)
            continue
        run_id = conn.execute(select(incidents.c.run_id).where(
            incidents.c.incident_id == hold.target_id)).scalar()
        if run_id is not None:
            held.setdefault(run_id, []).append(hold.hold_id)
    return held

"""Purge: remove payload contents past retention, keep every hash, account for each removal.

A run is due when it ended longer ago than its retention: ``runs`` (the whole run: its payloads
purged and the run tombstoned) or else ``payloads`` (its payload contents). A payload is purged
only when every run referencing it is due — content addressing shares one stored copy between
runs, and a run still inside its retention (or under legal hold, or running) keeps it. Purged
payloads keep their row and hash with empty contents; one ledgered purge record (with a
``payload_redactions`` row per payload and a ``purged_runs`` row per run) accounts for them, so
``verify`` reports them as purged. Nothing is purged from a run that does not verify.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text, update

from governance_pipeline.contracts.clock import from_iso, to_iso
from governance_pipeline.contracts.data_protection import (
    PayloadRedaction,
    PurgedRun,
    PurgeRecord,
    PurgeScope,
    RedactionAction,
)
from governance_pipeline.contracts.errors import (
    PURGE_HELD,
    PURGE_UNVERIFIED,
    RETENTION_RUN_UNKNOWN,
    BlockedError,
    GovernanceError,
    NotFoundError,
    StaleStateError,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.governance.data_protection.holds import held_runs
from governance_pipeline.governance.data_protection.refs import references, run_references
from governance_pipeline.governance.data_protection.retention import (
    RetentionDefaults,
    run_retention,
)
from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    operator_action,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, payloads, runs
from governance_pipeline.landscape.schema_data_protection import (
    payload_redactions,
    purged_runs,
    subject_keys,
)
from governance_pipeline.landscape.store import Landscape

_BATCH = 500


def digest_of(hashes: list[str]) -> str:
    """SHA-256 over the sorted content hashes, one per line: what a purge or erasure removed."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


@dataclass(frozen=True)
class RunPurge:
    run_id: str
    pipeline: str
    ended_at: str
    scope: PurgeScope
    retention_days: int
    origin: str
    payload_hashes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pipeline": self.pipeline, "ended_at": self.ended_at,
                "scope": self.scope.value, "retention_days": self.retention_days,
                "retention_from": self.origin, "payload_count": len(self.payload_hashes)}


@dataclass(frozen=True)
class PurgePlan:
    at: str
    floor_days: int
    runs: list[RunPurge]
    held: dict[str, list[str]]
    payload_hashes: list[str]
    purge_id: str | None = None
    dry_run: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "dry_run": self.dry_run, "purge_id": self.purge_id,
                "floor_days": self.floor_days, "runs": [r.as_dict() for r in self.runs],
                "held": [{"run_id": r, "hold_ids": h} for r, h in sorted(self.held.items())],
                "payload_count": len(self.payload_hashes),
                "payloads_digest": digest_of(self.payload_hashes)}


@dataclass
class _Due:
    run: Any
    scope: PurgeScope
    days: int
    origin: str
    hashes: set[str] = field(default_factory=set)


def _due_scope(ended: datetime, now: datetime, payload_days: int | None,
               run_days: int | None) -> tuple[PurgeScope, int] | None:
    if run_days is not None and ended + timedelta(days=run_days) <= now:
        return PurgeScope.RUN, run_days
    if payload_days is not None and ended + timedelta(days=payload_days) <= now:
        return PurgeScope.PAYLOADS, payload_days
    return None


def plan_purge(landscape: Landscape, *, run_id: str | None = None,
               defaults: RetentionDefaults | None = None) -> PurgePlan:
    """What a purge would remove now (nothing is changed). Refuses with an error, before
    anything, on an unknown run, a retention under the floor, or a named run under hold."""
    defaults = defaults or RetentionDefaults.from_env()
    now = landscape.clock.now()
    with reading(landscape, snapshot=True) as conn:
        return _plan(conn, now, defaults, run_id)


def _plan(conn: Connection, now: datetime, defaults: RetentionDefaults,
          run_id: str | None) -> PurgePlan:
    query = select(runs.c.run_id, runs.c.pipeline_name, runs.c.ended_at, runs.c.config_json)
    if run_id is not None:
        query = query.where(runs.c.run_id == run_id)
    found = conn.execute(query.order_by(runs.c.started_at, runs.c.run_id)).all()
    if run_id is not None and not found:
        raise NotFoundError(f"no run {run_id} in this Landscape", code=RETENTION_RUN_UNKNOWN,
                            details={"run_id": run_id})
    done = {(r, s) for r, s in conn.execute(select(purged_runs.c.run_id, purged_runs.c.scope))}
    holds = held_runs(conn)
    due: dict[str, _Due] = {}
    held: dict[str, list[str]] = {}
    for run in found:
        retention = run_retention(run.config_json, defaults, run_id=run.run_id,
                                  pipeline=run.pipeline_name)  # floor enforced here
        if run.ended_at is None or (run.run_id, PurgeScope.RUN.value) in done:
            continue  # running, or tombstoned already
        scope = _due_scope(from_iso(run.ended_at), now, retention.payloads_days,
                           retention.runs_days)
        if scope is None:
            continue
        if run.run_id in holds:
            held[run.run_id] = holds[run.run_id]
            continue
        due[run.run_id] = _Due(run, scope[0], scope[1], retention.origin)
    if run_id is not None and run_id in held:
        raise BlockedError(f"run {run_id} is under legal hold {', '.join(held[run_id])}; "
                           "it was not purged", code=PURGE_HELD,
                           details={"run_id": run_id, "hold_ids": held[run_id]})
    keep: set[str] = set()
    for ref_run, content_hash in list(references(conn)):
        if ref_run in due:
            due[ref_run].hashes.add(content_hash)
        else:
            keep.add(content_hash)
    redacted = set(conn.execute(select(payload_redactions.c.content_hash)).scalars())
    candidates = sorted({h for d in due.values() for h in d.hashes} - keep - redacted)
    present = _with_contents(conn, candidates)
    plans = []
    for d in due.values():
        hashes = tuple(sorted(d.hashes & present))
        if d.scope is PurgeScope.PAYLOADS and not hashes:
            continue  # nothing left to purge (earlier purge, or every payload shared)
        plans.append(RunPurge(d.run.run_id, d.run.pipeline_name, d.run.ended_at, d.scope,
                              d.days, d.origin, hashes))
    return PurgePlan(to_iso(now), defaults.floor_days, plans, held, sorted(present))


def _with_contents(conn: Connection, hashes: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(hashes), _BATCH):
        part = hashes[i:i + _BATCH]
        # An erased payload stays erased (its key is gone already): not purged over again.
        erased = select(subject_keys.c.key_id).where(subject_keys.c.wrapped_key.is_(None))
        found.update(conn.execute(select(payloads.c.content_hash).where(
            payloads.c.content_hash.in_(part), func.length(payloads.c.data) > 0,
            payloads.c.key_id.is_(None) | payloads.c.key_id.not_in(erased))).scalars())
    return found


def purge(landscape: Landscape, *, actor: str, reason: str | None = None,
          run_id: str | None = None, defaults: RetentionDefaults | None = None) -> PurgePlan:
    """Carry out the purge ``plan_purge`` describes; returns the plan with its purge id.

    With nothing due, nothing but the operator-log entry is written. The run(s) are verified
    first: a purge never removes the evidence of tampering. The purge (or its refusal) is an
    operator-log entry, in the purge's own transaction when it writes one.
    """
    with operator_action(landscape, action=OperatorAction.PURGE, actor=actor, subject=run_id,
                         inputs={"run_id": run_id}) as act:
        return _purge(landscape, act, actor=actor, reason=reason, run_id=run_id,
                      defaults=defaults)


def _purge(landscape: Landscape, act: OperatorActionScope, *, actor: str, reason: str | None,
           run_id: str | None, defaults: RetentionDefaults | None) -> PurgePlan:
    from governance_pipeline.landscape.verify import verify  # verify reads the whole landscape

    plan = plan_purge(landscape, run_id=run_id, defaults=defaults)
    if not plan.runs:
        return PurgePlan(plan.at, plan.floor_days, [], plan.held, [], None, dry_run=False)
    failing = [r.run_id for r in plan.runs if not verify(landscape, r.run_id).ok]
    if failing:
        raise GovernanceError(f"run(s) {', '.join(failing)} do not verify; nothing was purged",
                              code=PURGE_UNVERIFIED, details={"run_ids": failing})
    purge_id = new_id("purge_")
    recorder = Recorder(landscape)
    with recorder.unit(GLOBAL_SCOPE) as uow:
        uow.add(PurgeRecord(purge_id, actor, reason, plan.floor_days, len(plan.runs),
                            len(plan.payload_hashes), digest_of(plan.payload_hashes),
                            orjson.dumps(plan.held, option=orjson.OPT_SORT_KEYS).decode(),
                            uow.now))
        with reading(landscape) as conn:
            heads = {r.run_id: ledger.read_head(conn, r.run_id) for r in plan.runs}
        for r in plan.runs:
            uow.add(PurgedRun(purge_id, r.run_id, r.scope, r.retention_days,
                              len(r.payload_hashes), digest_of(list(r.payload_hashes)),
                              heads[r.run_id].seq, heads[r.run_id].entry_hash, uow.now))
        for content_hash in plan.payload_hashes:
            uow.add(PayloadRedaction(content_hash, RedactionAction.PURGED, purge_id, uow.now))
        uow.effect(lambda conn: _blank(conn, plan, {r.run_id for r in plan.runs}))
        act.inputs.update(purge_id=purge_id, runs=len(plan.runs),
                          payloads=len(plan.payload_hashes),
                          payloads_digest=digest_of(plan.payload_hashes))
        act.record_in(uow)
    return PurgePlan(plan.at, plan.floor_days, plan.runs, plan.held, plan.payload_hashes,
                     purge_id, dry_run=False)


def _blank(conn: Connection, plan: PurgePlan, purged: set[str]) -> None:
    """Inside the purge's transaction: make sure no run started since the plan references a
    payload about to go, then empty the contents (the rows and their hashes stay)."""
    if conn.dialect.name == "postgresql":
        # New references to a payload are made by inserting it (ON CONFLICT DO NOTHING): with
        # inserts held until this commits, the check below cannot be overtaken.
        conn.execute(text("LOCK TABLE payloads IN SHARE ROW EXCLUSIVE MODE"))
    late = conn.execute(select(runs.c.run_id).where(
        (runs.c.started_at >= plan.at) | (runs.c.ended_at.is_(None))
        | (runs.c.last_resumed_at >= plan.at))).scalars().all()
    doomed = set(plan.payload_hashes)
    for run_id in late:
        if run_id not in purged and run_references(conn, run_id) & doomed:
            raise StaleStateError(f"run {run_id} started referencing payloads due for purge "
                                  "while the purge was planned; nothing was purged, retry",
                                  details={"run_id": run_id})
    for i in range(0, len(plan.payload_hashes), _BATCH):
        part = plan.payload_hashes[i:i + _BATCH]
        conn.execute(update(payloads).where(payloads.c.content_hash.in_(part))
                     .values(data=b""))

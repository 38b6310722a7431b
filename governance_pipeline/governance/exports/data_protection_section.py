"""Reads the data-protection section of a run's evidence bundle from the Landscape."""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, or_, select

from governance_pipeline.contracts.data_protection import (
    ErasureRecord,
    HoldTarget,
    LegalHold,
    PurgedRun,
    PurgeRecord,
)
from governance_pipeline.contracts.records import Run
from governance_pipeline.governance.exports.models_data_protection import (
    DataProtectionInfo,
    ErasureInfo,
    HoldInfo,
    PurgeInfo,
)
from governance_pipeline.landscape.schema import incidents
from governance_pipeline.landscape.schema_data_protection import (
    erasures,
    legal_holds,
    purged_runs,
    purges,
)


def data_protection_info(conn: Connection, run: Run) -> DataProtectionInfo:
    config = orjson.loads(run.config_json)
    retention = config.get("retention") or {}
    return DataProtectionInfo(
        subject_fields=list(config.get("subject_fields") or []),
        retention={k: str(v) for k, v in sorted(retention.items()) if v},
        erasures=_erasures(conn, run.run_id), purges=_purges(conn, run.run_id),
        holds=_holds(conn, run.run_id))


def _erasures(conn: Connection, run_id: str) -> list[ErasureInfo]:
    found = [ErasureRecord.from_row(r) for r in conn.execute(
        select(erasures).order_by(erasures.c.created_at, erasures.c.erasure_id)).mappings()]
    return [ErasureInfo(
        erasure_id=e.erasure_id, actor=e.actor, reason=e.reason, at=e.created_at,
        selector=e.selector.value, field_name=e.field_name, value_hmac=e.value_hmac,
        hmac_key_id=e.hmac_key_id, run_id=e.run_id, row_index=e.row_index,
        key_count=e.key_count, payload_count=e.payload_count, payloads_digest=e.payloads_digest,
        row_count=e.row_count) for e in found
        if run_id in orjson.loads(e.runs_json) or e.run_id == run_id]


def _purges(conn: Connection, run_id: str) -> list[PurgeInfo]:
    out = []
    for row in conn.execute(select(purged_runs, *(c.label(f"p_{c.name}") for c in purges.c))
                            .join(purges, purges.c.purge_id == purged_runs.c.purge_id)
                            .where(purged_runs.c.run_id == run_id)
                            .order_by(purged_runs.c.created_at)).mappings():
        pr = PurgedRun.from_row(row)
        p = PurgeRecord.from_row({c.name: row[f"p_{c.name}"] for c in purges.c})
        out.append(PurgeInfo(purge_id=p.purge_id, actor=p.actor, reason=p.reason,
                             at=p.created_at, scope=pr.scope.value,
                             retention_days=pr.retention_days, payload_count=pr.payload_count,
                             payloads_digest=pr.payloads_digest, ledger_seq=pr.ledger_seq,
                             ledger_head=pr.ledger_head))
    return out


def _holds(conn: Connection, run_id: str) -> list[HoldInfo]:
    mine = select(incidents.c.incident_id).where(incidents.c.run_id == run_id)
    query = select(legal_holds).where(or_(
        (legal_holds.c.target_kind == HoldTarget.RUN.value) & (legal_holds.c.target_id == run_id),
        (legal_holds.c.target_kind == HoldTarget.INCIDENT.value)
        & legal_holds.c.target_id.in_(mine))).order_by(legal_holds.c.placed_at)
    return [HoldInfo(hold_id=h.hold_id, target=f"{h.target_kind.value} {h.target_id}",
                     reason=h.reason, placed_by=h.placed_by, placed_at=h.placed_at,
                     released_by=h.released_by, release_reason=h.release_reason,
                     released_at=h.released_at)
            for h in (LegalHold.from_row(r) for r in conn.execute(query).mappings())]

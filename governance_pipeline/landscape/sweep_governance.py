"""Sweep checks of runtime governance: decisions bound to their run's snapshot, stops explained.

Like the token-model checks (``sweep.py``), each is one set-based query listing every offending
record. They cover what the schema cannot express: that a decision names the snapshot its run
started under, with that snapshot's hash; that every run stopped by policy has its inflection
point — an enforced, blocking decision — and an incident pointing at it; and that no other run
has one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Select, and_, exists, or_, select

from governance_pipeline.contracts.enums import PolicyMode, RunStatus
from governance_pipeline.contracts.errors import Finding
from governance_pipeline.landscape.schema import (
    incidents,
    inflection_points,
    policy_decisions,
    policy_snapshots,
    runs,
)

_STOPPED = RunStatus.FAILED_POLICY.value


def _scoped(query: Select[Any], column: Column[Any], run_id: str | None) -> Select[Any]:
    return query if run_id is None else query.where(column == run_id)


def decision_not_under_run_snapshot(conn: Connection, run_id: str | None) -> list[Finding]:
    d, r, s = policy_decisions, runs, policy_snapshots
    q = (select(d.c.decision_id, d.c.run_id, d.c.snapshot_id, d.c.snapshot_hash,
                r.c.policy_snapshot_id, s.c.content_hash)
         .join_from(d, r, r.c.run_id == d.c.run_id)
         .outerjoin(s, s.c.snapshot_id == d.c.snapshot_id)
         .where(or_(r.c.policy_snapshot_id.is_(None), d.c.snapshot_id != r.c.policy_snapshot_id,
                    s.c.content_hash.is_(None), d.c.snapshot_hash != s.c.content_hash))
         .order_by(d.c.run_id, d.c.decision_id))
    return [Finding("decision_not_under_run_snapshot", "policy_decisions", row.decision_id,
                    f"decision {row.decision_id} names snapshot {row.snapshot_id} "
                    f"({row.snapshot_hash[:12]}…); its run started under "
                    f"{row.policy_snapshot_id} ({(row.content_hash or 'missing')[:12]})",
                    scope=row.run_id,
                    extra={"snapshot_id": row.snapshot_id, "run_snapshot": row.policy_snapshot_id})
            for row in conn.execute(_scoped(q, d.c.run_id, run_id))]


def policy_stop_unexplained(conn: Connection, run_id: str | None) -> list[Finding]:
    """A failed_policy run without an inflection point or without an incident pointing at it."""
    r, p, i = runs, inflection_points, incidents
    has_point = p.c.inflection_id.is_not(None)  # the outer join found one
    has_incident = exists().where(i.c.run_id == r.c.run_id,
                                  i.c.inflection_id == p.c.inflection_id)
    q = (select(r.c.run_id, p.c.inflection_id)
         .outerjoin(p, p.c.run_id == r.c.run_id)
         .where(r.c.status == _STOPPED, or_(~has_point, ~has_incident))
         .order_by(r.c.run_id))
    return [Finding("policy_stop_unexplained", "runs", row.run_id,
                    f"run {row.run_id} was stopped by policy but has "
                    + ("no inflection point" if row.inflection_id is None
                       else f"no incident for its inflection point {row.inflection_id}"),
                    scope=row.run_id)
            for row in conn.execute(_scoped(q, r.c.run_id, run_id))]


def inflection_point_invalid(conn: Connection, run_id: str | None) -> list[Finding]:
    """An inflection point on a run not stopped by policy, or not on a blocking decision."""
    p, r, d = inflection_points, runs, policy_decisions
    q = (select(p.c.inflection_id, p.c.run_id, r.c.status, d.c.would_block, d.c.mode,
                d.c.token_id, p.c.token_id.label("point_token"))
         .join_from(p, r, r.c.run_id == p.c.run_id)
         .outerjoin(d, d.c.decision_id == p.c.decision_id)
         .where(or_(r.c.status != _STOPPED, d.c.decision_id.is_(None),
                    ~and_(d.c.would_block == 1, d.c.mode == PolicyMode.ENFORCED.value,
                          d.c.token_id == p.c.token_id)))
         .order_by(p.c.run_id))
    return [Finding("inflection_point_invalid", "inflection_points", row.inflection_id,
                    f"inflection point {row.inflection_id} (run {row.status}) does not rest on "
                    "an enforced blocking decision of its token", scope=row.run_id,
                    extra={"run_status": row.status, "would_block": row.would_block,
                           "mode": row.mode})
            for row in conn.execute(_scoped(q, p.c.run_id, run_id))]


GOVERNANCE_CHECKS = (decision_not_under_run_snapshot, policy_stop_unexplained,
                     inflection_point_invalid)

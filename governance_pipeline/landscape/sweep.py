"""The audit sweep: set-based queries that find broken invariants of the token model.

Each check is one SQL statement over the whole Landscape or one run, and lists every offending
record — the token, state, call or batch involved — as a ``Finding``. The schema prevents most of
these states; the sweep exists for the database where a constraint was dropped, bypassed, or
never existed when the record was written, and for what constraints cannot express (a token
with no terminal outcome after its run ended).

A token's outcome is terminal when it is not ``buffered``, judged by the ``outcome`` column:
the ``is_terminal`` flag is itself checked (``outcome_terminal_flag_mismatch``) rather than
trusted by the other checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Select, and_, exists, func, or_, select

from governance_pipeline.contracts.enums import (
    BatchStatus,
    NodeStateStatus,
    NodeType,
    Outcome,
    RunStatus,
)
from governance_pipeline.contracts.errors import Finding, NotFoundError
from governance_pipeline.landscape import ledger, logical_states
from governance_pipeline.landscape.queries import Source, reading, run_exists
from governance_pipeline.landscape.sweep_governance import GOVERNANCE_CHECKS
from governance_pipeline.landscape.schema import (
    LEDGERED,
    batches,
    calls,
    node_states,
    runs,
    token_outcomes,
    token_parents,
    tokens,
)

_BUFFERED = Outcome.BUFFERED.value
_RUNNING = RunStatus.RUNNING.value
_COMPLETED_RUN = RunStatus.COMPLETED.value
# Outcomes that end a token in a sink (quarantined rows may be written to a quarantine sink).
_SINK_OUTCOMES = (Outcome.COMPLETED.value, Outcome.ROUTED.value, Outcome.DIVERTED.value,
                  Outcome.QUARANTINED.value)
_TERMINAL_VALUES = tuple(o.value for o in Outcome if o.is_terminal)
_FINAL_BATCH = (BatchStatus.COMPLETED.value, BatchStatus.FAILED.value)
_REQUIRED_COLUMNS = tuple(sorted({f for o in Outcome for f in o.required_fields}))


@dataclass(frozen=True)
class SweepReport:
    run_ids: list[str]
    checks: list[str]
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def as_dict(self) -> dict[str, Any]:
        counts = {name: 0 for name in self.checks}
        for f in self.findings:
            counts[f.check] = counts.get(f.check, 0) + 1
        return {"ok": self.ok, "run_ids": list(self.run_ids), "checks": list(self.checks),
                "finding_counts": counts, "findings": [f.as_dict() for f in self.findings]}


def _scoped(query: Select[Any], column: Column[Any], run_id: str | None) -> Select[Any]:
    return query if run_id is None else query.where(column == run_id)


def _has_terminal(token_col: Column[Any]) -> Any:
    other = token_outcomes.alias("terminal_outcome")
    return exists().where(other.c.token_id == token_col, other.c.outcome != _BUFFERED)


# --- 1, 2: exactly one terminal outcome per token -----------------------------------------------
def tokens_without_terminal_outcome(conn: Connection, run_id: str | None) -> list[Finding]:
    """Tokens with no terminal outcome in runs that have ended (a running run has tokens in flight)."""
    t, r = tokens, runs
    q = (select(t.c.token_id, t.c.run_id, r.c.status)
         .join_from(t, r, t.c.run_id == r.c.run_id)
         .where(r.c.status != _RUNNING, ~_has_terminal(t.c.token_id))
         .order_by(t.c.run_id, t.c.token_id))
    return [Finding("tokens_without_terminal_outcome", "tokens", row.token_id,
                    f"token {row.token_id} has no terminal outcome but its run is {row.status}",
                    scope=row.run_id, extra={"token_id": row.token_id, "run_status": row.status})
            for row in conn.execute(_scoped(q, t.c.run_id, run_id))]


def tokens_with_multiple_terminal_outcomes(conn: Connection, run_id: str | None) -> list[Finding]:
    o = token_outcomes
    repeated = _scoped(select(o.c.token_id).where(o.c.outcome != _BUFFERED), o.c.run_id, run_id) \
        .group_by(o.c.token_id).having(func.count() > 1)
    q = (select(o.c.outcome_id, o.c.run_id, o.c.token_id, o.c.outcome)
         .where(o.c.outcome != _BUFFERED, o.c.token_id.in_(repeated))
         .order_by(o.c.run_id, o.c.token_id, o.c.recorded_at, o.c.outcome_id))
    grouped: dict[str, list[Any]] = {}
    for row in conn.execute(q):
        grouped.setdefault(row.token_id, []).append(row)
    return [Finding("tokens_with_multiple_terminal_outcomes", "tokens", token_id,
                    f"token {token_id} has {len(rows)} terminal outcomes: "
                    + ", ".join(r.outcome for r in rows),
                    scope=rows[0].run_id,
                    extra={"token_id": token_id, "outcomes": [r.outcome for r in rows],
                           "outcome_ids": [r.outcome_id for r in rows]})
            for token_id, rows in grouped.items()]


# --- 3: each outcome well-formed ------------------------------------------------------------------
def outcome_missing_required_fields(conn: Connection, run_id: str | None) -> list[Finding]:
    o = token_outcomes
    missing = or_(*(and_(o.c.outcome == outcome.value,
                         or_(*(o.c[name].is_(None) for name in outcome.required_fields)))
                    for outcome in Outcome))
    q = (select(o.c.outcome_id, o.c.run_id, o.c.token_id, o.c.outcome,
                *(o.c[name] for name in _REQUIRED_COLUMNS))
         .where(missing).order_by(o.c.run_id, o.c.token_id, o.c.outcome_id))
    findings = []
    for row in conn.execute(_scoped(q, o.c.run_id, run_id)).mappings():
        absent = [n for n in Outcome(row["outcome"]).required_fields if row[n] is None]
        findings.append(Finding(
            "outcome_missing_required_fields", "token_outcomes", row["outcome_id"],
            f"{row['outcome']} outcome of token {row['token_id']} lacks {', '.join(absent)}",
            scope=row["run_id"], extra={"token_id": row["token_id"], "outcome": row["outcome"],
                                        "missing": absent}))
    return findings


def outcome_terminal_flag_mismatch(conn: Connection, run_id: str | None) -> list[Finding]:
    """is_terminal must be 0 for buffered and 1 for every other (known) outcome."""
    o = token_outcomes
    consistent = or_(and_(o.c.outcome == _BUFFERED, o.c.is_terminal == 0),
                     and_(o.c.outcome.in_(_TERMINAL_VALUES), o.c.is_terminal == 1))
    q = (select(o.c.outcome_id, o.c.run_id, o.c.token_id, o.c.outcome, o.c.is_terminal)
         .where(or_(o.c.is_terminal.is_(None), ~consistent))
         .order_by(o.c.run_id, o.c.token_id, o.c.outcome_id))
    findings = []
    for row in conn.execute(_scoped(q, o.c.run_id, run_id)):
        known = row.outcome in _TERMINAL_VALUES or row.outcome == _BUFFERED
        why = (f"is_terminal={row.is_terminal!r} contradicts outcome {row.outcome}" if known
               else f"unknown outcome {row.outcome!r}")
        findings.append(Finding(
            "outcome_terminal_flag_mismatch", "token_outcomes", row.outcome_id,
            f"outcome of token {row.token_id}: {why}", scope=row.run_id,
            extra={"token_id": row.token_id, "outcome": row.outcome,
                   "is_terminal": row.is_terminal}))
    return findings


# --- 4: sink outcomes and sink states agree ------------------------------------------------------
def completed_outcome_without_sink_state(conn: Connection, run_id: str | None) -> list[Finding]:
    o = token_outcomes
    written = logical_states.state_exists(o.c.token_id, o.c.sink_name, NodeStateStatus.COMPLETED)
    q = (select(o.c.outcome_id, o.c.run_id, o.c.token_id, o.c.sink_name)
         .where(o.c.outcome == Outcome.COMPLETED.value, ~written)
         .order_by(o.c.run_id, o.c.token_id, o.c.outcome_id))
    return [Finding("completed_outcome_without_sink_state", "token_outcomes", row.outcome_id,
                    f"token {row.token_id} is completed at sink {row.sink_name!r} but has no "
                    "completed node state there", scope=row.run_id,
                    extra={"token_id": row.token_id, "sink_name": row.sink_name})
            for row in conn.execute(_scoped(q, o.c.run_id, run_id))]


def sink_state_without_matching_outcome(conn: Connection, run_id: str | None) -> list[Finding]:
    """A completed state at a sink node must be backed by a completed/routed/diverted/quarantined
    outcome naming that sink."""
    ns = logical_states.node_states_view(run_id, node_type=NodeType.SINK).subquery("ns")
    o = token_outcomes.alias("sink_outcome")
    matched = exists().where(o.c.token_id == ns.c.token_id, o.c.outcome.in_(_SINK_OUTCOMES),
                             o.c.sink_name == ns.c.node_id)
    t = token_outcomes.alias("any_terminal")
    actual = (select(func.min(t.c.outcome))
              .where(t.c.token_id == ns.c.token_id, t.c.outcome != _BUFFERED)
              .scalar_subquery())
    q = (select(ns.c.state_id, ns.c.run_id, ns.c.token_id, ns.c.node_id,
                actual.label("terminal_outcome"))
         .where(ns.c.status == NodeStateStatus.COMPLETED.value, ~matched)
         .order_by(ns.c.run_id, ns.c.token_id, ns.c.state_id))
    return [Finding("sink_state_without_matching_outcome", "node_states", row.state_id,
                    f"token {row.token_id} completed at sink {row.node_id!r} but its terminal "
                    f"outcome is {row.terminal_outcome or 'missing'}, not one at that sink",
                    scope=row.run_id,
                    extra={"token_id": row.token_id, "node_id": row.node_id,
                           "terminal_outcome": row.terminal_outcome})
            for row in conn.execute(_scoped(q, ns.c.run_id, run_id))]


# --- 5: fork and expand lineage -------------------------------------------------------------------
def child_token_without_parent(conn: Connection, run_id: str | None) -> list[Finding]:
    t, tp = tokens, token_parents
    q = (select(t.c.token_id, t.c.run_id, t.c.fork_group_id, t.c.expand_group_id)
         .where(or_(t.c.fork_group_id.is_not(None), t.c.expand_group_id.is_not(None)),
                ~exists().where(tp.c.token_id == t.c.token_id))
         .order_by(t.c.run_id, t.c.token_id))
    return [Finding("child_token_without_parent", "tokens", row.token_id,
                    f"token {row.token_id} belongs to "
                    + (f"fork group {row.fork_group_id}" if row.fork_group_id
                       else f"expand group {row.expand_group_id}")
                    + " but has no parent link", scope=row.run_id,
                    extra={"token_id": row.token_id, "fork_group_id": row.fork_group_id,
                           "expand_group_id": row.expand_group_id})
            for row in conn.execute(_scoped(q, t.c.run_id, run_id))]


def parent_without_fork_or_expand_outcome(conn: Connection, run_id: str | None) -> list[Finding]:
    """A fork (expand) child's parent must have a forked (expanded) outcome of the child's group.

    Parent links of coalesced or aggregated tokens (no fork/expand group) are not judged here.
    """
    tp, o = token_parents, token_outcomes
    child = tokens.alias("child")
    made_it = exists().where(o.c.token_id == tp.c.parent_token_id, or_(
        and_(o.c.outcome == Outcome.FORKED.value, o.c.fork_group_id == child.c.fork_group_id),
        and_(o.c.outcome == Outcome.EXPANDED.value,
             o.c.expand_group_id == child.c.expand_group_id)))
    q = (select(tp.c.token_id, tp.c.parent_token_id, tp.c.run_id, child.c.fork_group_id,
                child.c.expand_group_id)
         .join_from(tp, child, child.c.token_id == tp.c.token_id)
         .where(or_(child.c.fork_group_id.is_not(None), child.c.expand_group_id.is_not(None)),
                ~made_it)
         .order_by(tp.c.run_id, tp.c.token_id, tp.c.parent_token_id))
    spec = LEDGERED["token_parents"]
    return [Finding("parent_without_fork_or_expand_outcome", "token_parents",
                    ledger.record_key(spec, row._mapping),
                    f"parent {row.parent_token_id} of token {row.token_id} has no "
                    + ("forked" if row.fork_group_id else "expanded")
                    + " outcome for the child's group", scope=row.run_id,
                    extra={"token_id": row.token_id, "parent_token_id": row.parent_token_id,
                           "fork_group_id": row.fork_group_id,
                           "expand_group_id": row.expand_group_id})
            for row in conn.execute(_scoped(q, tp.c.run_id, run_id))]


# --- 6, 7: node states closed, calls with one parent ----------------------------------------------
def node_states_open_after_run_end(conn: Connection, run_id: str | None) -> list[Finding]:
    ns, r = node_states, runs
    q = (select(ns.c.state_id, ns.c.run_id, ns.c.token_id, ns.c.node_id, r.c.status)
         .join_from(ns, r, r.c.run_id == ns.c.run_id)
         .where(r.c.status != _RUNNING, ns.c.status == NodeStateStatus.OPEN.value)
         .order_by(ns.c.run_id, ns.c.token_id, ns.c.state_id))
    return [Finding("node_states_open_after_run_end", "node_states", row.state_id,
                    f"state of token {row.token_id} at node {row.node_id!r} is still open but "
                    f"the run is {row.status}", scope=row.run_id,
                    extra={"token_id": row.token_id, "node_id": row.node_id,
                           "run_status": row.status})
            for row in conn.execute(_scoped(q, ns.c.run_id, run_id))]


def call_parent_xor_violation(conn: Connection, run_id: str | None) -> list[Finding]:
    c = calls
    both = and_(c.c.state_id.is_not(None), c.c.operation_id.is_not(None))
    neither = and_(c.c.state_id.is_(None), c.c.operation_id.is_(None))
    q = (select(c.c.call_id, c.c.run_id, c.c.state_id, c.c.operation_id)
         .where(or_(both, neither)).order_by(c.c.run_id, c.c.call_id))
    return [Finding("call_parent_xor_violation", "calls", row.call_id,
                    f"call {row.call_id} has "
                    + ("both a node state and an operation as parent" if row.state_id
                       else "neither a node state nor an operation as parent"),
                    scope=row.run_id,
                    extra={"state_id": row.state_id, "operation_id": row.operation_id})
            for row in conn.execute(_scoped(q, c.c.run_id, run_id))]


# --- 8, 9: nothing left waiting in a completed run ------------------------------------------------
def tokens_buffered_in_completed_run(conn: Connection, run_id: str | None) -> list[Finding]:
    o, r = token_outcomes, runs
    q = (select(o.c.token_id, o.c.run_id, func.max(o.c.batch_id).label("batch_id"))
         .join_from(o, r, r.c.run_id == o.c.run_id)
         .where(r.c.status == _COMPLETED_RUN, o.c.outcome == _BUFFERED,
                ~_has_terminal(o.c.token_id))
         .group_by(o.c.run_id, o.c.token_id).order_by(o.c.run_id, o.c.token_id))
    return [Finding("tokens_buffered_in_completed_run", "tokens", row.token_id,
                    f"token {row.token_id} is still buffered (batch {row.batch_id}) in a "
                    "completed run", scope=row.run_id,
                    extra={"token_id": row.token_id, "batch_id": row.batch_id})
            for row in conn.execute(_scoped(q, o.c.run_id, run_id))]


def batches_unfinished_in_completed_run(conn: Connection, run_id: str | None) -> list[Finding]:
    b, r = batches, runs
    q = (select(b.c.batch_id, b.c.run_id, b.c.node_id, b.c.status)
         .join_from(b, r, r.c.run_id == b.c.run_id)
         .where(r.c.status == _COMPLETED_RUN, b.c.status.not_in(_FINAL_BATCH))
         .order_by(b.c.run_id, b.c.batch_id))
    return [Finding("batches_unfinished_in_completed_run", "batches", row.batch_id,
                    f"batch {row.batch_id} at node {row.node_id!r} is {row.status} in a "
                    "completed run", scope=row.run_id,
                    extra={"node_id": row.node_id, "status": row.status})
            for row in conn.execute(_scoped(q, b.c.run_id, run_id))]


Check = Callable[[Connection, str | None], list[Finding]]

CHECKS: tuple[Check, ...] = (
    tokens_without_terminal_outcome,
    tokens_with_multiple_terminal_outcomes,
    outcome_missing_required_fields,
    outcome_terminal_flag_mismatch,
    completed_outcome_without_sink_state,
    sink_state_without_matching_outcome,
    child_token_without_parent,
    parent_without_fork_or_expand_outcome,
    node_states_open_after_run_end,
    logical_states.compact_state_conflicts,
    call_parent_xor_violation,
    tokens_buffered_in_completed_run,
    batches_unfinished_in_completed_run,
    *GOVERNANCE_CHECKS,
)
CHECK_NAMES: tuple[str, ...] = tuple(check.__name__ for check in CHECKS)


def sweep(source: Source, run_id: str | None = None, *,
          checks: Sequence[Check] = CHECKS) -> SweepReport:
    """Run every check over one run (``NotFoundError`` if unknown) or over all runs."""
    with reading(source, snapshot=True) as conn:
        if run_id is not None:
            if not run_exists(conn, run_id):
                raise NotFoundError(f"no run {run_id!r} in this Landscape",
                                    details={"run_id": run_id})
            run_ids = [run_id]
        else:
            run_ids = list(conn.execute(
                select(runs.c.run_id).order_by(runs.c.started_at, runs.c.run_id)).scalars())
        findings: list[Finding] = []
        for check in checks:
            findings.extend(check(conn, run_id))
    return SweepReport(run_ids=run_ids, checks=[c.__name__ for c in checks], findings=findings)

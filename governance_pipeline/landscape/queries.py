"""Read models over the Landscape: runs and their outcome counts.

Every record read here goes through ``Record.from_row`` (Tier-1): a value our own database should
never hold — an unknown status, a NULL in a required column — raises ``AuditIntegrityError``
rather than being shown to an operator as if it were true.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    exists,
    func,
    literal,
    select,
    union_all,
)

from governance_pipeline.contracts.enums import NodeStateStatus, Outcome
from governance_pipeline.contracts.errors import AuditIntegrityError, NotFoundError
from governance_pipeline.contracts.records import Run
from governance_pipeline.landscape.schema import node_states, runs, token_outcomes, tokens
from governance_pipeline.landscape.store import Landscape

Source = Landscape | Engine | Connection


@contextmanager
def reading(source: Source, *, snapshot: bool = False) -> Iterator[Connection]:
    """A connection for reads: the caller's own, or a new one closed when the block ends.

    ``snapshot`` makes every statement of a new PostgreSQL connection see the same snapshot
    (REPEATABLE READ), so a multi-query report is not torn by a writer committing between its
    queries. SQLite transactions are serialisable already; a caller's connection is left as is.
    """
    if isinstance(source, Connection):
        yield source
        return
    engine = source.engine if isinstance(source, Landscape) else source
    with engine.connect() as conn:
        if snapshot and conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run with what became of its tokens.

    ``outcome_counts`` counts tokens by terminal outcome; ``buffered`` counts tokens whose only
    outcomes are ``buffered`` (still waiting in an aggregation). A token buffered and later
    consumed is counted once, under its terminal outcome.
    """

    run: Run
    outcome_counts: dict[str, int] = field(default_factory=dict)
    token_count: int = 0
    open_states: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.run.to_row(), "outcome_counts": dict(self.outcome_counts),
                "token_count": self.token_count, "open_states": self.open_states}


def get_run(source: Source, run_id: str) -> Run:
    with reading(source) as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no run {run_id!r} in this Landscape", details={"run_id": run_id})
    return Run.from_row(row)


def run_exists(source: Source, run_id: str) -> bool:
    with reading(source) as conn:
        found = conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
    return found is not None


def list_runs(source: Source, *, limit: int | None = None) -> list[RunSummary]:
    """Runs newest first, each with its counts; the counts of all listed runs come from one query."""
    if limit is not None and limit < 0:
        raise ValueError("limit must be non-negative")
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
    if limit is not None:
        query = query.limit(limit)
    with reading(source) as conn:
        run_list = [Run.from_row(r) for r in conn.execute(query).mappings()]
        if not run_list:
            return []
        ids = [r.run_id for r in run_list]
        count_rows = conn.execute(_counts_query(ids)).all()
    counts: dict[str, dict[str, Any]] = {
        rid: {"outcomes": {}, "tokens": 0, "open_states": 0} for rid in ids}
    for run_id, kind, key, n in count_rows:
        _tier1_count(run_id, kind, key, n)
        if kind == "outcome":
            counts[run_id]["outcomes"][key] = n
        else:
            counts[run_id][kind] = n
    return [RunSummary(run=r, outcome_counts=counts[r.run_id]["outcomes"],
                       token_count=counts[r.run_id]["tokens"],
                       open_states=counts[r.run_id]["open_states"]) for r in run_list]


_KNOWN_OUTCOMES = frozenset(o.value for o in Outcome)


def _tier1_count(run_id: str, kind: str, key: str, n: Any) -> None:
    if type(n) is not int or n < 0:
        raise AuditIntegrityError(f"run {run_id}: {kind} count is not a count (got {n!r})",
                                  details={"run_id": run_id})
    if kind == "outcome" and key not in _KNOWN_OUTCOMES:
        raise AuditIntegrityError(f"run {run_id}: unknown token outcome {key!r}",
                                  details={"run_id": run_id, "outcome": key})


def _counts_query(run_ids: list[str]) -> Any:
    """(run_id, kind, key, count) rows for terminal outcomes, still-buffered tokens, tokens and
    open node states: one grouped statement for every listed run."""
    o = token_outcomes
    terminal = o.alias("terminal")
    has_terminal = exists().where(and_(terminal.c.token_id == o.c.token_id,
                                       terminal.c.outcome != Outcome.BUFFERED.value))

    def tag(text: str) -> Any:
        return literal(text, String)

    finished = (select(o.c.run_id, tag("outcome"), o.c.outcome, func.count())
                .where(o.c.run_id.in_(run_ids), o.c.outcome != Outcome.BUFFERED.value)
                .group_by(o.c.run_id, o.c.outcome))
    waiting = (select(o.c.run_id, tag("outcome"), tag(Outcome.BUFFERED.value),
                      func.count(o.c.token_id.distinct()))
               .where(o.c.run_id.in_(run_ids), o.c.outcome == Outcome.BUFFERED.value,
                      ~has_terminal)
               .group_by(o.c.run_id))
    token_rows = (select(tokens.c.run_id, tag("tokens"), tag(""), func.count())
                  .where(tokens.c.run_id.in_(run_ids)).group_by(tokens.c.run_id))
    open_rows = (select(node_states.c.run_id, tag("open_states"), tag(""), func.count())
                 .where(node_states.c.run_id.in_(run_ids),
                        node_states.c.status == NodeStateStatus.OPEN.value)
                 .group_by(node_states.c.run_id))
    return union_all(finished, waiting, token_rows, open_rows)

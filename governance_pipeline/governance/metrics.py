"""Operational metrics of the Landscape in the Prometheus exposition format.

``LandscapeCollector`` is a ``prometheus_client`` custom collector: every scrape runs a handful
of aggregate queries against the audit database (one read snapshot), so the numbers are the
Landscape's own — nothing is counted in process memory, and any number of exporters, or the
``metrics`` command run once, agree. Formatting is ``prometheus_client``'s
(``generate_latest``); ``docs/operations.md`` lists every metric.

Times come from the Landscape's clock (``overdue`` stages are those whose ``due_at`` has passed
by it). "Recent runs" are the newest ``recent_runs`` runs that have ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select

from governance_pipeline.contracts.clock import from_iso, to_iso
from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    DeliveryStatus,
    Outcome,
    RunStatus,
    StageStatus,
)
from governance_pipeline.landscape.verify import _read_snapshot as read_snapshot
from governance_pipeline.landscape.schema import (
    approval_stages,
    approvals,
    event_deliveries,
    inflection_points,
    operator_events,
    policy_decisions,
    rows,
    runs,
    token_outcomes,
)
from governance_pipeline.landscape.store import Landscape

PREFIX = "governance"
DEFAULT_RECENT_RUNS = 10


@dataclass(frozen=True, slots=True)
class RecentRun:
    run_id: str
    pipeline: str
    status: str
    rows: int
    quarantined: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _grouped(conn: Connection, *columns: Any, where: Any = None) -> list[tuple[Any, ...]]:
    query = select(*columns, func.count()).group_by(*columns)
    if where is not None:
        query = query.where(where)
    return [tuple(r) for r in conn.execute(query)]


def _recent(conn: Connection, limit: int) -> list[RecentRun]:
    ended = conn.execute(
        select(runs.c.run_id, runs.c.pipeline_name, runs.c.status, runs.c.started_at,
               runs.c.ended_at).where(runs.c.ended_at.is_not(None))
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)).all()
    ids = [r.run_id for r in ended]
    if not ids:
        return []
    row_counts = dict(conn.execute(select(rows.c.run_id, func.count())
                                   .where(rows.c.run_id.in_(ids)).group_by(rows.c.run_id)).all())
    quarantined = dict(conn.execute(
        select(token_outcomes.c.run_id, func.count())
        .where(token_outcomes.c.run_id.in_(ids),
               token_outcomes.c.outcome == Outcome.QUARANTINED.value)
        .group_by(token_outcomes.c.run_id)).all())
    return [RecentRun(r.run_id, r.pipeline_name, r.status, int(row_counts.get(r.run_id, 0)),
                      int(quarantined.get(r.run_id, 0)),
                      (from_iso(r.ended_at) - from_iso(r.started_at)).total_seconds())
            for r in ended]


class LandscapeCollector(Collector):
    """Reads the Landscape at every scrape (``registry.register(LandscapeCollector(ls))``)."""

    def __init__(self, landscape: Landscape, *, recent_runs: int = DEFAULT_RECENT_RUNS) -> None:
        self.landscape = landscape
        self.recent_runs = recent_runs

    def describe(self) -> list[Metric]:
        # Declared families without querying: registering must not touch the database.
        return []

    def collect(self) -> Iterator[Metric]:
        now = to_iso(self.landscape.clock.now())
        # One read snapshot that never takes SQLite's write lock (verify reads the same way):
        # a scrape must not stall a pipeline writing its chunks.
        with read_snapshot(self.landscape.engine) as conn:
            yield from self._runs(conn)
            yield from self._policy(conn)
            yield from self._approvals(conn, now)
            yield from self._deliveries(conn)
            yield from self._operators(conn)

    def _runs(self, conn: Connection) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(f"{PREFIX}_runs", "Runs in the Landscape by status.",
                                      labels=["status"])
        counts = dict(_grouped(conn, runs.c.status))
        for status in RunStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield by_status
        outcomes = CounterMetricFamily(f"{PREFIX}_token_outcomes",
                                       "Terminal token outcomes recorded, by outcome.",
                                       labels=["outcome"])
        done = dict(_grouped(conn, token_outcomes.c.outcome,
                             where=token_outcomes.c.is_terminal == 1))
        for outcome in Outcome:
            if outcome.is_terminal:
                outcomes.add_metric([outcome.value], done.get(outcome.value, 0))
        yield outcomes
        recent = _recent(conn, self.recent_runs)
        rate = GaugeMetricFamily(f"{PREFIX}_run_rows_per_second",
                                 "Source rows per second of wall time, recent ended runs.",
                                 labels=["run_id", "pipeline", "status"])
        ratio = GaugeMetricFamily(f"{PREFIX}_run_quarantine_ratio",
                                  "Quarantined tokens per source row, recent ended runs.",
                                  labels=["run_id", "pipeline"])
        for r in recent:
            rate.add_metric([r.run_id, r.pipeline, r.status], r.rows_per_second)
            ratio.add_metric([r.run_id, r.pipeline], r.quarantined / r.rows if r.rows else 0.0)
        yield rate
        yield ratio
        total_rows = sum(r.rows for r in recent)
        yield GaugeMetricFamily(
            f"{PREFIX}_quarantine_ratio", "Quarantined tokens per source row over the recent "
            "ended runs.", value=sum(r.quarantined for r in recent) / total_rows
            if total_rows else 0.0)

    def _policy(self, conn: Connection) -> Iterator[Metric]:
        decisions = CounterMetricFamily(f"{PREFIX}_policy_decisions",
                                        "Policy rule evaluations recorded, by mode and result.",
                                        labels=["mode", "result"])
        for mode, result, count in _grouped(conn, policy_decisions.c.mode,
                                            policy_decisions.c.result):
            decisions.add_metric([mode, result], count)
        yield decisions
        stops = conn.execute(select(func.count()).select_from(inflection_points)).scalar_one()
        yield CounterMetricFamily(f"{PREFIX}_policy_stops",
                                  "Runs stopped by an enforced policy (inflection points).",
                                  value=stops)

    def _approvals(self, conn: Connection, now: str) -> Iterator[Metric]:
        pending = conn.execute(select(func.count()).select_from(approvals).where(
            approvals.c.status == ApprovalStatus.PENDING.value)).scalar_one()
        yield GaugeMetricFamily(f"{PREFIX}_approvals_pending",
                                "Approval requests waiting for a decision.", value=pending)
        overdue = conn.execute(select(func.count()).select_from(approval_stages).join(
            approvals, approvals.c.approval_id == approval_stages.c.approval_id).where(
            approvals.c.status == ApprovalStatus.PENDING.value,
            approval_stages.c.status == StageStatus.ACTIVE.value,
            approval_stages.c.due_at < now)).scalar_one()
        yield GaugeMetricFamily(f"{PREFIX}_approval_stages_overdue",
                                "Active approval stages past their SLA (due_at).", value=overdue)

    def _deliveries(self, conn: Connection) -> Iterator[Metric]:
        family = GaugeMetricFamily(f"{PREFIX}_event_deliveries",
                                   "Event deliveries by status and subscriber.",
                                   labels=["subscriber", "status"])
        failed = 0
        for subscriber, status, count in _grouped(conn, event_deliveries.c.subscriber,
                                                  event_deliveries.c.status):
            family.add_metric([subscriber, status], count)
            failed += count if status == DeliveryStatus.FAILED.value else 0
        yield family
        yield GaugeMetricFamily(f"{PREFIX}_event_delivery_failures",
                                "Event deliveries that exhausted their retries.", value=failed)

    def _operators(self, conn: Connection) -> Iterator[Metric]:
        family = CounterMetricFamily(f"{PREFIX}_operator_actions",
                                     "Operator actions recorded, by action and result.",
                                     labels=["action", "result"])
        for action, result, count in _grouped(conn, operator_events.c.action,
                                              operator_events.c.result):
            family.add_metric([action, result], count)
        yield family


def registry_for(landscape: Landscape, *, recent_runs: int = DEFAULT_RECENT_RUNS
                 ) -> CollectorRegistry:
    """A registry holding only the Landscape's metrics (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LandscapeCollector(landscape, recent_runs=recent_runs))
    return registry


def exposition(landscape: Landscape, *, recent_runs: int = DEFAULT_RECENT_RUNS) -> str:
    """The Prometheus text format of the Landscape's metrics, now."""
    return generate_latest(registry_for(landscape, recent_runs=recent_runs)).decode("utf-8")


def scalar_metrics(landscape: Landscape) -> dict[str, float]:
    """The unlabelled metrics as ``{name: value}`` (asset metadata; a dashboard's headline)."""
    found: dict[str, float] = {}
    for family in LandscapeCollector(landscape).collect():
        for sample in family.samples:
            if not sample.labels and not sample.name.endswith("_created"):
                found[sample.name] = float(sample.value)
    return found

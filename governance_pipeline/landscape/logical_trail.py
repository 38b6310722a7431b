"""The logical node states and routing events of tokens, read as records (explain, bundles).

``logical_states.py`` describes the logical model and its physical encoding and gives the
set-based SQL (``node_states_view``, ``state_exists``) the sweep builds on. This module reads the
same logical trail as Tier-1 records through a ``Reader`` (``reader.py``): plain SQL, so
``explain``'s direct sqlite3 / psycopg readers use it without importing SQLAlchemy, and an
in-process caller's SQLAlchemy connection reads it the same way. The states statement is the
plain-SQL form of ``node_states_view(run_id, token_ids)``: the stored rows and those the compact
records imply, as one UNION ALL (test_compact_records checks both readings agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from governance_pipeline.contracts.enums import NodeStateStatus, NodeType, RoutingMode
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.records import NodeState, RoutingEvent
from governance_pipeline.landscape.reader import Reader, as_reader

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: A gate state's context, and its routing event's reason, when it took its default route.
DEFAULT_ROUTE_REASON = '{"route":"default"}'
#: The label of a gate's default edge (engine/graph.py ``route_targets``).
DEFAULT_EDGE_LABEL = "default"

_STATE_COLUMNS = ("state_id, run_id, token_id, node_id, step_index, attempt, status, "
                  "input_hash, output_hash, context_before, context_after, error_json, "
                  "duration_ms, policy_snapshot_id, started_at, completed_at")


def _logical_states_sql(by: str) -> str:
    """Every logical state of the tokens (``by`` = "token") or of the run (``by`` = "run")."""
    where_stored = ("token_id IN (:token_ids)" if by == "token" else "run_id = :run_id")
    where_compact = ("c.token_id IN (:token_ids)" if by == "token" else "c.run_id = :run_id")
    return (
        f"SELECT * FROM (SELECT {_STATE_COLUMNS} FROM node_states WHERE {where_stored} "
        "UNION ALL "
        "SELECT c.token_id || '.n' || CASE WHEN n.position < 10 THEN '0' ELSE '' END "
        "|| CAST(n.position AS VARCHAR) AS state_id, c.run_id, c.token_id, n.node_id, "
        "n.position AS step_index, 0 AS attempt, "
        f"'{NodeStateStatus.COMPLETED.value}' AS status, c.row_hash AS input_hash, "
        "c.row_hash AS output_hash, NULL AS context_before, "
        f"CASE WHEN n.node_type = '{NodeType.GATE.value}' THEN '{DEFAULT_ROUTE_REASON}' "
        "ELSE NULL END AS context_after, NULL AS error_json, NULL AS duration_ms, "
        "c.policy_snapshot_id, c.recorded_at AS started_at, c.recorded_at AS completed_at "
        "FROM compact_states AS c JOIN nodes AS n ON n.run_id = c.run_id "
        "AND (c.step_mask & (CAST(1 AS BIGINT) << n.position)) != 0 "
        f"WHERE {where_compact}) AS logical_states ORDER BY step_index, state_id")


STATES_OF_TOKENS = _logical_states_sql("token")
STATES_OF_RUN = _logical_states_sql("run")
EDGES = "SELECT edge_id, from_node_id, to_node_id, label FROM edges WHERE run_id = :run_id"
ROUTES_OF_STATES = "SELECT * FROM routing_events WHERE state_id IN (:state_ids) ORDER BY event_id"
ROUTES_OF_RUN = "SELECT * FROM routing_events WHERE run_id = :run_id ORDER BY event_id"


@dataclass(frozen=True, slots=True)
class Route:
    """A logical routing event with the edge it took."""

    event: RoutingEvent
    to_node_id: str
    label: str


@dataclass(frozen=True, slots=True)
class LogicalTrail:
    states: list[NodeState]  # by step index, then state id
    routes: list[Route]      # by event id


def read_trail(conn: Connection | Reader, run_id: str,
               token_ids: Sequence[str] | None = None) -> LogicalTrail:
    """The logical node states and routing events of ``token_ids`` (or of the whole run),
    Tier-1 read: a logical state given twice (stored and compact) is an ``AuditIntegrityError``."""
    reader = as_reader(conn)
    rows = (reader.rows(STATES_OF_RUN, {"run_id": run_id}) if token_ids is None
            else reader.rows(STATES_OF_TOKENS, {"token_ids": list(token_ids)}))
    states = [NodeState.from_row(r) for r in rows]
    seen: set[str] = set()
    for s in states:
        if s.state_id in seen:
            raise AuditIntegrityError(
                f"node state {s.state_id} is stored and also implied by a compact record",
                details={"state_id": s.state_id, "run_id": run_id})
        seen.add(s.state_id)
    edge_rows = {r["edge_id"]: r for r in reader.rows(EDGES, {"run_id": run_id})}
    found = (reader.rows(ROUTES_OF_RUN, {"run_id": run_id}) if token_ids is None
             else reader.rows(ROUTES_OF_STATES, {"state_ids": sorted(seen)}))
    stored = [RoutingEvent.from_row(r) for r in found if r["state_id"] in seen]
    routed = {e.state_id for e in stored}
    defaults = {e["from_node_id"]: e for e in edge_rows.values()
                if e["label"] == DEFAULT_EDGE_LABEL}
    events = list(stored)
    for s in states:
        edge = defaults.get(s.node_id)
        if (edge is not None and s.state_id not in routed and s.status is NodeStateStatus.COMPLETED
                and s.context_after == DEFAULT_ROUTE_REASON):
            events.append(RoutingEvent(f"{s.state_id}.x0", run_id, s.state_id, edge["edge_id"],
                                       s.state_id, 0, RoutingMode.MOVE, None,
                                       DEFAULT_ROUTE_REASON, s.completed_at or s.started_at))
    events.sort(key=lambda e: e.event_id)
    routes = []
    for e in events:
        edge = edge_rows.get(e.edge_id)
        if edge is None:
            raise AuditIntegrityError(f"routing event {e.event_id} names unknown edge {e.edge_id}",
                                      details={"event_id": e.event_id, "run_id": run_id})
        routes.append(Route(e, edge["to_node_id"], edge["label"]))
    return LogicalTrail(states, routes)

"""The audit records of one chunk, built with deterministic ids into one unit of work.

Every executor records through a ``Trail``: rows, tokens, node states, outcomes, calls and
routing events. Node-state timestamps are the chunk's timestamp (the unit's ``now``); each
state's own cost is its ``duration_ms``, measured with a monotonic counter.

What carries no information is not stored one record per state (docs/landscape.md, "Logical
model vs physical encoding"): a pass-through state (completed, output = input, no context of its
own, no error, no calls, no policy at its node) joins its token's ``CompactState`` when the
chunk is flushed, and a gate's default route is implied by its state and the gate's ``default``
edge instead of a routing event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from governance_pipeline.contracts.enums import CallStatus, NodeStateStatus, Outcome, RoutingMode
from governance_pipeline.contracts.records import (
    Call,
    CompactState,
    NodeState,
    RoutingEvent,
    SourceRow,
    Token,
    TokenOutcome,
    TokenParent,
)
from governance_pipeline.engine import ids
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.plugin_api import CallRecord, Row
from governance_pipeline.landscape.logical_states import DEFAULT_ROUTE_REASON
from governance_pipeline.landscape.recorder import UnitOfWork
from governance_pipeline.landscape.schema_compact import MAX_COMPACT_POSITION
from governance_pipeline.landscape.sealing import Subject


class Arrival:
    """How a token reached a sink; decides its terminal outcome there."""

    SUCCESS = "success"      # on_success / default / passthrough → completed
    ROUTED = "routed"        # a gate route → routed
    ERROR = "error"          # on_error → diverted
    REJECT = "reject"        # a sink's on_reject → diverted
    QUARANTINE = "quarantine"  # source.on_invalid → quarantined


@dataclass(slots=True)
class Work:
    """A token in flight inside a chunk, with the row it carries and that row's hash."""

    token_id: str
    row_id: str
    row: Row
    row_hash: str
    fork_group_id: str | None = None
    arrival: str = Arrival.SUCCESS
    error_hash: str | None = None
    channel: str | None = None
    arrived_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Trail:
    def __init__(self, ctx: RunContext, uow: UnitOfWork) -> None:
        self.ctx = ctx
        self.uow = uow
        # Payloads naming a subject are sealed under the subject's key when the unit commits.
        uow.subject_fields = tuple(ctx.config.subject_fields)
        self.run_id = ctx.run_id
        self.now = uow.now
        self.snapshot = ctx.policy_snapshot_id
        self._token_counter: dict[str, int] = {}
        #: token → (node, state) of its latest node state, and state → (calls, cost): what a
        #: policy evaluated at that node sees of the token.
        self.last_state: dict[str, tuple[str, str]] = {}
        #: Subjects of the rows admitted in this chunk, and of their node states: what a derived
        #: payload inherits (sealing.py). Empty unless the pipeline declares subject_fields.
        self._row_subject: dict[str, Subject] = {}
        self._state_subject: dict[str, Subject] = {}
        self.call_stats: dict[str, tuple[int, float]] = {}
        #: Pass-through states not yet stored: state id → the NodeState they stand for, kept
        #: whole in case a call makes one of them worth its own record after all.
        self._passing: dict[str, NodeState] = {}
        self._gates = frozenset(ctx.gate_decisions)
        self._kept: dict[str, bool] = {}  # node id → states there are always stored in full

    # -- identities ----------------------------------------------------------------------------
    def new_row(self, index: int, payload_hash: str) -> str:
        rid = ids.row_id(self.run_id, index)
        self.uow.add(SourceRow(rid, self.run_id, "source", index, payload_hash, self.now))
        if self.uow.subject_fields:
            subject = self.uow.subject_of_payload(payload_hash)
            if subject is not None:
                self._row_subject[rid] = subject
        return rid

    def new_token(self, row_id: str, *, token_id: str | None = None, branch: str | None = None,
                  fork_group: str | None = None, join_group: str | None = None,
                  expand_group: str | None = None) -> str:
        if token_id is None:
            n = self._token_counter.get(row_id, 0)
            self._token_counter[row_id] = n + 1
            token_id = ids.token_id(row_id, n)
        self.uow.add(Token(token_id, self.run_id, row_id, branch, fork_group, join_group,
                           expand_group, self.now))
        return token_id

    def parent(self, child: str, parent: str, ordinal: int) -> None:
        self.uow.add(TokenParent(child, parent, self.run_id, ordinal))

    def hash_row(self, row: Row) -> str:
        return self.uow.payload(row)

    def error_hash(self, error: dict[str, Any]) -> str:
        return self.uow.payload(error)

    # -- node states, outcomes, calls, routing -------------------------------------------------------
    def state(self, work: Work, node_id: str, status: NodeStateStatus, *, duration_ms: float,
              output_hash: str | None = None, error: dict[str, Any] | None = None,
              context: dict[str, Any] | None = None, context_json: str | None = None) -> str:
        position = self.ctx.graph.positions[node_id]
        sid = ids.state_id(work.token_id, position)
        closed = status is not NodeStateStatus.OPEN
        if context is not None:
            context_json = dumps(context)
        state = NodeState(
            sid, self.run_id, work.token_id, node_id, position, 0, status, work.row_hash,
            output_hash, None, context_json,
            dumps(error) if error is not None else None, duration_ms, self.snapshot, self.now,
            self.now if closed else None)
        if self._passes_through(state):
            self._passing[sid] = state
        else:
            self.uow.add(state)
        self.last_state[work.token_id] = (node_id, sid)
        if self._row_subject:
            subject = self._row_subject.get(work.row_id)
            if subject is not None:
                self.uow.inherit_subject(work.row_hash, subject)
                self.uow.inherit_subject(output_hash, subject)
                self._state_subject[sid] = subject
        return sid

    def _passes_through(self, s: NodeState) -> bool:
        if (s.status is not NodeStateStatus.COMPLETED or s.output_hash != s.input_hash
                or s.step_index > MAX_COMPACT_POSITION):
            return False
        if s.context_after is not None and not (
                s.context_after == DEFAULT_ROUTE_REASON and s.node_id in self._gates):
            return False
        kept = self._kept.get(s.node_id)
        if kept is None:  # a policy decision names the state it judged: that state is stored
            hook = self.ctx.policy
            kept = self._kept[s.node_id] = hook is not None and hook.applies(s.node_id)
        return not kept

    def flush(self) -> None:
        """The chunk's pass-through states, as one ``CompactState`` per token and row hash."""
        groups: dict[tuple[str, str], list[NodeState]] = {}
        for s in self._passing.values():
            groups.setdefault((s.token_id, s.input_hash), []).append(s)
        self._passing.clear()
        for (token_id, row_hash), states in groups.items():
            mask = 0
            for s in states:
                mask |= 1 << s.step_index
            self.uow.add(CompactState(token_id, mask, self.run_id, row_hash,
                                      sum(s.duration_ms or 0.0 for s in states), self.snapshot,
                                      self.now))

    def outcome(self, token_id: str, outcome: Outcome, *, sink: str | None = None,
                batch_id: str | None = None, fork_group: str | None = None,
                join_group: str | None = None, error_hash: str | None = None,
                context: dict[str, Any] | None = None, expand_group: str | None = None) -> None:
        terminal = outcome.is_terminal
        self.uow.add(TokenOutcome(
            ids.outcome_id(token_id, terminal=terminal), self.run_id, token_id, outcome, terminal,
            sink, batch_id, fork_group, join_group, expand_group, error_hash,
            dumps(context) if context else None, self.now))

    def calls(self, state: str, calls: list[CallRecord]) -> None:
        if calls:
            self.call_stats[state] = (len(calls), sum(c.cost or 0.0 for c in calls))
            passing = self._passing.pop(state, None)
            if passing is not None:  # a call's parent is a stored node state
                self.uow.add(passing)
        subject = self._state_subject.get(state)
        for i, call in enumerate(calls):
            ok = call.error is None
            request = self.uow.payload(call.request)
            response = self.uow.payload(call.response) if ok else None
            if subject is not None:
                self.uow.inherit_subject(request, subject)
                self.uow.inherit_subject(response, subject)
            self.uow.add(Call(
                ids.call_id(state, i), self.run_id, state, None, i, call.call_type,
                CallStatus.SUCCESS if ok else CallStatus.ERROR, request, response,
                None if ok else dumps(call.error), call.latency_ms, call.cost, self.now))

    def routing(self, state: str, edge_ids: list[str], *, reason_json: str,
                mode: RoutingMode) -> None:
        """One routing event per edge a gate decision took, grouped by the gate's state; none
        for the default route, which the gate's state and its ``default`` edge imply."""
        if reason_json == DEFAULT_ROUTE_REASON:
            return
        for i, edge in enumerate(edge_ids):
            self.uow.add(RoutingEvent(ids.routing_id(state, i), self.run_id, state, edge, state, i,
                                      mode, None, reason_json, self.now))

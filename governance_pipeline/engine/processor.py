"""Processing one chunk: source records in, tokens through the nodes, rows out to the sinks.

Nodes run in topological order, each over all tokens the chunk brought to it, so that by the
time a coalesce runs every branch token of the chunk has arrived or never will. Everything the
chunk does is recorded in the chunk's ``Trail``; nothing is written to the Landscape here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from governance_pipeline.contracts.enums import NodeStateStatus, Outcome, RoutingMode
from governance_pipeline.contracts.errors import CanonicalizationError, GovernanceError
from governance_pipeline.contracts.records import ValidationErrorRecord
from governance_pipeline.engine import aggregation, coalesce, policy_check
from governance_pipeline.engine.config import (
    DISCARD,
    AggregationNode,
    CoalesceNode,
    GateNode,
    NodeConfig,
    TransformNode,
)
from governance_pipeline.engine.expressions import ExpressionEvalError
from governance_pipeline.engine.graph import SOURCE_NODE_ID
from governance_pipeline.engine.plugin_api import SourceRecord, TransformContext, TransformResult
from governance_pipeline.engine.trail import Arrival, Trail, Work


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class ChunkProcessor:
    def __init__(self, trail: Trail, chunk_index: int) -> None:
        self.trail = trail
        self.ctx = trail.ctx
        self.chunk_index = chunk_index
        self.pending: dict[str, list[Work]] = defaultdict(list)
        self.to_sink: dict[str, list[Work]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)
        self.restored: dict[str, list[aggregation.OpenBatch]] = {}
        #: While a node with policies runs: what it emits, held back until it is evaluated.
        self.held: list[policy_check.Held] | None = None
        #: The inflection point once an enforced policy blocked a token, and every blocked token.
        self.stop: policy_check.StopPoint | None = None
        self.blocked: dict[str, tuple[str, policy_check.Block]] = {}
        #: Set by the sink stage: rows each sink wrote in this chunk, and the sinks that failed.
        self.written: dict[str, int] = defaultdict(int)
        self.failures: list[Any] = []

    # -- routing between nodes -------------------------------------------------------------------
    def deliver(self, work: Work, target: str, arrival: str = Arrival.SUCCESS) -> None:
        if self.held is not None:
            self.held.append((work, target, arrival))
            return
        consumer, timed = self.ctx.dispatch[target]
        if consumer is None:  # a sink
            work.arrival = arrival
            self.to_sink[target].append(work)
            return
        work.channel = target
        # Coalesce policies and aggregation timeouts judge a token by when it arrived: nodes run
        # over the whole chunk in turn, so the clock at the consuming node is the same for all.
        if timed:
            work.arrived_at = self.ctx.clock.now().timestamp()
        self.pending[consumer].append(work)

    def terminal(self, work: Work, outcome: Outcome, **fields: Any) -> None:
        self.trail.outcome(work.token_id, outcome, **fields)
        self.counts[outcome.value] += 1

    def fail_or_divert(self, work: Work, node: NodeConfig, error: dict[str, Any]) -> None:
        """After a failed node state: to the node's error sink (diverted) or failed outright."""
        error_hash = self.trail.error_hash(error)
        if node.on_error == DISCARD:
            self.terminal(work, Outcome.FAILED, error_hash=error_hash)
            return
        work.row = {**work.row, "_error_node": error["node"], "_error_code": error["code"],
                    "_error_reason": error["reason"]}
        work.row_hash = self.trail.hash_row(work.row)
        work.error_hash = error_hash
        self.deliver(work, node.on_error, Arrival.ERROR)

    # -- the source --------------------------------------------------------------------------------
    def admit(self, records: list[SourceRecord]) -> None:
        on_success = self.ctx.config.source.on_success
        for rec in records:
            if rec.error is None:
                assert rec.row is not None
                row_hash = self.trail.hash_row(rec.row)
                row_id = self.trail.new_row(rec.index, row_hash)
                work = Work(self.trail.new_token(row_id), row_id, rec.row, row_hash)
                self.deliver(work, on_success)
            else:
                self._quarantine(rec)

    def _quarantine(self, rec: SourceRecord) -> None:
        assert rec.error is not None and rec.raw is not None
        trail = self.trail
        destination = self.ctx.config.source.on_invalid
        raw_hash = trail.uow.payload_bytes(rec.raw)
        row_id = trail.new_row(rec.index, raw_hash)
        token = trail.new_token(row_id)
        trail.uow.add(ValidationErrorRecord(
            f"{row_id}.v", trail.run_id, SOURCE_NODE_ID, rec.index, raw_hash, rec.error.code,
            rec.error.reason, destination, trail.now))
        error = {"node": SOURCE_NODE_ID, "code": rec.error.code, "reason": rec.error.reason,
                 "row_index": rec.index}
        error_hash = trail.error_hash(error)
        work = Work(token, row_id, {}, raw_hash, error_hash=error_hash)
        if destination == DISCARD:
            self.terminal(work, Outcome.QUARANTINED, error_hash=error_hash)
            return
        work.row = {"row_index": rec.index, "error_code": rec.error.code,
                    "error_reason": rec.error.reason,
                    "raw": rec.raw.decode("utf-8", errors="backslashreplace")}
        work.row_hash = trail.hash_row(work.row)
        self.deliver(work, destination, Arrival.QUARANTINE)

    # -- nodes -------------------------------------------------------------------------------------
    def run_nodes(self) -> None:
        hook = self.ctx.policy
        for node in self.ctx.graph.order:
            checked = hook is not None and hook.applies(node.id)
            if checked:
                self.held = []
            self._run_node(node)
            if checked:
                assert hook is not None and self.held is not None
                held, self.held = self.held, None
                policy_check.release(self, hook, node.id, held)

    def check_output(self) -> None:
        """The pipeline-level policies on the rows about to enter the sinks."""
        if self.ctx.policy is not None:
            policy_check.check_output(self, self.ctx.policy)

    def _run_node(self, node: NodeConfig) -> None:
        works = self.pending.pop(node.id, [])
        if isinstance(node, AggregationNode):
            aggregation.run(self, node, works)  # even without arrivals: timeouts may fire
        elif not works:
            return
        elif isinstance(node, TransformNode):
            self._transform(node, works)
        elif isinstance(node, GateNode):
            self._gate(node, works)
        elif isinstance(node, CoalesceNode):
            coalesce.run(self, node, works)

    def _transform(self, node: TransformNode, works: list[Work]) -> None:
        plugin = self.ctx.plugins.transforms[node.id]
        trail = self.trail
        for work in works:
            start = time.perf_counter()
            tctx = TransformContext(self.ctx.clock, trail.run_id, node.id, work.token_id)
            try:
                result = plugin.process(work.row, tctx)
            except GovernanceError as exc:
                result = TransformResult.fail(exc.code.code, exc.message)
            except Exception as exc:  # a plugin bug: the state is closed as failed, never left open
                result = TransformResult.fail("plugin_exception", f"{type(exc).__name__}: {exc}")
            out_hash = work.row_hash
            if result.row is not None and result.row is not work.row:
                # A plugin's output that cannot be hashed (an integer beyond ±(2**53 - 1), NaN,
                # a key that is not text) fails this row, not the run.
                try:
                    out_hash = trail.hash_row(result.row)
                except CanonicalizationError as exc:
                    result = TransformResult.fail(exc.code.code, "the output row cannot be "
                                                  f"hashed: {exc.message}")
            if result.row is not None:
                state = trail.state(work, node.id, NodeStateStatus.COMPLETED,
                                    output_hash=out_hash, duration_ms=_ms(start))
                trail.calls(state, tctx.calls)
                work.row, work.row_hash = result.row, out_hash
                self.deliver(work, node.on_success)
            elif result.dropped is not None:
                context = {"node": node.id, "dropped": result.dropped}
                state = trail.state(work, node.id, NodeStateStatus.COMPLETED,
                                    output_hash=work.row_hash, duration_ms=_ms(start),
                                    context=context)
                trail.calls(state, tctx.calls)
                self.terminal(work, Outcome.DROPPED, context=context)
            else:
                assert result.error is not None
                error = {"node": node.id, "code": result.error.code, "reason": result.error.reason}
                state = trail.state(work, node.id, NodeStateStatus.FAILED, error=error,
                                    duration_ms=_ms(start))
                trail.calls(state, tctx.calls)
                self.fail_or_divert(work, node, error)

    def _gate(self, node: GateNode, works: list[Work]) -> None:
        routes = self.ctx.plugins.gate_routes[node.id]
        decisions = self.ctx.gate_decisions[node.id]
        trail = self.trail
        for work in works:
            start = time.perf_counter()
            chosen: int | None = None
            try:
                for i, expr in enumerate(routes):
                    if expr.holds(work.row):  # true or false only: 0 or null never routes
                        chosen = i
                        break
            except ExpressionEvalError as exc:
                error = {"node": node.id, "code": exc.code.code, "reason": exc.message}
                trail.state(work, node.id, NodeStateStatus.FAILED, error=error,
                            duration_ms=_ms(start))
                self.fail_or_divert(work, node, error)
                continue
            decision = decisions[chosen]
            targets = decision.targets
            forking = decision.mode is RoutingMode.COPY
            state = trail.state(work, node.id, NodeStateStatus.COMPLETED,
                                output_hash=work.row_hash, duration_ms=_ms(start),
                                context_json=decision.reason_json)
            trail.routing(state, decision.edge_ids, reason_json=decision.reason_json,
                          mode=decision.mode)
            if forking:
                self._fork(node, work, [t for _, t in targets])
            else:
                arrival = Arrival.SUCCESS if chosen is None else Arrival.ROUTED
                self.deliver(work, targets[0][1], arrival)

    def _fork(self, node: GateNode, work: Work, branches: list[str]) -> None:
        """Children and parent links and the parent's FORKED outcome, all in this chunk's unit."""
        trail = self.trail
        group = f"{work.token_id}.f{self.ctx.graph.positions[node.id]:02d}"
        for ordinal, branch in enumerate(branches):
            child = trail.new_token(work.row_id, branch=branch, fork_group=group)
            trail.parent(child, work.token_id, ordinal)
            self.deliver(Work(child, work.row_id, work.row, work.row_hash, fork_group_id=group),
                         branch)
        self.terminal(work, Outcome.FORKED, fork_group=group)

"""Aggregation: buffer tokens into batches and flush them on count, timeout, condition or end of source.

Batches are formed within a chunk, so the result does not depend on which executor processed
which chunk, or in what order. A partial batch left at the end of a chunk is persisted in that
chunk's transaction — a ``draft`` batch, its members, an open node state and a ``buffered``
outcome per token — so it survives a crash; the run's final step restores every draft from the
Landscape and flushes it with trigger ``end_of_source``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select

from governance_pipeline.contracts.clock import from_iso
from governance_pipeline.contracts.enums import BatchStatus, NodeStateStatus, Outcome, TriggerType
from governance_pipeline.contracts.records import Batch, BatchMember
from governance_pipeline.engine import ids
from governance_pipeline.engine.config import AggregationNode
from governance_pipeline.engine.expressions import ExpressionEvalError
from governance_pipeline.engine.faults import crash_point
from governance_pipeline.engine.trail import Work, dumps
from governance_pipeline.landscape.payloads import verified
from governance_pipeline.landscape.sealing import PayloadProtection
from governance_pipeline.landscape.schema import (
    batch_members,
    batches,
    node_states,
    payloads,
    tokens,
)

if TYPE_CHECKING:
    from governance_pipeline.engine.processor import ChunkProcessor


@dataclass
class OpenBatch:
    batch_id: str
    first_at: float
    members: list[Work] = field(default_factory=list)
    persisted: bool = False  # a draft already in the Landscape (restored in the final step)


class _Buffer:
    def __init__(self, proc: ChunkProcessor, node: AggregationNode) -> None:
        self.proc = proc
        self.node = node
        self.position = proc.ctx.graph.positions[node.id]
        self.open: OpenBatch | None = None
        self.serial = 0

    def now(self) -> float:
        return self.proc.ctx.clock.now().timestamp()

    def add(self, work: Work) -> None:
        trigger = self.node.trigger
        at = work.arrived_at  # when the token reached this node (set by ChunkProcessor.deliver)
        if self.open and trigger.timeout_seconds and \
                at - self.open.first_at >= trigger.timeout_seconds:
            self.flush(self.open, TriggerType.TIMEOUT, "timeout before next arrival")
        if self.open is None:
            self.open = OpenBatch(ids.batch_id(self.proc.trail.run_id, self.position,
                                               self.proc.chunk_index, self.serial), at)
            self.serial += 1
        batch = self.open
        batch.members.append(work)
        if trigger.count and len(batch.members) >= trigger.count:
            self.flush(batch, TriggerType.COUNT, f"count {trigger.count} reached")
            return
        condition = self.proc.ctx.plugins.conditions.get(self.node.id)
        if condition is None:
            return
        try:
            fire = condition.holds(work.row, {"batch_count": len(batch.members),
                                              "batch_age_seconds": at - batch.first_at})
        except ExpressionEvalError as exc:
            # One row the condition cannot judge fails alone; the batch goes on without it.
            batch.members.pop()
            if not batch.members:
                self.open = None
            error = {"node": self.node.id, "code": exc.code.code, "reason": exc.message}
            self.proc.trail.state(work, self.node.id, NodeStateStatus.FAILED, error=error,
                                  duration_ms=0.0)
            self.proc.fail_or_divert(work, self.node, error)
            return
        if fire:
            self.flush(batch, TriggerType.CONDITION, f"condition true: {condition.source}")

    def flush(self, batch: OpenBatch, trigger: TriggerType, reason: str) -> None:
        if batch is self.open:
            self.open = None
        _flush(self.proc, self.node, batch, trigger, reason)

    def park(self) -> None:
        """Persist the open batch as a draft: it waits for the next trigger or the final step."""
        batch, self.open = self.open, None
        if batch is None:
            return
        trail = self.proc.trail
        trail.uow.add(Batch(batch.batch_id, trail.run_id, self.node.id, 0, BatchStatus.DRAFT,
                            None, None, None, trail.now, None))
        for ordinal, work in enumerate(batch.members):
            trail.uow.add_row(BatchMember, (batch.batch_id, work.token_id, trail.run_id, ordinal))
            trail.state(work, self.node.id, NodeStateStatus.OPEN, duration_ms=0.0)
            trail.outcome(work.token_id, Outcome.BUFFERED, batch_id=batch.batch_id)
            self.proc.counts["buffered"] += 1


def run(proc: ChunkProcessor, node: AggregationNode, works: list[Work]) -> None:
    buffer = _Buffer(proc, node)
    final = proc.chunk_index < 0
    if final:
        for draft in proc.restored.get(node.id, []):
            _flush(proc, node, draft, TriggerType.END_OF_SOURCE, "end of source")
    for work in works:
        buffer.add(work)
    if buffer.open is None:
        return
    timeout = node.trigger.timeout_seconds
    if final:
        buffer.flush(buffer.open, TriggerType.END_OF_SOURCE, "end of source")
    elif timeout and buffer.now() - buffer.open.first_at >= timeout:
        buffer.flush(buffer.open, TriggerType.TIMEOUT, "timeout at end of chunk")
    else:
        buffer.park()


def _close_member(proc: ChunkProcessor, node: AggregationNode, batch: OpenBatch, work: Work,
                  status: NodeStateStatus, *, error: dict[str, Any] | None = None,
                  context: dict[str, Any]) -> None:
    trail = proc.trail
    if not batch.persisted:
        trail.state(work, node.id, status, output_hash=None if error else work.row_hash,
                    error=error, context=context, duration_ms=0.0)
        return
    state = ids.state_id(work.token_id, proc.ctx.graph.positions[node.id])
    trail.uow.update("node_states", {"state_id": state}, {
        "status": status, "output_hash": None if error else work.row_hash,
        "error_json": dumps(error) if error else None, "context_after": dumps(context),
        "completed_at": trail.now})


def _flush(proc: ChunkProcessor, node: AggregationNode, batch: OpenBatch, trigger: TriggerType,
           reason: str) -> None:
    trail = proc.trail
    context = {"batch": batch.batch_id, "trigger": trigger.value, "reason": reason,
               "members": len(batch.members)}
    outputs: list[dict[str, Any]] | None = None
    failure: str | None = None
    function = proc.ctx.plugins.batch_functions.get(node.id)
    if function is not None:
        start = time.perf_counter()
        try:
            outputs = function.process_batch([w.row for w in batch.members])
        except Exception as exc:  # a plugin bug fails the batch; its members are recorded failed
            failure = f"{type(exc).__name__}: {exc}"
        context["duration_ms"] = (time.perf_counter() - start) * 1000.0
    crash_point("aggregation.flushed")
    status = BatchStatus.FAILED if failure else BatchStatus.COMPLETED
    # The batch passes through ``executing`` as its own ledgered step (draft → executing →
    # completed/failed): the ledger manifest keeps every state the record had.
    if batch.persisted:
        trail.uow.update("batches", {"batch_id": batch.batch_id}, {
            "status": BatchStatus.EXECUTING, "trigger_type": trigger, "trigger_reason": reason})
    else:
        trail.uow.add(Batch(batch.batch_id, trail.run_id, node.id, 0, BatchStatus.EXECUTING,
                            trigger, reason, None, trail.now, None))
        for ordinal, work in enumerate(batch.members):
            trail.uow.add_row(BatchMember, (batch.batch_id, work.token_id, trail.run_id, ordinal))
    trail.uow.update("batches", {"batch_id": batch.batch_id},
                     {"status": status, "completed_at": trail.now})
    if failure:
        error = {"node": node.id, "code": "batch_failed", "reason": failure}
        for work in batch.members:
            _close_member(proc, node, batch, work, NodeStateStatus.FAILED, error=error,
                          context=context)
            proc.fail_or_divert(work, node, error)
        return
    for work in batch.members:
        _close_member(proc, node, batch, work, NodeStateStatus.COMPLETED, context=context)
    if outputs is None:  # passthrough: the members themselves continue
        for work in batch.members:
            proc.deliver(work, node.on_success)
        return
    for work in batch.members:
        proc.terminal(work, Outcome.CONSUMED_IN_BATCH, batch_id=batch.batch_id)
    # An output token's lineage runs through its batch (join_group_id = batch id, and the batch's
    # members are in batch_members): linking every output to every member would cost
    # outputs × members rows for the same fact.
    first = batch.members[0]
    for n, row in enumerate(outputs):
        token = trail.new_token(first.row_id, token_id=ids.batch_token_id(batch.batch_id, n),
                                join_group=batch.batch_id)
        proc.deliver(Work(token, first.row_id, row, trail.hash_row(row)), node.on_success)


def restore_drafts(conn: Connection, run_id: str, positions: dict[str, int],
                   protection: PayloadProtection | None = None) -> dict[str, list[OpenBatch]]:
    """Draft batches of a run with their members' rows, as the final step needs them."""
    drafts: dict[str, list[OpenBatch]] = {}
    query = (
        select(batches.c.batch_id, batches.c.node_id, batches.c.created_at,
               batch_members.c.token_id, tokens.c.row_id, tokens.c.fork_group_id,
               node_states.c.input_hash, payloads.c.content_hash, payloads.c.size_bytes,
               payloads.c.data, payloads.c.created_at.label("payload_created_at"),
               payloads.c.key_id)
        .join(batch_members, batch_members.c.batch_id == batches.c.batch_id)
        .join(tokens, tokens.c.token_id == batch_members.c.token_id)
        .join(node_states, (node_states.c.token_id == batch_members.c.token_id)
              & (node_states.c.node_id == batches.c.node_id))
        # Payloads come in the same query (outer join: a missing one is reported, not skipped),
        # so restoring N buffered tokens is one statement, not N.
        .outerjoin(payloads, payloads.c.content_hash == node_states.c.input_hash)
        .where(batches.c.run_id == run_id, batches.c.status == BatchStatus.DRAFT.value)
        .order_by(batches.c.batch_id, batch_members.c.ordinal))
    current: OpenBatch | None = None
    for row in conn.execute(query):
        if current is None or current.batch_id != row.batch_id:
            current = OpenBatch(row.batch_id, from_iso(row.created_at).timestamp(), persisted=True)
            drafts.setdefault(row.node_id, []).append(current)
        stored = None if row.content_hash is None else {
            "content_hash": row.content_hash, "size_bytes": row.size_bytes, "data": row.data,
            "created_at": row.payload_created_at, "key_id": row.key_id}
        data = orjson.loads(verified(row.input_hash, stored, conn=conn, protection=protection))
        current.members.append(Work(row.token_id, row.row_id, data, row.input_hash,
                                    fork_group_id=row.fork_group_id))
    return drafts

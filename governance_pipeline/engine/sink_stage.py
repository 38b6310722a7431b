"""The end of a chunk: rows to sinks, durably, then their node states and outcomes.

For every sink, every chunk writes one part (possibly empty), so re-processing a chunk after a
crash replaces exactly what the first attempt wrote. A row a sink refuses goes to its
``on_reject`` sink (diverted) or fails; a part that cannot be written fails the node states of
its rows — never recorded as completed — and the run stops after the chunk is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from governance_pipeline.contracts.enums import (
    NodeStateStatus,
    OperationStatus,
    OperationType,
    Outcome,
)
from governance_pipeline.contracts.records import Operation
from governance_pipeline.engine import ids
from governance_pipeline.engine.faults import crash_point
from governance_pipeline.engine.processor import ChunkProcessor
from governance_pipeline.engine.trail import Arrival, Work, dumps

_OUTCOME_BY_ARRIVAL = {
    Arrival.SUCCESS: Outcome.COMPLETED,
    Arrival.ROUTED: Outcome.ROUTED,
    Arrival.ERROR: Outcome.DIVERTED,
    Arrival.REJECT: Outcome.DIVERTED,
    Arrival.QUARANTINE: Outcome.QUARANTINED,
}


@dataclass(frozen=True)
class SinkFailure:
    sink: str
    reason: str


def sink_order(proc: ChunkProcessor) -> list[str]:
    """Sinks with each one before the sink it diverts rejected rows to."""
    sinks = proc.ctx.config.sinks
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return
        visiting.add(name)
        for other, cfg in sinks.items():
            if cfg.on_reject == name:
                visit(other)
        order.append(name)

    for name in sinks:
        visit(name)
    return order


def write_sinks(proc: ChunkProcessor) -> tuple[dict[str, str | None], list[SinkFailure]]:
    """Write every sink's part; returns ({sink: part key or None if failed}, failures).

    Rows a sink refuses are diverted first, then the output-boundary policies see every row
    bound for every sink, and only then does any sink write: a policy stop found at the last
    sink still keeps the rows after the inflection point out of the first.
    """
    order = sink_order(proc)
    for name in order:  # in order: a sink's rejects join its divert sink's list before it is seen
        proc.to_sink[name] = _screen(proc, name, proc.to_sink.pop(name, []))
    proc.check_output()
    parts: dict[str, str | None] = {}
    failures: list[SinkFailure] = []
    for name in order:
        failure = _write(proc, name, proc.to_sink.pop(name, []))
        parts[name] = None if failure else ids.part_key(proc.chunk_index)
        if failure:
            failures.append(failure)
    return parts, failures


def _screen(proc: ChunkProcessor, name: str, works: list[Work]) -> list[Work]:
    sink = proc.ctx.plugins.sinks[name]
    divert_to = proc.ctx.config.sinks[name].on_reject
    accepted: list[Work] = []
    for work in works:
        reason = sink.reject_reason(work.row)
        if reason is None:
            accepted.append(work)
            continue
        error = {"node": name, "code": "rejected_by_sink", "reason": reason}
        proc.trail.state(work, name, NodeStateStatus.FAILED, error=error, duration_ms=0.0)
        error_hash = proc.trail.error_hash(error)
        if divert_to is None:
            proc.terminal(work, Outcome.FAILED, error_hash=error_hash)
        else:
            work.error_hash = error_hash
            work.arrival = Arrival.REJECT
            proc.to_sink[divert_to].append(work)
    return accepted


def _write(proc: ChunkProcessor, name: str, works: list[Work]) -> SinkFailure | None:
    trail = proc.trail
    sink = proc.ctx.plugins.sinks[name]
    position = proc.ctx.graph.positions[name]
    part = ids.part_key(proc.chunk_index)
    start = time.perf_counter()
    op_id = ids.operation_id(trail.run_id, proc.chunk_index, position)
    try:
        result = sink.write_part(part, [(w.token_id, w.row) for w in works])
    except Exception as exc:  # I/O or driver failure: recorded below, then the run stops
        reason = f"{type(exc).__name__}: {exc}"
        error = {"node": name, "code": "sink_write_failed", "reason": reason, "part": part}
        duration = (time.perf_counter() - start) * 1000.0
        trail.uow.add(Operation(op_id, trail.run_id, name, OperationType.SINK_WRITE,
                                OperationStatus.FAILED, part, None, dumps(error), duration,
                                trail.now, trail.now))
        error_hash = trail.error_hash(error)
        for work in works:
            trail.state(work, name, NodeStateStatus.FAILED, error=error, duration_ms=duration)
            proc.terminal(work, Outcome.FAILED, error_hash=error_hash)
        return SinkFailure(name, reason)
    crash_point("sink.part_written")
    duration = (time.perf_counter() - start) * 1000.0
    output: dict[str, Any] = {"part": result.part_key, "rows": result.rows,
                              "size_bytes": result.size_bytes}
    trail.uow.add(Operation(op_id, trail.run_id, name, OperationType.SINK_WRITE,
                            OperationStatus.COMPLETED, part, dumps(output), None, duration,
                            trail.now, trail.now))
    proc.written[name] += len(works)
    per_row = duration / len(works) if works else 0.0
    for work in works:
        # The output hash is of the row as written: a sink that alters a value on the way out
        # (CSV formula escaping) records what it wrote, and which fields, next to the input.
        written = sink.as_written(work.row)
        trail.state(work, name, NodeStateStatus.COMPLETED,
                    output_hash=work.row_hash if written is None else trail.hash_row(written[0]),
                    context=None if written is None else {"written_as": {
                        "changed_fields": written[1]}},
                    duration_ms=per_row)
        outcome = _OUTCOME_BY_ARRIVAL[work.arrival]
        error_hash = work.error_hash if outcome in (Outcome.DIVERTED, Outcome.QUARANTINED) else None
        proc.terminal(work, outcome, sink=name, error_hash=error_hash)
    return None

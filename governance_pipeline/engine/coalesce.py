"""Coalesce: merge the branch tokens of one forked row into one token, by policy.

All branches of a chunk's rows have been processed when the coalesce runs (topological order,
and the graph refuses aggregations inside a fork), so a branch that has not arrived never will.
Tokens that arrive but are not merged (late, or the group failed its policy) are recorded as
failed with the reason; the decision itself (policy, arrivals, timing) is stored in the context
of every node state the coalesce closes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from governance_pipeline.contracts.enums import NodeStateStatus, Outcome
from governance_pipeline.engine.config import CoalesceNode
from governance_pipeline.engine.plugin_api import Row
from governance_pipeline.engine.trail import Work

if TYPE_CHECKING:
    from governance_pipeline.engine.processor import ChunkProcessor


def merge_rows(node: CoalesceNode, merged: list[Work]) -> Row:
    by_branch = {w.channel: w.row for w in merged}
    if node.merge == "nested":
        return {b: by_branch[b] for b in node.branches if b in by_branch}
    if node.merge == "select":
        return dict(by_branch[node.select_branch])
    out: Row = {}
    for branch in node.branches:  # union: declared branch order, a later branch wins a clash
        out.update(by_branch.get(branch, {}))
    return out


def decide(node: CoalesceNode, arrivals: list[Work]) -> tuple[list[Work], list[Work], str | None]:
    """(merged, late, failure reason or None) for one fork group's arrivals, in arrival order."""
    arrived = {w.channel for w in arrivals}
    missing = [b for b in node.branches if b not in arrived]
    if node.policy == "first":
        return arrivals[:1], arrivals[1:], None
    if node.policy == "best_effort":
        start = arrivals[0].arrived_at
        assert node.timeout_seconds is not None
        on_time = [w for w in arrivals if w.arrived_at - start <= node.timeout_seconds]
        return on_time, [w for w in arrivals if w not in on_time], None
    if node.policy == "quorum":
        assert node.quorum is not None
        if len(arrivals) >= node.quorum:
            return arrivals, [], None
        return [], [], f"quorum {node.quorum} not met: {len(arrivals)} arrived, missing {missing}"
    if missing:
        return [], [], f"require_all: branch(es) {', '.join(missing)} never arrived"
    return arrivals, [], None


def run(proc: ChunkProcessor, node: CoalesceNode, works: list[Work]) -> None:
    groups: dict[str, list[Work]] = {}
    for work in works:
        groups.setdefault(work.fork_group_id or "", []).append(work)
    position = proc.ctx.graph.positions[node.id]
    for group, arrivals in groups.items():
        start = time.perf_counter()
        arrivals.sort(key=lambda w: w.arrived_at)
        merged, late, failure = decide(node, arrivals)
        if not failure and node.merge == "select" and \
                all(w.channel != node.select_branch for w in merged):
            failure = f"selected branch {node.select_branch} did not arrive in time"
            merged, late = [], []
        decision: dict[str, Any] = {
            "policy": node.policy, "merge": node.merge, "expected": list(node.branches),
            "arrived": [{"branch": w.channel, "token": w.token_id,
                         "after_s": round(w.arrived_at - arrivals[0].arrived_at, 6)}
                        for w in arrivals],
            "merged": [w.token_id for w in merged], "late": [w.token_id for w in late],
        }
        if node.timeout_seconds is not None:
            decision["timeout_seconds"] = node.timeout_seconds
        if failure:
            decision["failure"] = failure
            error = {"node": node.id, "code": "coalesce_incomplete", "reason": failure}
            for work in arrivals:
                proc.trail.state(work, node.id, NodeStateStatus.FAILED, error=error,
                                 context=decision, duration_ms=0.0)
                proc.fail_or_divert(work, node, error)
            continue
        _merge(proc, node, group, position, merged, late, decision, start)


def _merge(proc: ChunkProcessor, node: CoalesceNode, group: str, position: int,
           merged: list[Work], late: list[Work], decision: dict[str, Any], start: float) -> None:
    trail = proc.trail
    join = f"{group}.j{position:02d}"
    row = merge_rows(node, merged)
    row_hash = trail.hash_row(row)
    duration = (time.perf_counter() - start) * 1000.0
    for work in merged:
        trail.state(work, node.id, NodeStateStatus.COMPLETED, output_hash=row_hash,
                    context=decision, duration_ms=duration)
        proc.terminal(work, Outcome.COALESCED, join_group=join)
    for work in late:
        error = {"node": node.id, "code": "late_arrival",
                 "reason": f"arrived after the coalesce decided ({node.policy})"}
        trail.state(work, node.id, NodeStateStatus.FAILED, error=error, context=decision,
                    duration_ms=duration)
        proc.terminal(work, Outcome.FAILED, error_hash=trail.error_hash(error))
    first = merged[0]
    token = trail.new_token(first.row_id, join_group=join)
    for ordinal, work in enumerate(merged):
        trail.parent(token, work.token_id, ordinal)
    proc.deliver(Work(token, first.row_id, row, row_hash), node.on_success)

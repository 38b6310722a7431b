"""Runtime policy inside a chunk: evaluate where policies are attached, stop at the first block.

At a node with policies, the tokens the node emits are held back until the whole chunk has
passed the node; then the policy hook evaluates them in one batch and every decision joins the
chunk's unit. Without an enforced violation the held tokens go on as if never held. With one,
the run stops at the inflection point: the violating token with the lowest source row index.
Every token of that row or a later one — held here, waiting at a later node, or on its way to a
sink — is halted with a failed outcome that says why, so nothing after the inflection point
reaches a sink, while rows before it finish the chunk normally and are written and
checkpointed. A later node of the same chunk may find an earlier row in violation; the cut then
moves back to it. The same evaluation runs at the output boundary (``policies`` of the
pipeline), on every row about to enter a sink, before any sink writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from governance_pipeline.contracts.enums import Outcome
from governance_pipeline.contracts.errors import ExitCode, register
from governance_pipeline.engine import ids
from governance_pipeline.engine.policy_hook import Block, PolicyHook, PolicySubject

if TYPE_CHECKING:
    from governance_pipeline.engine.processor import ChunkProcessor
    from governance_pipeline.engine.trail import Work

POLICY_STOPPED = register(
    "GP-POLICY-001", "An enforced policy stopped the run",
    "`governance-pipeline incidents` shows the inflection point (row, node, rule) and what was "
    "written before the stop. Fix the input or the policy, then start a new run: a run stopped "
    "by policy is not resumed.",
    ExitCode.POLICY_STOP)
ROW_BLOCKED = register(
    "GP-POLICY-002", "The row violated an enforced policy rule",
    "The token's policy decisions (`governance-pipeline explain RUN_ID --row N`) name the rule "
    "and its suggested fix; correct the row or the rule.",
    ExitCode.POLICY_STOP)
ROW_HALTED = register(
    "GP-POLICY-003", "The row was not finished: the run stopped at an earlier row",
    "Nothing is wrong with this row as far as the run got; it will be processed by a new run "
    "once the violation at the inflection point is dealt with.",
    ExitCode.POLICY_STOP)

Held = tuple["Work", str, str]  # (token in flight, its target, how it arrives there)


@dataclass(frozen=True, slots=True)
class StopPoint:
    """The inflection point: the first violating token in row order, and the rule it broke."""

    token_id: str
    row_index: int
    node_id: str
    step_index: int
    block: Block


def _subject(proc: ChunkProcessor, work: Work, node_id: str) -> PolicySubject:
    trail = proc.trail
    last = trail.last_state.get(work.token_id)
    state_id = last[1] if last is not None and last[0] == node_id else None
    calls, cost = trail.call_stats.get(state_id, (0, 0.0)) if state_id else (0, 0.0)
    return PolicySubject(work.token_id, ids.row_index(work.row_id), work.row, calls, cost,
                         state_id)


def evaluate(proc: ChunkProcessor, hook: PolicyHook, node_id: str, works: list[Work]) -> None:
    """Evaluate ``node_id``'s policies on ``works``; on a block, move the cut and halt."""
    if not works:
        return
    position = proc.ctx.graph.positions[node_id]
    subjects = [_subject(proc, work, node_id) for work in works]
    verdict = hook.evaluate(node_id, position, subjects, now_iso=proc.trail.now,
                            now_ts=proc.ctx.clock.now().timestamp())
    proc.trail.uow.add_all(verdict.records)
    if not verdict.blocks:
        return
    for block in verdict.blocks:
        proc.blocked[subjects[block.index].token_id] = (node_id, block)
    first = min(verdict.blocks, key=lambda b: (subjects[b.index].row_index, b.index))
    row = subjects[first.index].row_index
    if proc.stop is None or row < proc.stop.row_index:
        proc.stop = StopPoint(subjects[first.index].token_id, row, node_id, position, first)
    cut_everywhere(proc)


def release(proc: ChunkProcessor, hook: PolicyHook, node_id: str, held: list[Held]) -> None:
    """After a node with policies ran over the chunk: evaluate what it emitted, pass it on."""
    evaluate(proc, hook, node_id, [work for work, _, _ in held])
    for work, target, arrival in held:
        if not halted(proc, work):
            proc.deliver(work, target, arrival)


def check_output(proc: ChunkProcessor, hook: PolicyHook) -> None:
    """The pipeline's own policies, on every row about to enter a sink (before any writes)."""
    for name in proc.ctx.config.sinks:
        if hook.applies(name):
            evaluate(proc, hook, name, list(proc.to_sink.get(name, ())))


def halted(proc: ChunkProcessor, work: Work) -> bool:
    """Halt ``work`` if it is at or after the cut: a failed outcome saying why. True if halted."""
    stop = proc.stop
    if stop is None or ids.row_index(work.row_id) < stop.row_index:
        return False
    hit = proc.blocked.get(work.token_id)
    if hit is not None:
        node_id, block = hit
        error = {"node": node_id, "code": ROW_BLOCKED.code, "reason": block.reason,
                 "policy": block.policy_id, "rule": block.rule_id,
                 "decision_id": block.decision_id}
    else:
        error = {"node": stop.node_id, "code": ROW_HALTED.code,
                 "reason": f"the run stopped at row {stop.row_index} "
                           f"({stop.block.policy_id}/{stop.block.rule_id} at {stop.node_id})",
                 "inflection_token": stop.token_id}
    proc.terminal(work, Outcome.FAILED, error_hash=proc.trail.error_hash(error))
    return True


def cut_everywhere(proc: ChunkProcessor) -> None:
    """Halt every token at or after the cut that waits at a node or for a sink."""
    for lists in (proc.pending, proc.to_sink):
        for key, works in lists.items():
            lists[key] = [work for work in works if not halted(proc, work)]

"""Exactly once across real processes, on SQLite and PostgreSQL: of six processes consuming the
same token one wins and five are refused (already_consumed, each recorded); of two processes
escalating the same overdue stages each stage is escalated once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import ApprovalStatus, Decision
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify

from governance_pipeline_tests import approval_workers
from governance_pipeline_tests.approval_fixtures import (
    REQUESTER,
    TENANT,
    catalog,
    events_of,
    subject,
)

CONSUMERS = 6


def _run_all(target: Any, arg_sets: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(arg_sets))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in arg_sets]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"worker {p.pid} exited with {p.exitcode}"
    return out


def test_exactly_one_of_six_processes_consumes_a_token(landscape: Landscape, db_url: str,
                                                       tmp_path: Path,
                                                       clock: ManualClock) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    approval, token = service.request(tenant_id=TENANT, subject_type="pipeline",
                                      subject_hash=subject(), subject_ref="p.yaml",
                                      requested_by=REQUESTER, ladder="two_stage")
    aid = approval.approval_id
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    service.decide(aid, actor="carl", role="compliance", decision=Decision.APPROVE)
    clock.advance(5)
    now = to_iso(clock.now())
    results = _run_all(approval_workers.consume_worker, [
        (db_url, str(tmp_path / "keys"), now, token, TENANT, subject(), f"p{i}")
        for i in range(CONSUMERS)])
    outcomes = Counter(r[1] for r in results)
    assert outcomes == {"won": 1, "refused": CONSUMERS - 1}, results
    winner = next(r[0] for r in results if r[1] == "won")
    assert {r[2] for r in results if r[1] == "refused"} == {"already_consumed"}
    final = service.get(aid).approval
    assert final.status is ApprovalStatus.CONSUMED and final.consumed_by == winner
    assert final.consumed_for == f"run_{winner}"
    assert len(events_of(landscape, "ir.approval_consumed")) == 1
    invalid = events_of(landscape, "ir.approval_invalid")
    assert len(invalid) == CONSUMERS - 1
    assert {e["payload"]["attempted_by"] for e in invalid} == \
        {f"p{i}" for i in range(CONSUMERS)} - {winner}
    assert verify(landscape, "global").ok


def test_two_racing_escalation_processes_escalate_each_stage_once(
        landscape: Landscape, db_url: str, tmp_path: Path, clock: ManualClock) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    ids = [service.request(tenant_id=TENANT, subject_type="pipeline",
                           subject_hash=subject(f"p{i}"), subject_ref=f"p{i}.yaml",
                           requested_by=REQUESTER, ladder="two_stage")[0].approval_id
           for i in range(4)]
    stage_ids = {service.get(a).stages[0].stage_id for a in ids}
    clock.advance(3601)  # past the first stage's 1 h SLA
    now = to_iso(clock.now())
    results = _run_all(approval_workers.escalate_worker, [
        (db_url, str(tmp_path / "keys"), now, name) for name in ("tick-a", "tick-b")])
    escalated = [s for _, stages in results for s in stages]
    assert sorted(escalated) == sorted(stage_ids)  # each stage by exactly one of the two
    events = events_of(landscape, "approval.stage_escalated")
    assert Counter(e["payload"]["stage_id"] for e in events) == {s: 1 for s in stage_ids}
    assert all(service.get(a).stages[0].escalated_at == now for a in ids)
    assert verify(landscape, "global").ok

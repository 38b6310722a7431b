"""Worker functions the concurrency tests start in separate processes ('spawn': nothing of the
parent's database connections or state is inherited)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.clock import ManualClock, from_iso
from governance_pipeline.governance.approvals import ApprovalService, TokenRefused
from governance_pipeline.landscape.store import Landscape


def _open(url: str, keys: str, now_iso: str) -> Landscape:
    return Landscape.open(url, Path(keys), clock=ManualClock(from_iso(now_iso)), upgrade=False)


def consume_worker(url: str, keys: str, now_iso: str, token: str, tenant: str,
                   subject_hash: str, actor: str, barrier: Barrier, results: Any) -> None:
    landscape = _open(url, keys, now_iso)
    try:
        service = ApprovalService(landscape)
        barrier.wait(timeout=60)
        try:
            approval = service.consume(token, tenant_id=tenant, subject_hash=subject_hash,
                                       actor=actor, consumed_for=f"run_{actor}")
            results.put((actor, "won", approval.consumed_by))
        except TokenRefused as exc:
            results.put((actor, "refused", exc.reason.value))
    finally:
        landscape.dispose()


def escalate_worker(url: str, keys: str, now_iso: str, name: str, barrier: Barrier,
                    results: Any) -> None:
    landscape = _open(url, keys, now_iso)
    try:
        service = ApprovalService(landscape)
        barrier.wait(timeout=60)
        results.put((name, [e.stage_id for e in service.escalate_overdue()]))
    finally:
        landscape.dispose()

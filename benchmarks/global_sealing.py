"""The cost of sealing the global chain at every commit, on the approval flow.

    python benchmarks/global_sealing.py                      # 200 decisions, SQLite
    python benchmarks/global_sealing.py --db-url postgresql://user:pw@host/db --decisions 200

Times ``ApprovalService.decide`` over ``--decisions`` decisions (requests of a one-stage,
one-approver ladder, so every decision is one global commit that also completes the request),
against two fresh databases: ``sealed`` is the code as built (a seal in the same transaction as
each global commit, plus the head witness file update); ``unsealed`` replaces the recorder's
``ledger.seal`` and ``witness.record`` with no-ops, which is what a global commit cost before.
Requests are made before the clock starts; only the decisions are timed, the two modes taking
turns of ``--batch`` decisions so that the other load on the machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.enums import Decision
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.governance.approvals.ladders import LadderCatalog, LadderSpec, StageSpec
from governance_pipeline.governance.approvals.service import ApprovalService
from governance_pipeline.landscape import recorder as recorder_module
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.landscape.store import Landscape

LADDERS = LadderCatalog({"one": LadderSpec(stages=[
    StageSpec(name="owner", role="owner", approvers=["olga"], quorum=1, sla_seconds=3600)])})


@contextmanager
def unsealed() -> Iterator[None]:
    ledger, witness = recorder_module.ledger, recorder_module.witness

    class NoSeal:
        def __getattr__(self, name: str) -> Any:
            return (lambda *a, **k: None) if name == "seal" else getattr(ledger, name)

    class NoWitness:
        record = staticmethod(lambda *a, **k: None)

    recorder_module.ledger, recorder_module.witness = NoSeal(), NoWitness()  # type: ignore
    try:
        yield
    finally:
        recorder_module.ledger, recorder_module.witness = ledger, witness


@contextmanager
def database(base_url: str | None, work: Path, name: str) -> Iterator[str]:
    if base_url is None:
        yield f"sqlite:///{work / name}.db"
        return
    admin = create_engine(normalize_url(base_url), poolclass=NullPool,
                          isolation_level="AUTOCOMMIT")
    db = f"gp_bench_{name}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {db}"))
        conn.execute(text(f"CREATE DATABASE {db}"))
    try:
        yield normalize_url(base_url).set(database=db).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


def prepared(url: str, keys: Path, decisions: int) -> tuple[Landscape, ApprovalService, list[str]]:
    landscape = Landscape.open(url, keys)
    service = ApprovalService(landscape, ladders=LADDERS)
    ids = [service.request(tenant_id="t", subject_type="pipeline",
                           subject_hash="sha256:" + stable_hash({"n": i}), subject_ref="p.yaml",
                           requested_by="rita", ladder="one")[0].approval_id
           for i in range(decisions)]
    return landscape, service, ids


def decide(service: ApprovalService, ids: list[str]) -> float:
    started = time.perf_counter()
    for approval_id in ids:
        service.decide(approval_id, actor="olga", role="owner", decision=Decision.APPROVE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20,
                        help="decisions per turn; the two modes take turns, so a change of "
                             "machine load hits both alike")
    parser.add_argument("--db-url", default=None, help="PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    results = {"unsealed": 0.0, "sealed": 0.0}
    with tempfile.TemporaryDirectory() as tmp, \
            database(args.db_url, Path(tmp), "unsealed") as url_u, \
            database(args.db_url, Path(tmp), "sealed") as url_s:
        modes = {"unsealed": prepared(url_u, Path(tmp) / "keys_u", args.decisions),
                 "sealed": prepared(url_s, Path(tmp) / "keys_s", args.decisions)}
        for start in range(0, args.decisions, args.batch):
            for mode, (_, service, ids) in modes.items():
                turn = ids[start:start + args.batch]
                if mode == "unsealed":
                    with unsealed():
                        results[mode] += decide(service, turn)
                else:
                    results[mode] += decide(service, turn)
        for landscape, _, _ in modes.values():
            landscape.dispose()
    per = {m: results[m] / args.decisions * 1000 for m in results}
    print(json.dumps({
        "backend": "postgresql" if args.db_url else "sqlite", "decisions": args.decisions,
        "seconds": {m: round(v, 3) for m, v in results.items()},
        "ms_per_decision": {m: round(v, 2) for m, v in per.items()},
        "overhead_ms_per_decision": round(per["sealed"] - per["unsealed"], 2),
        "overhead_pct": round((per["sealed"] / per["unsealed"] - 1) * 100, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }, indent=2))


if __name__ == "__main__":
    main()

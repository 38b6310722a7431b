"""verify and sweep of one run of a kept Landscape: wall, CPU and peak RSS, each in its own process.

    python benchmarks/audit_scale.py --rows 100000 --keep     # prints the home it kept
    python benchmarks/verify_scale.py HOME [--repeats 3] [--db-url URL] [--run-id RUN]

``HOME`` is a home directory ``audit_scale.py --keep`` left (``landscape.db`` and ``keys/``);
``--db-url`` names another database (e.g. PostgreSQL) with HOME's keys. Each repeat runs
``verify(landscape, RUN)`` and ``sweep(landscape, RUN)`` in a fresh child process (library calls:
no CLI start-up; ``audit_scale.py`` times the CLI commands), so each peak RSS is that check's
own. The figures are medians; ``os.getloadavg()`` is printed with them, since the machine is
shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _child(what: str, home: str, db_url: str, run_id: str) -> None:
    from governance_pipeline.landscape.store import Landscape
    from governance_pipeline.landscape.sweep import sweep
    from governance_pipeline.landscape.verify import verify

    landscape = Landscape.open(db_url, Path(home) / "keys")
    wall, cpu = time.perf_counter(), time.process_time()
    report = verify(landscape, run_id) if what == "verify" else sweep(landscape, run_id)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    landscape.dispose()
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "ok": report.ok,
                      "findings": len(report.findings),
                      "records": getattr(report, "records_checked", None),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run(what: str, home: Path, db_url: str, run_id: str) -> dict[str, float]:
    env = {**os.environ, "GOVERNANCE_HOME": str(home)}
    proc = subprocess.run([sys.executable, __file__, "--child", what, str(home), db_url, run_id],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_id(db_url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        run_id = conn.execute(text("SELECT run_id FROM runs ORDER BY started_at DESC")).scalar()
    engine.dispose()
    if run_id is None:
        raise SystemExit(f"no run in {db_url}")
    return str(run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path, nargs="?")
    parser.add_argument("--db-url")
    parser.add_argument("--run-id")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    db_url = args.db_url or f"sqlite:///{args.home / 'landscape.db'}"
    run_id = args.run_id or _run_id(db_url)
    for what in ("verify", "sweep"):
        load = os.getloadavg()
        runs = [_run(what, args.home, db_url, run_id) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s",
                                                                  "peak_rss_mb")}
        end = os.getloadavg()
        print(f"{what:6} {med['wall_s']:7.2f} s wall {med['cpu_s']:7.2f} s CPU  peak RSS "
              f"{med['peak_rss_mb']:6.0f} MB  (median of {len(runs)}; ok={runs[0]['ok']}, "
              f"{runs[0]['findings']} findings, records {runs[0]['records']})  load "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} -> {end[0]:.2f} {end[1]:.2f} "
              f"{end[2]:.2f}", flush=True)


if __name__ == "__main__":
    main()

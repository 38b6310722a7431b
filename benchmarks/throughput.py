"""End-to-end engine throughput with full audit on SQLite: rows/s and peak RSS.

    python benchmarks/throughput.py                    # 100k and 1M rows, both pipelines
    python benchmarks/throughput.py --rows 100000      # one size
    python benchmarks/throughput.py --pipeline linear
    python benchmarks/throughput.py --pipeline linear --subject-fields customer  # encrypted

Pipelines: (a) ``linear`` — CSV → field map → gate → two CSV sinks (examples/claims_linear);
(b) ``triage`` — fork → call transform → coalesce → aggregation (examples/claims_triage).
Each measurement runs in a fresh subprocess (so its peak RSS is its own) against a fresh
SQLite Landscape in a temporary GOVERNANCE_HOME, and times ``Runner.start(...).execute()``:
source read, processing, sink writes with fsync, audit commits with synchronous=FULL,
finalisation and the ledger seal. Input generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {"linear": "claims_linear.yaml", "triage": "claims_triage.yaml"}
SUBJECT_FIELDS_ENV = "GP_BENCH_SUBJECT_FIELDS"


def _child(pipeline: str, data: str, home: str, chunk_size: int) -> None:
    """Runs inside the subprocess: one pipeline run, JSON figures on stdout."""
    os.environ["GOVERNANCE_HOME"] = home
    sys.path.insert(0, str(ROOT / "examples"))
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.landscape.store import Landscape

    text = (ROOT / "examples" / "pipelines" / PIPELINES[pipeline]).read_text()
    text = text.replace("../data/claims.csv", data).replace("chunk_size: 500",
                                                              f"chunk_size: {chunk_size}")
    subject_fields = os.environ.get(SUBJECT_FIELDS_ENV)
    if subject_fields:  # payloads naming a subject are then sealed (AES-GCM, per-subject keys)
        text += f"\nsubject_fields: [{subject_fields}]\n"
    path = Path(home) / f"{pipeline}.yaml"
    path.write_text(text)
    config = load_pipeline(path)
    landscape = Landscape.open(f"sqlite:///{home}/landscape.db", Path(home) / "keys")
    start = time.perf_counter()
    result = Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path).execute()
    elapsed = time.perf_counter() - start
    db = Path(home) / "landscape.db"
    print(json.dumps({"seconds": elapsed, "status": result.status.value,
                      "counts": result.outcome_counts,
                      "db_mb": db.stat().st_size / 1e6,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(pipeline: str, rows: int, chunk_size: int, workdir: Path) -> dict[str, object]:
    sys.path.insert(0, str(ROOT / "examples"))
    from generate_data import write_claims

    data = workdir / f"claims_{rows}.csv"
    if not data.exists():
        write_claims(data, rows, malformed=True)
    with tempfile.TemporaryDirectory(dir=workdir) as home:
        out = subprocess.run(
            [sys.executable, __file__, "--child", pipeline, str(data), home, str(chunk_size)],
            check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["rows_per_s"] = rows / figures["seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), action="append")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gp-bench")
    parser.add_argument("--subject-fields", default="",
                        help="Comma-separated subject_fields to declare (e.g. customer): "
                             "measures the cost of sealing payloads per subject.")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subject_fields:
        os.environ[SUBJECT_FIELDS_ENV] = args.subject_fields
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{'pipeline':8} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>11} "
          f"{'DB MB':>8}  status")
    for pipeline in args.pipeline or ["linear", "triage"]:
        for rows in args.rows or [100_000, 1_000_000]:
            f = measure(pipeline, rows, args.chunk_size, args.workdir)
            print(f"{pipeline:8} {rows:>9} {f['seconds']:>8.1f} {f['rows_per_s']:>8.0f} "
                  f"{f['peak_rss_mb']:>11.0f} {f['db_mb']:>8.0f}  {f['status']}", flush=True)


if __name__ == "__main__":
    main()

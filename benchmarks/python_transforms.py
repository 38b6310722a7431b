"""The same user logic as a row-wise Python transform and as a pandas DataFrame transform: rows/s.

    python benchmarks/python_transforms.py --rows 100000

The logic (``score_row`` / ``score_frame`` below, written both ways): drop claims under 50.00,
band the amount, flag claims over 5,000, compute the amount in cents, a 1.5 % fee, the net
amount, the tax on the fee and a 250-wide bucket. Two
levels are measured, each in a fresh subprocess (so its peak RSS is its own):

- ``node``: the transform plugin alone over the parsed rows — ``process`` once per row against
  ``process_chunk`` once per chunk (frame built, function called, rows converted back);
- ``run``: ``Runner.start(...).execute()`` of CSV → the transform → CSV sink with the full audit
  trail on SQLite (hashing, node states, outcomes, commits with synchronous=FULL, seal).

Each figure is given per wall-clock second and per CPU second of the process: on a shared
machine the wall clock measures the neighbours as much as the code.

Both runs' sink files must be byte-identical (the script checks): same logic, same output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


# --- the logic, both ways (imported by the engine as python_transforms:score_row / score_frame) ---
def score_row(row: dict[str, Any]) -> dict[str, Any] | None:
    amount = row["amount"]
    if amount < 50.0:
        return None
    band = "small" if amount < 500 else "medium" if amount < 5000 else "large"
    fee = amount * 0.015
    return {**row, "amount_band": band, "review": amount > 5000,
            "amount_cents": int(round(amount * 100)), "fee": fee, "net": amount - fee,
            "tax": fee * 0.2, "bucket": int(amount // 250)}


def score_frame(df: Any) -> Any:
    import numpy as np

    df = df[df["amount"] >= 50.0].copy()
    amount = df["amount"]
    df["amount_band"] = np.select([amount < 500, amount < 5000], ["small", "medium"], "large")
    df["review"] = amount > 5000
    df["amount_cents"] = (amount * 100).round().astype("int64")
    df["fee"] = fee = amount * 0.015
    df["net"] = amount - fee
    df["tax"] = fee * 0.2
    df["bucket"] = (amount // 250).astype("int64")
    return df


# --- measuring ----------------------------------------------------------------------------------
def _pipeline(home: Path, data: Path, mode: str, chunk_size: int) -> Path:
    function = "score_row" if mode == "row" else "score_frame"
    doc = {
        "name": f"bench_python_{mode}", "chunk_size": chunk_size,
        "source": {"plugin": "csv", "options": {"path": str(data)},
                   "schema": {"fields": {"claim_id": {"type": "int"}, "customer": {"type": "str"},
                                         "region": {"type": "str"},
                                         "amount": {"type": "float"},
                                         "description": {"type": "str"}}},
                   "on_success": "raw"},
        "nodes": [{"id": "score", "kind": "transform", "plugin": "python", "input": "raw",
                   "options": {"function": f"python_transforms:{function}", "mode": mode,
                               "path": [str(HERE)]},
                   "on_success": "out"}],
        "sinks": {"out": {"plugin": "csv", "options": {"path": str(home / "out.csv")}}},
    }
    path = home / "pipeline.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def _child(level: str, mode: str, data: str, home_text: str, chunk_size: int) -> None:
    home = Path(home_text)
    os.environ["GOVERNANCE_HOME"] = str(home)
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.context import RunContext
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.landscape.store import Landscape

    path = _pipeline(home, Path(data), mode, chunk_size)
    config = load_pipeline(path)
    figures: dict[str, Any] = {}
    if level == "node":
        from governance_pipeline.contracts.clock import SYSTEM_CLOCK

        ctx = RunContext.build("bench", config, path.parent, SYSTEM_CLOCK)
        rows = [r.row for r in ctx.plugins.source.read(0) if r.row is not None]
        plugin = ctx.plugins.transforms["score"]
        cpu, start = time.process_time(), time.perf_counter()
        kept = 0
        if mode == "row":
            for row in rows:
                kept += plugin.process(row, None).row is not None  # type: ignore[arg-type]
        else:
            for i in range(0, len(rows), chunk_size):
                part = rows[i:i + chunk_size]
                results = plugin.process_chunk(part, [f"t{i + j}" for j in range(len(part))])  # type: ignore[attr-defined]
                kept += sum(type(r) is dict for r in results)  # a dict: the row kept
        figures = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                   "rows": len(rows), "kept": kept}
    else:
        landscape = Landscape.open(f"sqlite:///{home}/landscape.db", home / "keys")
        cpu, start = time.process_time(), time.perf_counter()
        result = Runner.start(landscape, config, base_dir=path.parent,
                              pipeline_path=path).execute()
        figures = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                   "status": result.status.value,
                   "counts": result.outcome_counts,
                   "output_sha256": hashlib.sha256((home / "out.csv").read_bytes()).hexdigest()}
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def measure(level: str, mode: str, data: Path, rows: int, chunk_size: int,
            workdir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as home:
        out = subprocess.run([sys.executable, __file__, "--child", level, mode, str(data), home,
                              str(chunk_size)], check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["rows_per_s"] = rows / figures["seconds"]
    figures["rows_per_cpu_s"] = rows / figures["cpu_seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gp-bench")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        level, mode, data, home, chunk = args.child
        _child(level, mode, data, home, int(chunk))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "examples"))
    from generate_data import write_claims

    data = args.workdir / f"claims_{args.rows}.csv"
    if not data.exists():
        write_claims(data, args.rows, malformed=False)
    print(f"python transforms, {args.rows} rows, chunk size {args.chunk_size}, "
          f"load {os.getloadavg()[0]:.2f}")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for level in ("node", "run"):
        for mode in ("row", "dataframe"):
            figures = results[(level, mode)] = measure(level, mode, data, args.rows,
                                                       args.chunk_size, args.workdir)
            print(f"  {level:4} {mode:9} {figures['rows_per_s']:>9,.0f} rows/s wall "
                  f"({figures['seconds']:6.2f} s)  {figures['rows_per_cpu_s']:>9,.0f} rows/CPU-s "
                  f"({figures['cpu_seconds']:6.2f} s)  peak RSS {figures['peak_rss_mb']:4.0f} MB")
        row, frame = results[(level, "row")], results[(level, "dataframe")]
        print(f"  {level:4} dataframe / row: {frame['rows_per_s'] / row['rows_per_s']:.2f}x wall, "
              f"{frame['rows_per_cpu_s'] / row['rows_per_cpu_s']:.2f}x CPU")
    same = results[("run", "row")]["output_sha256"] == results[("run", "dataframe")]["output_sha256"]
    print(f"  sink output identical in both runs: {same}")
    if not same:
        raise SystemExit("the two ways of writing the logic disagree")
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
